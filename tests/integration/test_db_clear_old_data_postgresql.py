"""clearOldData on real PostgreSQL: rows older than the stored cut-off deleted in batches, newer rows kept."""

from __future__ import annotations

from dbkit import (
    CLEAR,
    MAINTENANCES,
    NEW,
    OLD,
    SERVERS,
    create,
    maintenance,
    patch,
    pg,
    pg_pods,
    pg_scalar,
    pg_server,
    seed_events,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, wait_for


def test_old_rows_deleted_in_batches_newer_rows_kept(local_bed: Cluster, namespace: str,
                                                     operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [CLEAR]))
    st = wait_finished(local_bed, namespace, "purge")
    assert st["phase"] == "Succeeded", st.get("operations")
    op = st["operations"][0]
    assert (op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == (OLD, OLD, 0), op
    assert op["batches"] == 5 and op["cutoff"], op  # 7+7+7+7+2
    assert st["rowsDeleted"] == OLD and st["summary"] == "clearOldData(events)"
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW
    # The cut-off was computed by PostgreSQL (now() - 30 days) and is what every batch compared with.
    assert pg_scalar(ip, "SELECT abs(extract(epoch FROM (now() - interval '30 days' - %s::timestamptz))) < 600",
                     op["cutoff"]) is True
    server = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("lastClearOldData") and s,
                      "the DatabaseServer to show the last clearOldData")
    assert server["lastClearOldData"]["rowsDeleted"] == OLD and server["primary"] == "pg-0"
    table = local_bed.kubectl("get", "-n", namespace, "databasemaintenance", "purge").stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "DATABASE", "OPERATIONS", "SCHEDULE", "PHASE", "ROWS", "RECLAIMED", "AGE"], header
    assert "Succeeded" in table and " 30 " in table
    assert local_bed.kubectl("wait", "-n", namespace, "databasemaintenance/purge", "--for=condition=Complete",
                             "--timeout=5s").returncode == 0


