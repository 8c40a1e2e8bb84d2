"""Deleting a running maintenance cancels its statement on the server; a second maintenance on the same
database waits in phase Queued until the first is gone."""

from __future__ import annotations

from dbkit import (
    MAINTENANCES,
    SERVERS,
    create,
    delete,
    maintenance,
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
ROLECALL_ACTIVE = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rolecall' AND state = 'active'"


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
