"""DatabaseMaintenance: its operations run once (like a Job) or on a schedule (like a CronJob), as one action
(`run`) on the request core with the Steps executor (runs/step_executor.py).

Observes: the DatabaseMaintenance, the DatabaseServer it names (read when a run starts or resumes), the other
maintenances of its namespace (one runs per database), our own status.
Triggers: VACUUM and batched DELETEs on the server's one primary, status writes on the maintenance (and the
server's lastCompaction/lastClearOldData), Events, and deletion of a finished one-shot after its TTL.

The core's: the trigger (a one-shot's creation, dryRun turned false, each schedule slot), requester and rights
check, ledger (`status.run`), leader fence, cancel and `timeoutSeconds` (the deadline), acknowledgement
(`status.lastRequest`), history and clock. This module's: the steps, their checkpoints in `status.operations`
(roles/purge.py), the queue per database (a hold, checked only before a run is accepted) and the Job-like
view (`phase`, Failed, totals, TTL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from rolecall import kube, metrics
from rolecall.api.kinds import DATABASE_MAINTENANCE
from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import RunLedger, ScheduleSpec, ScheduleStatus
from rolecall.api.v1alpha1.database import (
    DatabaseMaintenanceSpec,
    DatabaseMaintenanceStatus,
    DatabaseServerSpec,
    MaintenancePhase,
    Operation,
    OperationResult,
)
from rolecall.engines import EngineError
from rolecall.engines.database import BatchUnsettled, DatabaseSession
from rolecall.roles import database, purge
from rolecall.roles import maintenance_queue as queue
from rolecall.roles.common import reconcile_with
from rolecall.runs import authz, events, request
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.runs.reasons import STALLED
from rolecall.runs.status import patch_status
from rolecall.runs.step_executor import Steps
from rolecall.targets.pods import NotActionable

GROUP, VERSION, PLURAL = DATABASE_MAINTENANCE.group, DATABASE_MAINTENANCE.version, DATABASE_MAINTENANCE.plural
# A run's outcome -> its phase; every other outcome (Failed, TimedOut, Refused, Stalled) is phase Failed.
ENDED: dict[str, MaintenancePhase] = {"Succeeded": "Succeeded", "DryRun": "Succeeded", "Cancelled": "Cancelled"}

Maintenance = Context[DatabaseMaintenanceSpec, DatabaseMaintenanceStatus]


async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
    return await reconcile_with(DATABASE_MAINTENANCE, body, memory, runtime, DatabaseMaintenanceSpec,
                                DatabaseMaintenanceStatus, _work)


async def _work(m: Maintenance) -> None:
    s = m.status
    s.summary = s.summary or _summary(m.spec.operations)
    _adopt_previous_build(m)
    _unqueue(m)
    if s.run is not None:
        queue.claim(m)  # the run in status holds the database, whoever reconciled first
    try:
        await request.step(m, RUN)
    finally:
        queue.release(m)  # a run still in status takes it again first thing in its next reconcile
    _show(m)
    if s.phase in ("Succeeded", "Failed", "Cancelled"):
        await _expire(m)


def _summary(operations: list[Operation]) -> str:
    parts = []
    for op in operations:
        if op.clear_old_data is not None:
            parts.append(f"clearOldData({op.clear_old_data.table})")
        elif op.compact is not None:
            parts.append("compact full" if op.compact.full else "compact")
    return " + ".join(parts)[:256]


# --- triggers and the queue --------------------------------------------------------------------------------

def _one_shot(m: Maintenance) -> str | None:
    """A one-shot's token: `run` once (its creation), or `dryRun` first and `run` when dryRun turns false. A
    real run is never repeated, and turning dryRun back on afterwards previews nothing."""
    if m.spec.schedule is not None:
        return None
    handled = m.status.last_handled_run
    wanted = "dryRun" if m.spec.dry_run else "run"
    return None if handled in ("run", wanted) else wanted


def _schedule(m: Maintenance) -> ScheduleSpec | None:
    spec = m.spec
    return None if spec.schedule is None else ScheduleSpec.model_construct(
        cron=spec.schedule, time_zone=spec.time_zone, suspend=spec.suspend, start_window=spec.window,
        starting_deadline_seconds=None, dry_run=False)


async def _prepare(m: Maintenance) -> DatabaseServerSpec:
    """The DatabaseServer, read again for every run and resumption, and the right the core's check cannot see:
    the requester must also be allowed to use the server's credentials Secret (maintenance -> server -> Secret)."""
    ref = m.spec.database_server_ref.name
    obj = await queue.server_of(m)
    if obj is None:
        raise request.RequestFailed("DatabaseServerNotFound", f"DatabaseServer {ref} not found in {m.ns}")
    if (obj.get("spec") or {}).get("credentialsSecretRef"):
        run = m.status.run
        requester = (authz.Requester(run.requester, tuple(run.requester_groups or ()))
                     if run is not None and run.requester else authz.requester_of(m.obj, PLURAL, "run"))
        as_requested = {"metadata": m.obj["metadata"], "spec": obj["spec"]}
        refused = await authz.refusal(database.PLURAL, as_requested, requester, "credentials")
        if refused:
            raise request.Refused(*refused)
    server = DatabaseServerSpec.model_validate(obj["spec"])
    return server.model_copy(update={"timeout_seconds": m.spec.timeout_seconds})  # each statement's limit too


