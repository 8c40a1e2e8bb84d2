"""clearOldData on a partitioned PostgreSQL table of 100,000 rows while the operator is SIGKILLed, the leader is
frozen past its Lease, the apiserver goes away, or the operator dies between a batch's COMMIT and the status
write after it. Asserted with PostgreSQL's own rows, split at the run's recorded cut-off: no row newer than it
is deleted, every older row is, rowsDeleted equals the real difference at the end and never exceeds it while
the run goes (sampled), the run is resumed (same cut-off, same start, one history entry), and after a
takeover the frozen leader sends no DELETE (the server log names each statement's operator)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dbkit import (
    MAINTENANCES,
    SERVERS,
    create,
    maintenance,
    pg,
    pg_pods,
    pg_scalar,
    pg_server,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, wait_for
from testbed import cluster as bed

pytestmark = pytest.mark.faults
OLD_A, OLD_B, MID, NEW = 50_000, 20_000, 5_000, 25_000
OLD = OLD_A + OLD_B
BATCH = 1000
# Three partitions: one entirely older than the 30-day cut-off, one straddling it, one entirely newer. A
# statement trigger on each partition makes every batch take 0.3 s more, so the faults land mid-run.
SEED = f"""
CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at);
CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2000-01-01') TO (now() - interval '45 days');
CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (now() - interval '45 days') TO (now() - interval '20 days');
CREATE TABLE events_c PARTITION OF events FOR VALUES FROM (now() - interval '20 days') TO (MAXVALUE);
INSERT INTO events (created_at, payload) SELECT now() - interval '200 days' + g * interval '1 minute', 'old'
    FROM generate_series(1, {OLD_A}) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '44 days' + g * interval '30 seconds', 'old'
    FROM generate_series(1, {OLD_B}) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '29 days' + g * interval '1 minute', 'mid'
    FROM generate_series(1, {MID}) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '19 days' + g * interval '1 minute', 'new'
    FROM generate_series(1, {NEW}) g;
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow_a AFTER DELETE ON events_a FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
CREATE TRIGGER slow_b AFTER DELETE ON events_b FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""  # noqa: S608 - numbers only
STEP = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d", "batchSize": BATCH}}


class RowSampler:
    """Polls the maintenance's status and, right after, PostgreSQL's row count: rows only go, so a status whose
    rowsDeleted exceeds what is gone by then claimed a delete that did not happen."""

    def __init__(self, cluster: Cluster, ns: str, ip: str, total: int) -> None:
        self.cluster, self.ns, self.ip, self.total = cluster, ns, ip, total
        self.lies: list[tuple[int, int]] = []
        self.seen: list[tuple[str | None, str | None, int]] = []  # (cutoff, startedAt, rowsDeleted)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RowSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                st = status_of(self.cluster, self.ns, MAINTENANCES, "purge")
                gone = self.total - pg_scalar(self.ip, "SELECT count(*) FROM events")
            except Exception:
                time.sleep(0.1)
                continue
            op = (st.get("operations") or [{}])[0]
            claimed = op.get("rowsDeleted") or 0
            self.seen.append((op.get("cutoff"), st.get("startedAt"), claimed))
            if claimed > gone:
                self.lies.append((claimed, gone))
            time.sleep(0.1)


def _batches(cluster: Cluster, ns: str) -> int:
    return int(((status_of(cluster, ns, MAINTENANCES, "purge").get("operations") or [{}])[0]).get("batches") or 0)


def _advance(cluster: Cluster, ns: str, by: int, what: str) -> int:
    start = _batches(cluster, ns)
    return wait_for(lambda: (b := _batches(cluster, ns)) >= start + by and b, what, 120, interval=0.05)


def _leader(op: Operator, other_than: int | None = None) -> int:
    def holder() -> int | None:
        for i, proc in enumerate(op.procs):
            text = (op.log_dir / f"operator-{i}.log").read_text(errors="replace")
            if i != other_than and proc.poll() is None and \
                    text.rfind("acquired as") > text.rfind("returning to standby"):
                return i
        return None

    return wait_for(lambda: (h := holder()) is not None and h + 1, "a leader", 30) - 1


def _identity(op: Operator, i: int) -> str:
    text = (op.log_dir / f"operator-{i}.log").read_text(errors="replace")
    return re.findall(r"acquired as (\S+)", text)[-1]


def _server_log(cluster: Cluster, ns: str) -> Path:
    found = list((cluster.bed.dir / "standins").glob(f"{ns}.pg-0.*/server.log"))
    assert len(found) == 1, found
    return found[0]


