"""Deleting a running maintenance cancels its statement on the server; a second maintenance on the same
database waits in phase Queued until the first is gone; the cancel annotation ends a long clear between
batches with true counts."""

from __future__ import annotations

from dbkit import (
    MAINTENANCES,
    SERVERS,
    create,
    delete,
    maintenance,
    patch,
    pg,
    pg_pods,
    pg_scalar,
    pg_server,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, wait_for

HANGING_BATCH = """
CREATE TABLE events (id serial PRIMARY KEY, created_at timestamptz NOT NULL);
INSERT INTO events (created_at) SELECT now() - interval '40 days' FROM generate_series(1, 10);
CREATE FUNCTION hang() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(600); RETURN NULL; END $$;
CREATE TRIGGER hang AFTER DELETE ON events FOR EACH STATEMENT EXECUTE FUNCTION hang();
"""
ROLECALL_ACTIVE = ("SELECT count(*) FROM pg_stat_activity WHERE starts_with(application_name, 'rolecall') "
                   "AND state = 'active'")


def test_delete_cancels_the_running_statement_and_the_queued_one_runs_next(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(HANGING_BATCH)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d"}}
    create(local_bed, namespace, MAINTENANCES, maintenance("stuck", "db", [step]))
    wait_for(lambda: pg_scalar(ip, ROLECALL_ACTIVE) == 1, "the DELETE to hang in its trigger")

    create(local_bed, namespace, MAINTENANCES, maintenance("next", "db", [{"compact": {}}]))
    queued = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "next")).get("phase") == "Queued"
                      and s, "the second maintenance to queue")
    assert "Waiting for DatabaseMaintenance stuck on db to finish." in str(queued["conditions"])

    delete(local_bed, namespace, MAINTENANCES, "stuck")
    wait_for(lambda: pg_scalar(ip, ROLECALL_ACTIVE) == 0, "the statement to be cancelled on the server")
    # The cancelled batch rolled back: nothing was deleted.
    assert pg_scalar(ip, "SELECT count(*) FROM events") == 10
    assert wait_finished(local_bed, namespace, "next")["phase"] == "Succeeded"


SLOW_BATCHES = """
CREATE TABLE events (id serial PRIMARY KEY, created_at timestamptz NOT NULL);
INSERT INTO events (created_at) SELECT now() - interval '40 days' FROM generate_series(1, 200);
INSERT INTO events (created_at) SELECT now() - interval '1 day' FROM generate_series(1, 5);
CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
CREATE TRIGGER slow AFTER DELETE ON events FOR EACH STATEMENT EXECUTE FUNCTION slow();
"""


def test_the_cancel_annotation_ends_a_long_clear_between_batches_with_true_counts(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """A clearOldData of 20 batches (each 0.5 s on the server) is cancelled by rolecall.dev/cancel naming the
    run's scheduledAt: phase Cancelled, the rows deleted in status are exactly the rows gone from the table,
    at most the batch in flight (and one started before the watch delivered the cancel) ran after it, and
    the newer rows are untouched."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(SLOW_BATCHES)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                             "batchSize": 10}}
    create(local_bed, namespace, MAINTENANCES, maintenance("long", "db", [step]))
    st = wait_for(lambda: ((s := status_of(local_bed, namespace, MAINTENANCES, "long")).get("operations") or [{}])[0]
                  .get("batches", 0) >= 2 and s, "two batches done", 60)
    deleted_before = 205 - pg_scalar(ip, "SELECT count(*) FROM events")
    patch(local_bed, namespace, MAINTENANCES, "long",
          {"metadata": {"annotations": {"rolecall.dev/cancel": st["scheduledAt"]}}})
    st = wait_finished(local_bed, namespace, "long")
    assert st["phase"] == "Cancelled", st
    gone = 205 - pg_scalar(ip, "SELECT count(*) FROM events")
    assert st["rowsDeleted"] == st["operations"][0]["rowsDeleted"] == gone, (st["operations"], gone)
    assert deleted_before <= gone <= deleted_before + 2 * 10 and gone < 200, (deleted_before, gone)
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE created_at > now() - interval '2 days'") == 5
    assert pg_scalar(ip, ROLECALL_ACTIVE) == 0
    complete = next(c for c in st["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "Cancelled" and not any(
        c["type"] == "Stalled" and c["status"] == "True" for c in st["conditions"]), st["conditions"]


def test_timeout_seconds_ends_a_long_clear_with_true_counts(local_bed: Cluster, namespace: str,
                                                            operator: Operator) -> None:
    """timeoutSeconds on the same 20 slow batches: the run ends Failed with reason TimedOut between batches,
    its rowsDeleted are exactly the rows gone, and the newer rows are untouched."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(SLOW_BATCHES)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                             "batchSize": 10}}
    create(local_bed, namespace, MAINTENANCES, maintenance("slow", "db", [step], timeoutSeconds=5))
    st = wait_finished(local_bed, namespace, "slow")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert st["phase"] == "Failed" and failed["reason"] == "TimedOut", st["conditions"]
    assert "timeoutSeconds ran out" in st["operations"][0]["error"], st["operations"]
    gone = 205 - pg_scalar(ip, "SELECT count(*) FROM events")
    assert 0 < gone < 200 and st["rowsDeleted"] == st["operations"][0]["rowsDeleted"] == gone, (st, gone)
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE created_at > now() - interval '2 days'") == 5
    assert pg_scalar(ip, ROLECALL_ACTIVE) == 0
