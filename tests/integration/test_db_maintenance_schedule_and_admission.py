"""Recurring maintenance: runs on its (seconds-granularity) schedule, keeps history, respects suspend. The
spec is immutable except suspend and dryRun, and unsafe identifiers never reach the database: admission refuses them."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from dbkit import (
    CLEAR,
    MAINTENANCES,
    SERVERS,
    create,
    maintenance,
    patch,
    pg,
    pg_pods,
    pg_server,
    sqlite_app,
    sqlite_server,
    status_of,
)
from harness import Cluster, Operator, wait_for


def test_schedule_runs_repeatedly_keeps_history_and_suspend_stops_it(local_bed: Cluster, namespace: str,
                                                                    operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute("CREATE TABLE events (id serial PRIMARY KEY, created_at timestamptz NOT NULL, payload text)")
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    # Six fields: the last one is seconds, so the test sees several runs without waiting minutes.
    create(local_bed, namespace, MAINTENANCES, maintenance("nightly", "db", [CLEAR], schedule="* * * * * */3"))
    st = wait_for(lambda: len((s := status_of(local_bed, namespace, MAINTENANCES, "nightly")).get("history") or [])
                  >= 2 and s, "two scheduled runs", 60)
    assert all(r["outcome"] == "Succeeded" and r["trigger"] == "Schedule" and r["requester"] for r in st["history"]), \
        st["history"]
    assert st["history"][0]["scheduledAt"] > st["history"][1]["scheduledAt"]  # newest first
    assert st["nextRunAt"] > st["history"][0]["scheduledAt"]

    patch(local_bed, namespace, MAINTENANCES, "nightly", {"spec": {"suspend": True}})
    st = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "nightly")).get("conditions") and
                  any(c["type"] == "Suspended" and c["status"] == "True" for c in s["conditions"]) and s,
                  "Suspended")
    runs = len(st["history"])
    # Absence over a bounded time: the schedule is due every 3 s; after 7 s no new run may have started.
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        current = status_of(local_bed, namespace, MAINTENANCES, "nightly")
        assert len(current.get("history") or []) <= runs + 1, "a run started while suspended"  # +1: one in flight
        time.sleep(0.5)
    settled = len(status_of(local_bed, namespace, MAINTENANCES, "nightly").get("history") or [])
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        assert len(status_of(local_bed, namespace, MAINTENANCES, "nightly").get("history") or []) == settled
        time.sleep(0.5)
    patch(local_bed, namespace, MAINTENANCES, "nightly", {"spec": {"suspend": False}})
    wait_for(lambda: len(status_of(local_bed, namespace, MAINTENANCES, "nightly").get("history") or []) > settled,
             "runs to resume", 30)


def _rejected(cluster: Cluster, ns: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        create(cluster, ns, MAINTENANCES, body)
    assert err.value.status == 422, err.value.body
    return str(json.loads(err.value.body)["message"])


IDENTIFIER = "must be a plain SQL identifier: a letter or _, then letters, digits or _ (at most 63)"


@pytest.mark.parametrize(("step", "phrase"), [
    ({"clearOldData": {"table": "x; DROP TABLE y", "timestampColumn": "t", "olderThan": "30d"}},
     'spec.operations[0].clearOldData.table: Invalid value: "x; DROP TABLE y": must be a table name, optionally '
     "schema-qualified: plain SQL identifiers (a letter or _, then letters, digits or _, at most 63 each), e.g. "
     "events or archive.events"),
    ({"clearOldData": {"table": "a.b.c", "timestampColumn": "t", "olderThan": "30d"}},
     'spec.operations[0].clearOldData.table: Invalid value: "a.b.c": must be a table name'),
    ({"clearOldData": {"table": "events", "timestampColumn": "t"}},
     "each clearOldData sets exactly one of olderThan (e.g. 30d) or cutoff (a fixed RFC 3339 time)"),
    ({"clearOldData": {"table": "events", "timestampColumn": "t", "olderThan": "30d",
                       "cutoff": "2026-11-01T00:00:00Z"}},
     "each clearOldData sets exactly one of olderThan (e.g. 30d) or cutoff (a fixed RFC 3339 time)"),
    ({"clearOldData": {"table": "events", "timestampColumn": "t", "olderThan": "30d", "maxRows": 10,
                       "wholePartitions": "DetachAndDrop"}},
     "clearOldData's maxRows cannot be combined with wholePartitions DetachAndDrop"),
    ({"clearOldData": {"table": "events", "timestampColumn": "t", "cutoff": "2026-11-31T00:00:00Z"}},
     'spec.operations[0].clearOldData.cutoff: Invalid value: "2026-11-31T00:00:00Z": must be an RFC 3339 time'),
    ({"clearOldData": {"table": "events", "timestampColumn": 'created_at" --', "olderThan": "30d"}},
     f"spec.operations[0].clearOldData.timestampColumn: Invalid value: \"created_at\\\" --\": {IDENTIFIER}"),
    ({"compact": {"tables": ["ok", "bad name"]}}, 'spec.operations[0].compact.tables[1]: Invalid value: "bad name"'),
    ({"clearOldData": {"table": "events", "timestampColumn": "t", "olderThan": "30 days"}},
     "spec.operations[0].clearOldData.olderThan: Invalid value: \"30 days\""),
    ({"clearOldData": {"table": "events", "timestampColumn": "t", "olderThan": "30d", "batchSize": 0}},
     "spec.operations[0].clearOldData.batchSize: Invalid value: 0"),
    ({"compact": {}, "clearOldData": {"table": "events", "timestampColumn": "t", "olderThan": "30d"}},
     "each operation sets exactly one of compact or clearOldData"),
    ({}, "each operation sets exactly one of compact or clearOldData"),
])
def test_unsafe_or_invalid_operations_are_rejected_at_admission(installed: Cluster, namespace: str,
                                                                step: dict[str, Any], phrase: str) -> None:
    assert phrase in _rejected(installed, namespace, maintenance("m", "db", [step]))


def test_spec_is_immutable_except_suspend(installed: Cluster, namespace: str) -> None:
    create(installed, namespace, MAINTENANCES, maintenance("m", "db", [CLEAR], schedule="0 3 * * *"))
    for change in ({"operations": [{"compact": {"full": True}}]}, {"schedule": "0 4 * * *"},
                   {"databaseServerRef": {"name": "other"}}, {"timeZone": "Europe/Paris"}):
        with pytest.raises(ApiException) as err:
            patch(installed, namespace, MAINTENANCES, "m", {"spec": change})
        assert err.value.status == 422
        assert ("spec is immutable after creation, except suspend and dryRun: create a new DatabaseMaintenance "
                "instead" in json.loads(err.value.body)["message"]), change
    assert patch(installed, namespace, MAINTENANCES, "m", {"spec": {"suspend": True}})["spec"]["suspend"] is True


def test_invalid_database_servers_are_rejected(installed: Cluster, namespace: str) -> None:
    def rejected(spec: dict[str, Any]) -> str:
        body = {"apiVersion": "rolecall.dev/v1alpha1", "kind": "DatabaseServer", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}, **spec}}
        with pytest.raises(ApiException) as err:
            create(installed, namespace, SERVERS, body)
        return str(json.loads(err.value.body)["message"])

    assert "engine sqlite needs spec.path" in rejected({"engine": "sqlite"})
    assert 'spec.path: Invalid value: "data/app.db": must be an absolute path' in rejected(
        {"engine": "sqlite", "path": "data/app.db"})
    assert "must not contain .." in rejected({"engine": "sqlite", "path": "/data/../etc/passwd"})
    assert "may hold only letters, digits" in rejected({"engine": "sqlite", "path": "/data/a b;rm -rf"})
    assert "spec.path is for SQLite" in rejected({"engine": "postgresql", "path": "/x.db"})
    assert 'Unsupported value: "mysql"' in rejected({"engine": "mysql"})


def test_runs_missed_while_the_operator_was_down_run_once(local_bed: Cluster, namespace: str,
                                                          operator: Operator) -> None:
    path = sqlite_app(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    create(local_bed, namespace, MAINTENANCES, maintenance("m", "db", [{"compact": {}}], schedule="* * * * * */2"))
    wait_for(lambda: status_of(local_bed, namespace, MAINTENANCES, "m").get("history"), "a first run", 30)
    operator.kill()
    last_before = dt.datetime.fromisoformat(status_of(local_bed, namespace, MAINTENANCES, "m")["history"][0]
                                            ["scheduledAt"])
    time.sleep(9)  # the scenario: the operator is down across four 2-second periods
    restarted = dt.datetime.now(dt.UTC)
    operator.start()

    def two_runs_since_restart() -> list[dict[str, Any]] | None:
        history = status_of(local_bed, namespace, MAINTENANCES, "m").get("history") or []
        after = restarted - dt.timedelta(seconds=1)
        since = [r for r in history if dt.datetime.fromisoformat(r["acceptedAt"]) >= after]
        return since if len(since) >= 2 else None

    newest_first = wait_for(two_runs_since_restart, "two runs after the restart", 40)
    first = newest_first[-1]  # the first run after the restart: the latest missed slot (the shared policy)
    slot = dt.datetime.fromisoformat(first["scheduledAt"])
    # The four or more slots that passed while the operator was down ran once, as this one run, not each.
    assert (slot - last_before).total_seconds() >= 8, (last_before, newest_first)
    # No earlier missed slot ran (a slot passing while that run was being accepted is the next one, not a
    # missed one: it runs right after it).
    earlier = [r for r in newest_first if last_before < dt.datetime.fromisoformat(r["scheduledAt"]) < slot]
    assert earlier == [], f"the missed times must collapse into one run: {newest_first}"


CRON = "must be a cron schedule of 5 fields (minute 0-59, hour 0-23, day of month 1-31"
ZONE = "must be an IANA time zone name, e.g. UTC, Europe/Berlin or America/New_York"


@pytest.mark.parametrize(("extra", "phrase"), [
    ({"schedule": "61 * * * *"}, f'spec.schedule: Invalid value: "61 * * * *": {CRON}'),
    ({"schedule": "0 3 * * 9"}, f'spec.schedule: Invalid value: "0 3 * * 9": {CRON}'),
    ({"schedule": "*/0 * * * *"}, f'spec.schedule: Invalid value: "*/0 * * * *": {CRON}'),
    ({"schedule": "0 3 * * *", "timeZone": "Mars/Base"}, f'spec.timeZone: Invalid value: "Mars/Base": {ZONE}'),
    ({"databaseServerRef": {"name": "DB_1"}}, 'spec.databaseServerRef.name: Invalid value: "DB_1": must be an '
                                              "object name"),
])
def test_schedules_zones_and_names_the_operator_could_not_use_are_rejected(
        installed: Cluster, namespace: str, extra: dict[str, Any], phrase: str) -> None:
    body = maintenance("m", "db", [{"compact": {}}])
    body["spec"].update(extra)
    assert phrase in _rejected(installed, namespace, body)