def _start(cluster: Cluster, ns: str, op: Operator, operators: int) -> tuple[str, int]:
    ip = pg_pods(cluster, ns, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(SEED)
    total = pg_scalar(ip, "SELECT count(*) FROM events")
    assert total == OLD + MID + NEW
    for _ in range(operators):
        op.start()
    create(cluster, ns, SERVERS, pg_server("db", {"app": "pg"}))
    create(cluster, ns, MAINTENANCES, maintenance("purge", "db", [STEP], timeoutSeconds=900))
    return ip, total


def _check_truth(cluster: Cluster, ns: str, ip: str, total: int, sampler: RowSampler) -> dict[str, Any]:
    st = wait_finished(cluster, ns, "purge", 300)
    sampler.stop()
    op = st["operations"][0]
    with pg(ip) as conn:
        counts = dict(conn.execute("SELECT payload, count(*) FROM events GROUP BY payload").fetchall())
    older_left = pg_scalar(ip, "SELECT count(*) FROM events WHERE created_at < %s::timestamptz", op["cutoff"])
    print(f"phase {st['phase']}, rowsDeleted {op['rowsDeleted']}, batches {op['batches']}, samples "
          f"{len(sampler.seen)}, lies {len(sampler.lies)}, rows left {counts}")
    assert st["phase"] == "Succeeded", st.get("operations")
    assert counts == {"mid": MID, "new": NEW} and older_left == 0, counts
    assert op["matchedAtStart"] == OLD and op["rowsDeleted"] == total - sum(counts.values()) == OLD, op
    assert sampler.lies == [], f"status claimed rows deleted that PostgreSQL still had: {sampler.lies[:5]}"
    # Resumed, never restarted: one cut-off and one start throughout, the count never went back, one run.
    assert len({(c, s) for c, s, _ in sampler.seen if c}) == 1, {(c, s) for c, s, _ in sampler.seen}
    claimed = [n for _, _, n in sampler.seen]
    assert claimed == sorted(claimed), "rowsDeleted went back"
    assert [r["outcome"] for r in st["history"]] == ["Succeeded"], st["history"]
    return st


def test_a_frozen_leader_replaced_then_killed_twice(fault_bed: Cluster, fault_namespace: str,
                                                   fault_operator: Operator) -> None:
    ns, op = fault_namespace, fault_operator
    ip, total = _start(fault_bed, ns, op, 2)
    sampler = RowSampler(fault_bed, ns, ip, total).start()
    _advance(fault_bed, ns, 5, "five batches before the freeze")
    frozen = _leader(op)
    old = _identity(op, frozen)
    op.freeze(op.procs[frozen], True)
    time.sleep(3 * op.lease_seconds)  # the standby takes over and goes on
    after = _advance(fault_bed, ns, 3, "three batches by the new leader")
    new = _identity(op, _leader(op, other_than=frozen))
    op.freeze(op.procs[frozen], False)
    log = op.log_dir / f"operator-{frozen}.log"
    wait_for(lambda: "returning to standby" in log.read_text(errors="replace"), "the old leader to step down", 30)
    # The server's own log up to here: once the new leader deleted, the frozen one sent no DELETE before it
    # stepped down (later, as a standby, it may lead again after a kill, legitimately).
    lines = [line for line in _server_log(fault_bed, ns).read_text(errors="replace").splitlines() if "DELETE" in line]
    first_new = next(i for i, line in enumerate(lines) if f"rolecall {new}:" in line)
    late = [line for line in lines[first_new:] if f"rolecall {old}:" in line]
    print(f"took over with {after} batches recorded; DELETEs by the old leader {old} after {new}'s first: {len(late)}")
    assert not late, late[:3]
    for kill in (1, 2):
        _advance(fault_bed, ns, 5, f"five batches before kill {kill}")
        op.kill(op.procs[_leader(op)])
        op.start()  # two operators again: the standby takes over, a new one stands by
    _check_truth(fault_bed, ns, ip, total, sampler)


def test_killed_between_a_batchs_commit_and_the_write_after_it(fault_bed: Cluster, fault_namespace: str,
                                                               fault_operator: Operator) -> None:
    """A batch commits, then the apiserver is frozen before the next status write (which would count it), and
    the operator is killed: the count of that batch exists only as its receipt (txid), and the resumed run
    settles it with PostgreSQL."""
    ns, op = fault_namespace, fault_operator
    ip, total = _start(fault_bed, ns, op, 1)
    sampler = RowSampler(fault_bed, ns, ip, total).start()
    _advance(fault_bed, ns, 5, "five batches")
    left = pg_scalar(ip, "SELECT count(*) FROM events")
    wait_for(lambda: pg_scalar(ip, "SELECT count(*) FROM events") < left, "the next COMMIT", 30, interval=0.005)
    bed.freeze(fault_bed.bed, "kube-apiserver", True)  # the write that would count it cannot land
    try:
        time.sleep(0.5)
        pending = pg_scalar(ip, "SELECT count(*) FROM pg_stat_activity WHERE starts_with(application_name, "
                                "'rolecall') AND backend_xid IS NOT NULL")
        op.kill()
    finally:
        bed.freeze(fault_bed.bed, "kube-apiserver", False)
    op.start()
    st = _check_truth(fault_bed, ns, ip, total, sampler)
    print(f"open batch transactions at the kill: {pending}; finished with {st['operations'][0]['batches']} batches")


def test_an_apiserver_outage_mid_run(fault_bed: Cluster, fault_namespace: str, fault_operator: Operator) -> None:
    ns, op = fault_namespace, fault_operator
    ip, total = _start(fault_bed, ns, op, 1)
    sampler = RowSampler(fault_bed, ns, ip, total).start()
    _advance(fault_bed, ns, 5, "five batches")
    bed.kill(fault_bed.bed, "kube-apiserver")
    deleted_during = pg_scalar(ip, "SELECT count(*) FROM events")
    time.sleep(10)
    deleted_during -= pg_scalar(ip, "SELECT count(*) FROM events")
    bed.restart(fault_bed.bed, "kube-apiserver")
    _check_truth(fault_bed, ns, ip, total, sampler)
    print(f"rows deleted while the apiserver was away: {deleted_during} (at most one batch may commit unrecorded)")
    assert deleted_during <= BATCH  # no batch commits without its receipt on record
