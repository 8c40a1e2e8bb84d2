"""A DatabaseMaintenance status written by the build before the request core is read by this one: its history
entries become history entries, a run it left Running gets a ledger (cancel by its scheduledAt still names it)
and resumes, one that ended is not run again; and the Job-like view follows how the last run ended."""

from __future__ import annotations

from typing import Any

from test_request_core_with_a_fake_clock import FakeClock

from rolecall.api.kinds import DATABASE_MAINTENANCE
from rolecall.api.v1alpha1.common import LastRequest
from rolecall.api.v1alpha1.database import DatabaseMaintenanceSpec, DatabaseMaintenanceStatus
from rolecall.roles import maintenance
from rolecall.runs.context import Context, Memory
from rolecall.runs.outcome import run_keys
from rolecall.runs.status import StatusWriter

STARTED = "2026-12-07T10:00:00.123456Z"
OLD_HISTORY = [{"scheduledAt": "2026-12-06T03:00:00Z", "phase": "Succeeded", "startedAt": "2026-12-06T03:00:01Z",
                "completedAt": "2026-12-06T03:01:00Z", "rowsDeleted": 12, "trigger": "Schedule",
                "requester": "alice"},
               {"phase": "Succeeded", "dryRun": True, "startedAt": "2026-12-05T03:00:01Z", "trigger": "Create"},
               {"phase": "Failed", "error": "relation does not exist", "startedAt": "2026-12-04T03:00:01Z"}]


def _maintenance(status: dict[str, Any], **spec: Any) -> Context[DatabaseMaintenanceSpec, DatabaseMaintenanceStatus]:
    body = {"metadata": {"namespace": "ns", "name": "m", "uid": "u", "generation": 1,
                         "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"databaseServerRef": {"name": "db"}, "operations": [{"compact": {}}, {"compact": {}}], **spec}}
    st = DatabaseMaintenanceStatus.model_validate(status)
    out = StatusWriter("rolecall.dev", "v1alpha1", "databasemaintenances", "ns", "m", st, st.dump(), "1")
    return Context(DATABASE_MAINTENANCE, body, DatabaseMaintenanceSpec.model_validate(body["spec"]), out, Memory(),
                   FakeClock(), "me")


def test_history_of_the_previous_build_reads_as_history_entries() -> None:
    st = DatabaseMaintenanceStatus.model_validate({"phase": "Succeeded", "history": OLD_HISTORY})
    got = [(h.action, h.trigger, h.outcome, h.dry_run, h.rows_deleted, h.accepted_at) for h in st.history or []]
    assert got == [("run", "Schedule", "Succeeded", False, 12, "2026-12-06T03:00:01Z"),
                   ("run", "Create", "DryRun", True, None, "2026-12-05T03:00:01Z"),
                   ("run", "Create", "Failed", False, None, "2026-12-04T03:00:01Z")]


def test_a_run_left_running_gets_a_ledger_and_one_that_ended_is_not_run_again() -> None:
    left = _maintenance({"phase": "Running", "scheduledAt": STARTED, "startedAt": "2026-12-07T10:00:00.123999Z",
                         "history": OLD_HISTORY,
                         "operations": [{"type": "compact", "phase": "Succeeded"}, {"type": "compact",
                                                                                    "phase": "Running"}]})
    maintenance._adopt_previous_build(left)
    run = left.status.run
    assert run is not None and run.pending == ["1"] and run.targets == 2 and run.token == "run"
    assert STARTED in run_keys(run)  # rolecall.dev/cancel=<status.scheduledAt> still names it
    assert run.deadline is not None and run.holder is None  # resumed with a RunResumed Event, its limit kept

    ended = _maintenance({"phase": "Succeeded", "dryRun": True, "history": OLD_HISTORY})
    maintenance._adopt_previous_build(ended)
    assert ended.status.run is None and ended.status.last_handled_run == "dryRun"
    assert maintenance._one_shot(ended) == "run"  # previewed: turning dryRun off still runs it for real
    real = _maintenance({"phase": "Succeeded", "history": OLD_HISTORY})
    maintenance._adopt_previous_build(real)
    assert maintenance._one_shot(real) is None  # a real run is never repeated

    scheduled = _maintenance({"phase": "Succeeded", "scheduledAt": "2026-12-06T03:00:00Z"}, schedule="0 3 * * *")
    maintenance._adopt_previous_build(scheduled)
    (entry,) = scheduled.status.schedules or []
    assert entry.since.startswith("2026-12-06T03:00:00")  # slots missed since its last run are still due


def test_a_run_refused_before_it_was_accepted_shows_failed_without_the_last_runs_figures() -> None:
    m = _maintenance({"phase": "Succeeded", "startedAt": "2026-12-06T03:00:01Z", "completedAt": "2026-12-06T03:01:00Z",
                      "rowsDeleted": 12, "operations": [{"type": "compact", "phase": "Succeeded"}]},
                     schedule="0 3 * * *")
    m.status.last_request = LastRequest(action="run", scheduled_at="2026-12-07T03:00:00Z", outcome="Refused",
                                        reason="RequesterNotAllowed", message="alice may not",
                                        finished_at="2026-12-07T03:00:01Z")
    maintenance._show(m)
    s = m.status
    assert (s.phase, s.rows_deleted, s.operations, s.started_at) == ("Failed", None, None, None)
    assert (s.scheduled_at, s.completed_at) == ("2026-12-07T03:00:00Z", "2026-12-07T03:00:01Z")
    failed = next(c for c in s.conditions or [] if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "RequesterNotAllowed")


def test_a_queued_maintenance_no_longer_held_leaves_queued() -> None:
    m = _maintenance({"phase": "Queued"}, schedule="0 3 * * *", suspend=True)
    m.condition("Queued", True, "AnotherMaintenanceRunning", "Waiting for DatabaseMaintenance x on db to finish.")
    maintenance._unqueue(m)  # before the core: suspended, so its hold is not asked again
    maintenance._show(m)
    queued = next(c for c in m.status.conditions or [] if c.type == "Queued")
    assert (m.status.phase, queued.status) == ("Pending", "False")
