"""kill -9 of the operator mid-clearOldData: after restart it finishes with the same cut-off; rows deleted
equals the rows that matched at the start; newer rows are untouched. Batches are made slow by a trigger
that sleeps, so the half-done state can be observed (and asserted) before the kill."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dbkit import (
    MAINTENANCES,
    NEW,
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

OLD = 40
SLOW_BATCHES = """
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.6); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER DELETE ON events FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""


def _seed(ip: str) -> None:
    with pg(ip) as conn:
        conn.execute("CREATE TABLE events (id serial PRIMARY KEY, created_at timestamptz NOT NULL, payload text)")
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '40 days' - g * interval "
                     "'1 minute', 'old' FROM generate_series(1, %s) g", (OLD,))
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '1 day', 'new' "
                     "FROM generate_series(1, %s)", (NEW,))
        conn.execute(SLOW_BATCHES)


def test_kill_mid_run_then_restart_finishes_with_the_same_cutoff(local_bed: Cluster, namespace: str,
                                                                 operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    _seed(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                             "batchSize": 4}}
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [step]))

    def half_done() -> dict | None:  # type: ignore[type-arg]
        op = (status_of(local_bed, namespace, MAINTENANCES, "purge").get("operations") or [{}])[0]
        return op if (op.get("batches") or 0) > 0 and (op.get("remaining") or 0) > 0 else None

    before = wait_for(half_done, "status to show some but not all batches done", 60)
    assert before["matchedAtStart"] == OLD and before["cutoff"]
    operator.kill()
    left = pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'old'")
    assert 0 < left < OLD, left  # the kill really landed mid-run

    operator.start()
    st = wait_finished(local_bed, namespace, "purge", 120)
    assert st["phase"] == "Succeeded", st.get("operations")
    op = st["operations"][0]
    assert op["cutoff"] == before["cutoff"], "the restart must reuse the stored cut-off"
    assert (op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == (OLD, OLD, 0), op
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW


def test_after_a_kill_the_running_maintenance_keeps_the_database_and_a_queued_one_waits(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """The claim on a database is the Running phase in status, not the operator's memory: after a restart the
    queued sibling (which may reconcile first) waits, and the interrupted run goes on with its cut-off and its
    count instead of being queued and started over."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    _seed(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                             "batchSize": 4}}
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [step]))
    before = wait_for(lambda: (op := (status_of(local_bed, namespace, MAINTENANCES, "purge").get("operations")
                                      or [{}])[0]).get("batches") and op, "a first batch", 60)
    create(local_bed, namespace, MAINTENANCES, maintenance("later", "db", [{"compact": {}}]))
    wait_for(lambda: status_of(local_bed, namespace, MAINTENANCES, "later").get("phase") == "Queued", "queued", 30)
    operator.kill()

    operator.start()
    phases: list[str | None] = []

    def finished() -> dict | None:  # type: ignore[type-arg]
        st = status_of(local_bed, namespace, MAINTENANCES, "purge")
        phases.append(st.get("phase"))
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    st = wait_for(finished, "the interrupted run to finish", 120)
    assert st["phase"] == "Succeeded" and set(phases) <= {"Running", "Succeeded"}, phases
    op = st["operations"][0]
    assert op["cutoff"] == before["cutoff"] and (op["rowsDeleted"], op["remaining"]) == (OLD, 0), op
    assert [r["outcome"] for r in st["history"]] == ["Succeeded"], st["history"]  # one run, not a second one
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW
    assert wait_finished(local_bed, namespace, "later", 60)["phase"] == "Succeeded"


def test_a_run_left_running_by_the_previous_build_resumes_after_an_upgrade(local_bed: Cluster, namespace: str,
                                                                           operator: Operator) -> None:
    """The build before receipts recorded a running clearOldData as: phase Running, its cut-off as PostgreSQL's
    own text, rowsDeleted = matchedAtStart - remaining, no pendingBatch. This build resumes it with that cut-off
    and ends with rowsDeleted equal to the rows really gone."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    _seed(ip)
    cutoff = pg_scalar(ip, "SELECT (now() - interval '30 days')::timestamptz::text")  # e.g. 2026-11-07 15:40:00+00
    with pg(ip) as conn:  # the two batches the old build committed before it was replaced
        conn.execute("DELETE FROM events WHERE ctid = ANY(ARRAY(SELECT ctid FROM events WHERE created_at < %s "
                     "LIMIT 8))", (cutoff,))
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    step = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                             "batchSize": 4}}
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [step]))
    # A minute ago: the run's timeoutSeconds (3600) counts from its start.
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    old_status = {"phase": "Running", "summary": "clearOldData(events)", "scheduledAt": started, "startedAt": started,
                  "operations": [{"type": "clearOldData", "target": "events.created_at", "phase": "Running",
                                  "cutoff": cutoff, "matchedAtStart": OLD, "remaining": OLD - 8, "rowsDeleted": 8,
                                  "batches": 2, "startedAt": started}]}
    _status_api(local_bed).patch_namespaced_custom_object_status(
        "rolecall.dev", "v1alpha1", namespace, MAINTENANCES, "purge", {"status": old_status})
    operator.start()
    st = wait_finished(local_bed, namespace, "purge", 120)
    op = st["operations"][0]
    assert st["phase"] == "Succeeded" and st["startedAt"] == started, st
    assert op["cutoff"] == cutoff and (op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == (OLD, OLD, 0), op
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW


def _status_api(cluster: Cluster) -> Any:
    from kubernetes import client  # type: ignore[import-untyped]

    return client.CustomObjectsApi(cluster.api_client)