# --- the steps ----------------------------------------------------------------------------------------------

class _Operations:
    """spec.operations as Steps: run in order on the server's one primary, each result in status.operations."""

    def summary(self, m: Maintenance) -> str:
        return m.status.summary or _summary(m.spec.operations)

    def count(self, m: Maintenance) -> int:
        return len(m.spec.operations)

    def dry_run(self, m: Maintenance) -> bool:
        return m.spec.dry_run

    def begin(self, m: Maintenance, run: RunLedger) -> None:
        s = m.status
        s.phase, s.scheduled_at, s.started_at, s.completed_at = "Running", run.scheduled_at or run.accepted_at, \
            run.accepted_at, None
        s.rows_deleted = s.bytes_reclaimed = None
        s.dry_run = run.dry_run
        s.operations = [_fresh_result(op) for op in m.spec.operations]
        m.condition("Queued", False, "Started", "The run started.")

    @asynccontextmanager
    async def open(self, m: Maintenance, server: DatabaseServerSpec) -> AsyncIterator[DatabaseSession]:
        async with database.open_database(m.ns, server, m.identity) as db:
            yield db.session

    async def act(self, m: Maintenance, db: DatabaseSession, index: int, dry_run: bool,
                  checkpoint: Callable[[], Awaitable[object]], between_units: Callable[[], None]) -> None:
        op, result = m.spec.operations[index], (m.status.operations or [])[index]
        started = m.clock.monotonic()
        result.phase, result.started_at, result.error = "Running", result.started_at or m.clock.now(), None
        if dry_run and op.compact is not None:
            result.bytes_before = await db.size(op.compact.tables)
        elif dry_run and op.clear_old_data is not None:
            await purge.plan(db, op.clear_old_data, result)
        elif op.compact is not None:
            result.bytes_before = await db.size(op.compact.tables)
            await checkpoint()
            await db.compact(op.compact.full, op.compact.tables)
            result.bytes_after = await db.size(op.compact.tables)
        elif op.clear_old_data is not None:
            # between batches: the batch in flight is committed and counted
            await purge.clear(db, op.clear_old_data, result, checkpoint, between_units)
        result.phase, result.completed_at = "Succeeded", m.clock.now()
        result.duration_seconds = round((result.duration_seconds or 0) + m.clock.monotonic() - started, 3)

    def failure(self, e: Exception) -> str | None:
        if isinstance(e, BatchUnsettled):
            return None  # its receipt is in status: the run is resumed, and the batch settled with the database
        if isinstance(e, EngineError | database.NoTarget | NotActionable | request.RequestFailed):
            return str(e) or type(e).__name__
        if isinstance(e, kube.ApiException) and e.status is not None and e.status < 500 and e.status != 429:
            return f"Kubernetes API: {e.status} {e.reason}"
        return None  # the apiserver's trouble, not the run's: it is resumed once the apiserver answers

    def stop_step(self, m: Maintenance, index: int, outcome: str, message: str) -> None:
        result = (m.status.operations or [])[index]
        if outcome == "Cancelled" and result.phase != "Running":
            return  # a cancel ends the step that was running; the ones not begun stay Pending
        result.phase = "Cancelled" if outcome == "Cancelled" else "Failed"
        result.error, result.completed_at = message[:1024], m.clock.now()

    async def reported(self, m: Maintenance, run: RunLedger, outcome: str) -> None:
        if not m.status.dry_run:
            await _report_to_server(m)

    def settle(self, m: Maintenance, run: RunLedger, outcome: str) -> str:
        s = m.status
        _totals(m, outcome)
        rows = s.rows_deleted or 0
        if outcome == "DryRun":
            return _plan(s)
        if outcome == "Succeeded":
            return f"{s.summary}: {rows} rows deleted, {s.bytes_reclaimed or 0} bytes reclaimed."
        if outcome == "Cancelled":
            return f"{s.summary} cancelled: {rows} rows deleted, no step or batch started after that."
        unsettled = [r.pending_batch for r in s.operations or [] if r.pending_batch is not None]
        pending = "".join(f"; a batch of {p.rows} rows from {p.part} ({p.receipt}) is not known to have committed "
                          "and is not counted" for p in unsettled)
        return f"{s.summary} failed: {rows} rows deleted before that{pending}"

    def figures(self, m: Maintenance) -> dict[str, int | None]:
        return {"rows_deleted": m.status.rows_deleted, "bytes_reclaimed": m.status.bytes_reclaimed}


