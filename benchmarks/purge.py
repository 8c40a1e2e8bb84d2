"""clearOldData of 1,000,000 old rows (and 100,000 newer ones that must stay), on a plain and a partitioned
PostgreSQL table: rolecall (a DatabaseMaintenance through the operator, every batch's receipt written to
status before its COMMIT) against a hand-written shell loop of psql calls with the same batch size, and on the
partitioned table rolecall's wholePartitions DetachAndDrop against dropping the partitions entirely older by
hand (then deleting the rest with the loop), all in the same run.

Per method: rows per second, the longest transaction seen (sampled every 5 ms from pg_stat_activity; each
holds its row or table locks until it ends), the WAL written (pg_current_wal_lsn before and after) and the
full-page images in it (pg_stat_wal), each method starting right after a CHECKPOINT.
Results: benchmarks/results/purge.{json,csv,png}.

    python -m benchmarks.purge [--old 1000000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from dbkit import MAINTENANCES, SERVERS, create, maintenance, pg, pg_pods, pg_scalar, pg_server, status_of
from testbed.servers import POSTGRES_PASSWORD

NEW = 100_000
PLAIN = "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, payload text)"
# Monthly partitions over the old rows' 200 days, one straddling the 30-day cut-off, one for the newer rows.
PARTITIONED = """
CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at);
DO $$ BEGIN FOR i IN 0..6 LOOP
  EXECUTE format('CREATE TABLE events_m%s PARTITION OF events FOR VALUES FROM (%L) TO (%L)', i,
                 now() - interval '240 days' + i * interval '30 days',
                 now() - interval '210 days' + i * interval '30 days');
END LOOP; END $$;
CREATE TABLE events_now PARTITION OF events FOR VALUES FROM (now() - interval '30 days') TO (MAXVALUE);
"""
SEED = """
INSERT INTO events (created_at, payload) SELECT now() - interval '220 days' + g * (interval '185 days' / %(old)s),
    'old ' || g FROM generate_series(1, %(old)s) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '20 days' + g * interval '10 seconds', 'new'
    FROM generate_series(1, %(new)s) g;