def test_max_rows_stops_early_and_the_count_stays_exact(local_bed: Cluster, namespace: str,
                                                        operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    capped = {"clearOldData": {**CLEAR["clearOldData"], "maxRows": 10}}
    create(local_bed, namespace, MAINTENANCES, maintenance("capped", "db", [capped]))
    op = wait_finished(local_bed, namespace, "capped")["operations"][0]
    assert (op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == (OLD, 10, OLD - 10), op
    assert pg_scalar(ip, "SELECT count(*) FROM events") == OLD + NEW - 10


def test_a_column_that_is_not_a_time_is_refused_and_nothing_deleted(local_bed: Cluster, namespace: str,
                                                                   operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    wrong = {"clearOldData": {"table": "events", "timestampColumn": "payload", "olderThan": "30d"}}
    st = wait_finished(local_bed, namespace, create(local_bed, namespace, MAINTENANCES,
                                                    maintenance("wrong", "db", [wrong]))["metadata"]["name"])
    assert st["phase"] == "Failed"
    assert st["operations"][0]["error"] == ("postgresql: events.payload is text, not a timestamp, a date or an integer "
                                           "with timestampFormat")
    assert pg_scalar(ip, "SELECT count(*) FROM events") == OLD + NEW


def test_a_dry_run_reports_cutoff_matching_rows_and_size_then_the_real_run_deletes_exactly_those(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """dryRun: the cut-off (computed by PostgreSQL), the rows older than it and the table size, and nothing
    deleted or vacuumed; setting dryRun false runs it for real and deletes exactly the rows the plan named.
    The seeded rows are 60 days old and 1 day old: far from the 30-day cut-off on either side."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    vacuums = pg_scalar(ip, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'events'")
    create(local_bed, namespace, MAINTENANCES, maintenance("preview", "db", [CLEAR, {"compact": {}}], dryRun=True))
    st = wait_finished(local_bed, namespace, "preview")
    assert st["phase"] == "Succeeded" and st["dryRun"] is True, st
    plan, compact = st["operations"]
    assert plan["matchedAtStart"] == OLD and plan["cutoff"] and plan["bytesBefore"] > 0, plan
    assert "rowsDeleted" not in plan and compact["bytesBefore"] > 0 and "bytesAfter" not in compact, compact
    complete = next(c for c in st["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "DryRun" and f"{OLD} rows older than" in complete["message"], complete
    assert pg_scalar(ip, "SELECT count(*) FROM events") == OLD + NEW  # nothing deleted
    assert pg_scalar(ip, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'events'") == vacuums
    assert pg_scalar(ip, "SELECT abs(extract(epoch FROM (now() - interval '30 days' - %s::timestamptz))) < 600",
                     plan["cutoff"]) is True
    assert "lastClearOldData" not in status_of(local_bed, namespace, SERVERS, "db")  # a plan is no result

    patch(local_bed, namespace, MAINTENANCES, "preview", {"spec": {"dryRun": False}})
    st = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "preview")).get("phase") == "Succeeded"
                  and not s.get("dryRun") and s.get("completedAt") and s, "the real run")
    assert st["operations"][0]["rowsDeleted"] == plan["matchedAtStart"] == OLD, st["operations"]
    assert pg_scalar(ip, "SELECT count(*) FROM events") == NEW
    runs = [(r["trigger"], r["outcome"], r.get("dryRun", False), r.get("rowsDeleted")) for r in st["history"]]
    assert runs == [("Create", "Succeeded", False, OLD), ("Create", "DryRun", True, None)], runs
    assert all(r["requester"] for r in st["history"]), st["history"]  # recorded at admission, per run


def test_a_partitioned_table_loses_only_rows_older_than_the_plans_cutoff(local_bed: Cluster, namespace: str,
                                                                         operator: Operator) -> None:
    """The issue's reproduction through the operator: a dry run records its cut-off; a second maintenance pinned
    to that cut-off deletes exactly the rows the plan counted, from both partitions' old rows, and none of this
    week's (PostgreSQL's own counts)."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute("""
            CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text)
                PARTITION BY RANGE (created_at);
            CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2020-01-01') TO (now() - interval '25 days');
            CREATE TABLE events_new PARTITION OF events FOR VALUES FROM (now() - interval '25 days') TO (MAXVALUE);
            INSERT INTO events (created_at, payload) SELECT now() - interval '90 days' + g * interval '1 hour', 'old'
                FROM generate_series(1, 30) g;
            INSERT INTO events (created_at, payload) SELECT now() - interval '28 days', 'mid'
                FROM generate_series(1, 4);
            INSERT INTO events (created_at, payload) SELECT now() - interval '1 day', 'new' FROM generate_series(1, 20)
            """)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    create(local_bed, namespace, MAINTENANCES, maintenance("plan", "db", [CLEAR], dryRun=True))
    plan = wait_finished(local_bed, namespace, "plan")["operations"][0]
    assert (plan["matchedAtStart"], plan["parts"], plan["nullRows"]) == (OLD, 2, 0), plan
    pinned = {"clearOldData": {"table": "public.events", "timestampColumn": "created_at", "cutoff": plan["cutoff"],
                               "batchSize": 7}}
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [pinned]))
    st = wait_finished(local_bed, namespace, "purge")
    assert st["phase"] == "Succeeded", st.get("operations")
    op = st["operations"][0]
    assert (op["cutoff"], op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == (plan["cutoff"], OLD, OLD, 0)
    with pg(ip) as conn:
        counts = dict(conn.execute("SELECT payload, count(*) FROM events GROUP BY payload").fetchall())
    assert counts == {"mid": 4, "new": NEW}, counts


def test_whole_partitions_are_named_in_the_plan_then_detached_and_dropped(local_bed: Cluster, namespace: str,
                                                                          operator: Operator) -> None:
    """wholePartitions DetachAndDrop through the operator: the dry run names the partition entirely older than
    the cut-off and the lock its detach takes; the real run, pinned to the plan's cut-off, drops it, deletes
    the straddling partition's older rows in batches, and counts both."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute("""
            CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text)
                PARTITION BY RANGE (created_at);
            CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2020-01-01') TO (now() - interval '50 days');
            CREATE TABLE events_mid PARTITION OF events FOR VALUES FROM (now() - interval '50 days')
                TO (now() - interval '10 days');
            CREATE TABLE events_new PARTITION OF events FOR VALUES FROM (now() - interval '10 days') TO (MAXVALUE);
            INSERT INTO events (created_at, payload) SELECT now() - interval '90 days', 'old'
                FROM generate_series(1, 25);
            INSERT INTO events (created_at, payload) SELECT now() - interval '40 days', 'old'
                FROM generate_series(1, 5);
            INSERT INTO events (created_at, payload) SELECT now() - interval '20 days', 'mid'
                FROM generate_series(1, 4);
            INSERT INTO events (created_at, payload) SELECT now() - interval '1 day', 'new'
                FROM generate_series(1, 20)
            """)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    drop = {"clearOldData": {**CLEAR["clearOldData"], "wholePartitions": "DetachAndDrop"}}
    create(local_bed, namespace, MAINTENANCES, maintenance("plan", "db", [drop], dryRun=True))
    plan = wait_finished(local_bed, namespace, "plan")["operations"][0]
    assert (plan["matchedAtStart"], plan["partitionsDropped"]) == (OLD, 1), plan
    assert "drops whole partition public.events_old: detached CONCURRENTLY (a SHARE UPDATE EXCLUSIVE lock on " \
           "public.events), then dropped" in plan["notes"], plan["notes"]
    assert pg_scalar(ip, "SELECT count(*) FROM events") == OLD + 4 + NEW  # the plan changed nothing
    pinned = {"clearOldData": {**drop["clearOldData"], "cutoff": plan["cutoff"]}}
    del pinned["clearOldData"]["olderThan"]
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [pinned]))
    op = wait_finished(local_bed, namespace, "purge")["operations"][0]
    assert (op["rowsDeleted"], op["partitionsDropped"], op["batches"], op["remaining"]) == (OLD, 1, 1, 0), op
    assert pg_scalar(ip, "SELECT to_regclass('events_old') IS NULL") is True
    with pg(ip) as conn:
        counts = dict(conn.execute("SELECT payload, count(*) FROM events GROUP BY payload").fetchall())
    assert counts == {"mid": 4, "new": NEW}, counts