RUN: request.Action[DatabaseServerSpec] = request.Action(
    name="run", condition="Complete", busy="Running", done="Succeeded", noun="maintenance run",
    token_annotation=None, handled_field="last_handled_run", after_field=None, completed_field=None,
    token_source=_one_shot, token_trigger="Create",  # noqa: S106
    schedule_of=_schedule, timeout_field="timeout_seconds",
    rights=lambda m: ("run",), prepare=_prepare, hold=queue.hold,
    executor=Steps(_Operations()))


def _fresh_result(op: Operation) -> OperationResult:
    if (c := op.clear_old_data) is not None:
        return OperationResult(type="clearOldData", target=f"{c.table}.{c.timestamp_column}")
    return OperationResult(type="compact", target=", ".join((op.compact.tables if op.compact else None) or []) or None)


def _plan(s: DatabaseMaintenanceStatus) -> str:
    """What a dry run found, for people: per step what a real run would do now."""
    parts = []
    for r in s.operations or []:
        if r.type == "clearOldData":
            parts.append(f"{r.target}: {r.matched_at_start} rows older than {r.cutoff} ({r.bytes_before} bytes)")
        else:
            parts.append(f"compact {r.target or 'the database'}: {r.bytes_before} bytes")
    return f"Dry run of {s.summary}, nothing changed; a real run now: " + "; ".join(parts) + "."


def _totals(m: Maintenance, outcome: str) -> None:
    """The Job-like view of a run that ended: its phase, when, and what its steps did."""
    s = m.status
    s.phase, s.completed_at = ENDED.get(outcome, "Failed"), m.clock.now()
    s.rows_deleted = sum(r.rows_deleted or 0 for r in s.operations or [] if r.type == "clearOldData")
    s.bytes_reclaimed = sum(max(0, (r.bytes_before or 0) - (r.bytes_after or 0))
                            for r in s.operations or [] if r.type == "compact" and r.bytes_after is not None)
    if s.dry_run:
        s.rows_deleted = s.bytes_reclaimed = None


# --- the Job-like view --------------------------------------------------------------------------------------

def _adopt_previous_build(m: Maintenance) -> None:
    """A maintenance the build before the request core left behind: one that ended is not run again, and one
    left Running gets a ledger from its phase and steps, so it resumes from its checkpoints."""
    s = m.status
    if s.last_request is not None or s.run is not None:
        return
    if s.phase in ("Succeeded", "Failed", "Cancelled") and m.spec.schedule is None and s.last_handled_run is None:
        s.last_handled_run = "dryRun" if s.dry_run else "run"
    if m.spec.schedule is not None and s.schedules is None:  # slots since its last run are due, as before
        since = s.scheduled_at or m.obj["metadata"]["creationTimestamp"]
        s.schedules = [ScheduleStatus(action=RUN.name, cron=m.spec.schedule, time_zone=m.spec.time_zone,
                                      since=format_time(parse_time(since)))]
    if s.phase == "Running" and s.started_at:
        requester = authz.requester_of(m.obj, PLURAL, "run")
        s.run = RunLedger(  # accepted when it was scheduled: cancel=<status.scheduledAt> names it, as before
            action=RUN.name, token=None if m.spec.schedule else ("dryRun" if s.dry_run else "run"),
            scheduled_at=s.scheduled_at if m.spec.schedule else None,
            accepted_at=s.scheduled_at or s.started_at,
            requester=requester.user if requester else None,
            requester_groups=list(requester.groups) if requester and requester.groups else None,
            targets=len(s.operations or []), dry_run=s.dry_run,
            pending=[str(i) for i, r in enumerate(s.operations or []) if r.phase != "Succeeded"],
            deadline=format_time(parse_time(s.started_at) + dt.timedelta(seconds=m.spec.timeout_seconds)))