VACUUM ANALYZE events;
CHECKPOINT;
"""
# A checkpoint after each seed: every method starts from the same point, so each writes one full-page image
# per page it first changes (without it, a checkpoint the seeds' WAL set off lands in whichever run is next).


class LongestTransaction(threading.Thread):
    """The longest-running open transaction of another session seen while it runs (sampled every 5 ms)."""

    def __init__(self, ip: str) -> None:
        super().__init__(daemon=True)
        self.ip, self.longest, self._halt = ip, 0.0, threading.Event()

    def run(self) -> None:
        with pg(self.ip) as conn:
            while not self._halt.is_set():
                row = conn.execute("SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) "
                                   "FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                                   "AND pid <> pg_backend_pid()").fetchone()
                self.longest = max(self.longest, float(row[0]) if row else 0.0)
                time.sleep(0.005)

    def stop(self) -> float:
        self._halt.set()
        self.join(5)
        return self.longest


def _seed(ip: str, shape: str, old: int) -> str:
    with pg(ip) as conn:
        conn.execute("DROP TABLE IF EXISTS events CASCADE")
        conn.execute(PLAIN if shape == "plain" else PARTITIONED)
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(statement, {"old": old, "new": NEW} if "%(" in statement else None)
        cutoff = conn.execute("SELECT to_char((now() - interval '30 days') AT TIME ZONE 'UTC', "
                               "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").fetchone()
    assert cutoff is not None
    return str(cutoff[0])


def _psql(ip: str, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": POSTGRES_PASSWORD}
    return subprocess.run(["psql", "-h", ip, "-U", "postgres", "-d", "postgres", "-qAt", "-c", sql], env=env,
                          check=True, capture_output=True, text=True).stdout.strip()


def by_rolecall(cluster: common.Cluster, ns: str, ip: str, cutoff: str, batch: int, run: int,
                drop: bool = False) -> dict[str, Any]:
    name = f"purge-{run}"
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "cutoff": cutoff,
                             "batchSize": batch, "wholePartitions": "DetachAndDrop" if drop else "Delete"}}
    create(cluster, ns, MAINTENANCES, maintenance(name, "db", [step], timeoutSeconds=3600))
    common.wait_status(cluster, ns, MAINTENANCES, name, lambda s: s.get("phase") in ("Succeeded", "Failed"), 1800)
    st = status_of(cluster, ns, MAINTENANCES, name)
    assert st["phase"] == "Succeeded", st
    op = st["operations"][0]
    return {"rows": op["rowsDeleted"], "batches": op["batches"], "dropped": op.get("partitionsDropped")}


def by_psql_loop(ip: str, cutoff: str, batch: int, partitioned: bool) -> dict[str, Any]:
    """The loop people write by hand, one psql call per batch. On a partitioned table a ctid is unique only per
    partition, so the loop there picks (tableoid, ctid) pairs and checks the cut-off again."""
    pick = ("(tableoid, ctid) IN (SELECT tableoid, ctid FROM events WHERE created_at < '{c}' LIMIT {b}) "
            "AND created_at < '{c}'" if partitioned
            else "ctid = ANY(ARRAY(SELECT ctid FROM events WHERE created_at < '{c}' LIMIT {b}))")
    # The cut-off is PostgreSQL's own RFC 3339 text and the batch an int: the shell loop's literals.
    where = pick.format(c=cutoff, b=batch)
    statement = f"WITH gone AS (DELETE FROM events WHERE {where} RETURNING 1) SELECT count(*) FROM gone"  # noqa: S608
    rows = batches = 0
    while True:
        n = int(_psql(ip, statement))
        rows, batches = rows + n, batches + (1 if n else 0)
        if n < batch:
            return {"rows": rows, "batches": batches}


def by_dropping_partitions(ip: str, cutoff: str, batch: int) -> dict[str, Any]:
    """What a DBA does on a time-partitioned table: detach and drop each partition entirely older than the
    cut-off (DETACH ... CONCURRENTLY cannot run in a transaction block, and psql -c runs one), then delete the
    rest of the straddling partition in batches."""
    with pg(ip) as conn:  # partitions whose upper bound is at or before the cut-off
        whole = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
            "'events'::regclass AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')"
            "::timestamptz <= %s::timestamptz ORDER BY 1", (cutoff,)).fetchall()]
    rows = 0
    for p in whole:
        rows += int(_psql(ip, f"SELECT count(*) FROM {p}"))  # noqa: S608 - a name from pg_class
        _psql(ip, f"ALTER TABLE events DETACH PARTITION {p} CONCURRENTLY")
        _psql(ip, f"DROP TABLE {p}")
    rest = by_psql_loop(ip, cutoff, batch, True)
    return {"rows": rows + rest["rows"], "batches": rest["batches"], "dropped": len(whole)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    rows_out: list[dict[str, Any]] = []
    with common.bed("purge") as cluster:
        ns = common.namespace(cluster, "purge")
        ip = pg_pods(cluster, ns, ["pg-0"])["pg-0"]
        op = common.operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-purge-")))
        try:
            create(cluster, ns, SERVERS, pg_server("db", {"app": "pg"}))
            run = 0
            for shape in ("plain", "partitioned"):
                methods = ["rolecall", "psql loop"] + (["rolecall drop", "drop by hand"] if shape == "partitioned"
                                                       else [])
                for method in methods:
                    run += 1
                    cutoff = _seed(ip, shape, args.old)
                    wal0 = pg_scalar(ip, "SELECT pg_current_wal_lsn()::text")
                    fpi0 = pg_scalar(ip, "SELECT wal_fpi FROM pg_stat_wal")
                    sampler = LongestTransaction(ip)
                    sampler.start()
                    t0 = time.monotonic()
                    if method == "rolecall":
                        out = by_rolecall(cluster, ns, ip, cutoff, args.batch, run)
                    elif method == "rolecall drop":
                        out = by_rolecall(cluster, ns, ip, cutoff, args.batch, run, drop=True)
                    elif method == "psql loop":
                        out = by_psql_loop(ip, cutoff, args.batch, shape == "partitioned")
                    else:
                        out = by_dropping_partitions(ip, cutoff, args.batch)
                    seconds = time.monotonic() - t0
                    longest = sampler.stop()
                    wal = pg_scalar(ip, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", wal0)
                    fpi = pg_scalar(ip, "SELECT wal_fpi FROM pg_stat_wal") - fpi0
                    left = pg_scalar(ip, "SELECT count(*) FROM events WHERE created_at < %s", cutoff)
                    kept = pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'new'")
                    assert out["rows"] == args.old and left == 0 and kept == NEW, (method, out, left, kept)
                    row = {"shape": shape, "method": method, "rows": out["rows"], "batches": out["batches"],
                           "seconds": round(seconds, 2), "rows_per_second": round(out["rows"] / seconds),
                           "longest_transaction_ms": round(longest * 1000, 1), "wal_mib": round(float(wal) / 2**20, 1),
                           "full_page_images": int(fpi)}
                    rows_out.append(row)
                    print(row, flush=True)
        finally:
            op.stop_all()
    base = {r["shape"]: r["rows_per_second"] for r in rows_out if r["method"] == "psql loop"}
    print(f"\nclearOldData of {args.old:,} old rows (+{NEW:,} newer kept), batch {args.batch}, {common.machine()}")
    print(f"{'shape':<12} {'method':<16} {'seconds':>8} {'rows/s':>9} {'vs loop':>8} {'longest txn ms':>15} "
          f"{'WAL MiB':>8} {'FPIs':>7}")
    for r in rows_out:
        print(f"{r['shape']:<12} {r['method']:<16} {r['seconds']:>8} {r['rows_per_second']:>9} "
              f"{r['rows_per_second'] / base[r['shape']]:>7.2f}x {r['longest_transaction_ms']:>15} {r['wal_mib']:>8} "
              f"{r['full_page_images']:>7}")
    common.write("purge", {"old": args.old, "new": NEW, "batch": args.batch, "results": rows_out}, rows_out)
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['shape']}\n{r['method']}" for r in rows_out]
    ax.bar(labels, [r["rows_per_second"] for r in rows_out])
    ax.set_ylabel("rows deleted per second")
    ax.set_title(f"clearOldData, {args.old:,} old rows, batch {args.batch}")
    fig.tight_layout()
    fig.savefig(common.RESULTS / "purge.png")


if __name__ == "__main__":
    main()