def _unqueue(m: Maintenance) -> None:
    """Queued is what the hold says now: the core asks it again (it may not: suspended, slot too late)."""
    s = m.status
    if s.phase == "Queued" and s.run is None:
        s.phase = ENDED.get(s.last_request.outcome, "Failed") if s.last_request is not None else "Pending"


def _show(m: Maintenance) -> None:
    """phase, Failed, Suspended, nextRunAt and a Stalled one-shot, from the run in status and how the last ended."""
    s, last = m.status, m.status.last_request
    if s.run is not None:
        s.phase = "Running"
    elif last is not None and last.accepted_at is None and (s.completed_at or "") < (last.finished_at or ""):
        # Ended before it was accepted (refused, stalled): nothing of it ran, and the last run's figures go.
        s.phase, s.completed_at, s.scheduled_at = ENDED.get(last.outcome, "Failed"), last.finished_at, \
            last.scheduled_at
        s.started_at = s.operations = s.rows_deleted = s.bytes_reclaimed = s.dry_run = None
    elif last is not None and s.phase == "Running":
        # Ended by the core before a step could end it (refused at resume, no DatabaseServer): the error sits
        # on the step that was running, or on the first not begun.
        unfinished = [r for r in s.operations or [] if r.phase in ("Running", "Pending")]
        if unfinished:
            step = ([r for r in unfinished if r.phase == "Running"] or unfinished)[0]
            step.phase, step.error, step.completed_at = "Failed", last.message[:1024], last.finished_at
        _totals(m, last.outcome)
    s.phase = s.phase or "Pending"
    if s.phase != "Queued" and m.condition_status("Queued") == "True":
        m.condition("Queued", False, "NotWaiting", "Not waiting for another DatabaseMaintenance now.")
    if s.run is None and last is not None and s.phase != "Queued":
        failed = last.outcome not in ("Succeeded", "DryRun", "Cancelled")
        m.condition("Failed", failed, last.reason if failed else last.outcome,
                    last.message if failed else f"The last run ended {last.outcome}.")
        if failed and m.spec.schedule is None:
            # A one-shot run is not tried again (like a Job): a person has to look.
            m.mark_stalled(last.reason if last.reason in STALLED else "RunFailed", last.message)
    entry = next((e for e in s.schedules or [] if e.action == RUN.name), None)
    s.next_run_at = entry.next_schedule_time if entry is not None else None
    if m.spec.schedule is not None and m.spec.suspend:
        m.condition("Suspended", True, "Suspended", "suspend is true: no new runs start.")
    elif any(c.type == "Suspended" and c.status == "True" for c in s.conditions or []):
        m.condition("Suspended", False, "Resumed", "Scheduled runs start again.")


async def _expire(m: Maintenance) -> None:
    """A finished one-shot is deleted ttlSecondsAfterFinished after it ended."""
    ttl, done = m.spec.ttl_seconds_after_finished, m.status.completed_at
    if ttl is None or done is None or m.spec.schedule is not None or m.status.run is not None:
        return
    left = (parse_time(done) + dt.timedelta(seconds=ttl) - m.clock.wall()).total_seconds()
    if left > 0:
        m.wake_in(left)
        return
    metrics.api("delete", PLURAL)
    try:
        await asyncio.to_thread(kube.custom().delete_namespaced_custom_object, GROUP, VERSION, m.ns, PLURAL, m.name)
    except kube.ApiException as e:
        if e.status != 404:
            raise


async def _report_to_server(m: Maintenance) -> None:
    """Copies the run's last compact / clearOldData results to the DatabaseServer's status: a copy for people,
    after the run is acknowledged, so a failure here is a Warning and never undoes or repeats the run."""
    patch: dict[str, Any] = {}
    for r in m.status.operations or []:
        key = "lastCompaction" if r.type == "compact" else "lastClearOldData"
        if r.phase in ("Succeeded", "Failed", "Cancelled"):
            patch[key] = r.dump()
    if not patch:
        return
    try:
        await patch_status(GROUP, VERSION, database.PLURAL, m.ns, m.spec.database_server_ref.name, patch)
    except (kube.ApiException, kube.Unavailable) as e:
        if not isinstance(e, kube.ApiException) or e.status != 404:
            await events.post(m.obj, "Warning", "ServerStatusNotUpdated",
                              f"The run's results could not be copied to DatabaseServer "
                              f"{m.spec.database_server_ref.name}'s status: {e}")
