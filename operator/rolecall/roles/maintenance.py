"""DatabaseMaintenance reconcile: run the operations once (like a Job) or on a schedule (like a CronJob).

Observes: the DatabaseMaintenance, the DatabaseServer it names (read when a run starts), our own status.
Triggers: VACUUM and batched DELETEs on the server's one primary, status writes on the maintenance (and
the server's lastCompaction/lastClearOldData), Events, and deletion of a finished one-shot after its TTL.

The ledger is status itself: a run's phase, and per clearOldData step its cut-off and the rows that
matched it, are written before the first row is deleted, and each batch's receipt before its COMMIT
(roles/purge.py). A restart finds phase Running and continues each unfinished step with the stored
cut-off: rows newer than it are never touched, and rows deleted is the sum of what committed batches
deleted. One maintenance per database runs at a time in this operator (the one Lease holder);
the others wait in phase Queued. Deleting a running maintenance cancels its task, and the PostgreSQL
session sends a cancel for the running statement (a sqlite3 exec in flight runs to its end).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from typing import Any

from rolecall import kube, metrics
from rolecall.api.kinds import DATABASE_MAINTENANCE
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION
from rolecall.api.v1alpha1.database import (
    MAX_HISTORY,
    DatabaseMaintenanceSpec,
    DatabaseMaintenanceStatus,
    DatabaseServerSpec,
    Operation,
    OperationResult,
    RunRecord,
)
from rolecall.engines import EngineError
from rolecall.engines.database import BatchUnsettled, DatabaseSession
from rolecall.roles import database, purge
from rolecall.roles.common import reconcile_with
from rolecall.runs import authz, calendar, events, request
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.runs.reasons import Stall
from rolecall.runs.status import patch_status
from rolecall.targets.pods import NotActionable

GROUP, VERSION, PLURAL = DATABASE_MAINTENANCE.group, DATABASE_MAINTENANCE.version, DATABASE_MAINTENANCE.plural
PROGRESS_SECONDS = 2.0
QUEUE_CHECK_SECONDS = 2.0  # a queued maintenance looks again this often (in-process, no API calls)
# (namespace, DatabaseServer) -> the maintenance running on it now, in this operator process.
_running: dict[tuple[str, str], str] = {}


class RunFailed(Exception):
    pass


class RunRefused(RunFailed):
    """The requester no longer holds the right (checked again before the run): reason RequesterNotAllowed."""


class RunCancelled(Exception):
    """rolecall.dev/cancel names this run (its status.scheduledAt): no new batch or step starts."""


def _check_cancel(m: Maintenance) -> None:
    value = request.cancel_asked(m)
    if value is not None and value == m.status.scheduled_at:
        raise RunCancelled(f"cancelled ({CANCEL_ANNOTATION}={value})")


Maintenance = Context[DatabaseMaintenanceSpec, DatabaseMaintenanceStatus]


async def _progress(m: Maintenance, force: bool = False) -> None:
    """Writes status, at most every PROGRESS_SECONDS unless forced (a cut-off, a finished step)."""
    if force or m.clock.monotonic() - m.memory.progress_at >= PROGRESS_SECONDS:
        m.memory.progress_at = m.clock.monotonic()
        await m.write()


async def _event(m: Maintenance, type: str, reason: str, message: str) -> None:
    await events.post(m.obj, type, reason, message)


async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
    return await reconcile_with(DATABASE_MAINTENANCE, body, memory, runtime, DatabaseMaintenanceSpec,
                                DatabaseMaintenanceStatus, _work)


async def _work(m: Maintenance) -> None:
    s = m.status
    s.summary = s.summary or _summary(m.spec.operations)
    scheduled_at = await _due(m)
    if scheduled_at is not None:
        await _claim_and_run(m, scheduled_at)
    if s.phase == "Queued":
        m.mark_busy("Queued", "Waiting for another DatabaseMaintenance on the same database to finish.")
    elif s.phase == "Failed" and m.spec.schedule is None:
        # A one-shot run that failed is not tried again (like a Job): a person has to look.
        error = next((r.error for r in s.operations or [] if r.error), None) or "the run failed"
        missing = "not found" in error and error.startswith("DatabaseServer")
        refused = any(c.type == "Failed" and c.reason == "RequesterNotAllowed" for c in s.conditions or [])
        m.mark_stalled("DatabaseServerNotFound" if missing else "RequesterNotAllowed" if refused else "RunFailed",
                       error)


def _summary(operations: list[Operation]) -> str:
    parts = []
    for op in operations:
        if op.clear_old_data is not None:
            parts.append(f"clearOldData({op.clear_old_data.table})")
        elif op.compact is not None:
            parts.append("compact full" if op.compact.full else "compact")
    return " + ".join(parts)[:256]


def _slots(m: Maintenance, now_: dt.datetime) -> calendar.Due:
    """The slot due now (the latest one after the last run, or after creation) and the next one, from
    runs/calendar like every kind's schedule; a valid cron may still name no time that exists (30 February):
    a Stall admission cannot catch."""
    assert m.spec.schedule is not None
    handled = parse_time(m.status.scheduled_at or m.obj["metadata"]["creationTimestamp"])
    found = calendar.due(m.spec.schedule, m.spec.time_zone, handled, now_)
    if found.next is None and found.slot is None:
        raise Stall("ScheduleNeverFires", f"schedule {m.spec.schedule!r} {calendar.NEVER_FIRES}")
    return found


def _utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _due(m: Maintenance) -> str | None:
    """The schedule time of the run to start or continue now, or None (and a wake-up time) if none is due."""
    s, spec = m.status, m.spec
    if s.phase == "Running":
        return s.scheduled_at or s.started_at or m.clock.now()  # an interrupted run: continue it
    if spec.schedule is None:
        if s.phase == "Succeeded" and s.dry_run and not spec.dry_run:
            return m.clock.now()  # previewed, and now asked for real
        if s.phase in ("Succeeded", "Failed", "Cancelled"):
            await _expire(m)
            return None
        return m.clock.now()
    zone = spec.time_zone
    current = m.clock.wall()
    found = _slots(m, current)  # missed slots collapse into one run, of the latest slot (the shared policy)
    due = found.slot or found.next
    s.next_run_at = _utc(due) if due else s.next_run_at
    if spec.suspend:
        m.condition("Suspended", True, "Suspended", "suspend is true: no new runs start.")
        return None  # un-suspending is a spec change, which wakes the reconcile
    if s.conditions and any(c.type == "Suspended" for c in s.conditions):
        m.condition("Suspended", False, "Resumed", "Scheduled runs start again.")
    if found.slot is None:
        assert found.next is not None
        m.delays.append(max(0.05, (found.next - current).total_seconds()))
        s.phase = s.phase or "Pending"
        return None
    opens = calendar.window_opens(spec.window, current.astimezone(zoneinfo.ZoneInfo(zone or "UTC")))
    if opens is not None:
        m.condition("Scheduled", False, "OutsideWindow", f"The run due at {s.next_run_at} waits for the window "
                                                         f"{spec.window} ({zone or 'UTC'}).")
        m.delays.append((opens - current).total_seconds())
        return None
    return _utc(found.slot)


async def _expire(m: Maintenance) -> None:
    ttl, done = m.spec.ttl_seconds_after_finished, m.status.completed_at
    if ttl is None or done is None:
        return
    left = (parse_time(done) + dt.timedelta(seconds=ttl) - m.clock.wall()).total_seconds()
    if left > 0:
        m.delays.append(left)
        return
    metrics.api("delete", PLURAL)
    try:
        await asyncio.to_thread(kube.custom().delete_namespaced_custom_object, GROUP, VERSION, m.ns, PLURAL, m.name)
    except kube.ApiException as e:
        if e.status != 404:
            raise


async def _claim_and_run(m: Maintenance, scheduled_at: str) -> None:
    """One maintenance per database at a time. A run already Running holds the database, also after a restart or
    a takeover (its phase is in status, not in this process): it always goes on, and it is never queued. Another
    one starts only when no maintenance on that database is Running, as listed from the apiserver."""
    key = (m.ns, m.spec.database_server_ref.name)
    holder: str | None = None
    if m.status.phase == "Running":
        _running[key] = m.name  # the run in status holds the database, whoever reconciled first
    elif (holder := _running.get(key)) is None:
        _running[key] = m.name  # taken before the listing below, so no reconcile of this process slips past
        try:
            holder = await _running_elsewhere(m) or (None if _running.get(key) == m.name else _running.get(key))
        except BaseException:
            if _running.get(key) == m.name:
                del _running[key]  # the listing failed: the claim must not outlive this reconcile
            raise
        if holder is not None and _running.get(key) == m.name:
            del _running[key]
    if holder is not None and holder != m.name:
        if m.status.phase != "Queued":
            m.status.phase = "Queued"
            m.condition("Queued", True, "AnotherMaintenanceRunning",
                        f"Waiting for DatabaseMaintenance {holder} on {key[1]} to finish.")
            await _event(m, "Normal", "Queued", f"Waiting for DatabaseMaintenance {holder} on {key[1]} to finish.")
        m.delays.append(QUEUE_CHECK_SECONDS)
        return
    try:
        await _run(m, scheduled_at)
    finally:
        if _running.get(key) == m.name:
            del _running[key]


async def _running_elsewhere(m: Maintenance) -> str | None:
    """Another DatabaseMaintenance of this namespace whose run on the same database is Running (in status)."""
    metrics.api("list", PLURAL)
    listed = await asyncio.to_thread(kube.custom().list_namespaced_custom_object, GROUP, VERSION, m.ns, PLURAL)
    for item in listed.get("items") or []:
        name = item["metadata"]["name"]
        ref = ((item.get("spec") or {}).get("databaseServerRef") or {}).get("name")
        if name != m.name and ref == m.spec.database_server_ref.name and \
                (item.get("status") or {}).get("phase") == "Running":
            return str(name)
    return None


async def _server(m: Maintenance) -> dict[str, Any]:
    ref = m.spec.database_server_ref.name
    metrics.api("get", database.PLURAL)
    try:
        obj = await asyncio.to_thread(kube.custom().get_namespaced_custom_object, GROUP, VERSION, m.ns,
                                      database.PLURAL, ref)
    except kube.ApiException as e:
        if e.status == 404:
            raise RunFailed(f"DatabaseServer {ref} not found in {m.ns}") from e
        raise
    return dict(obj)


async def _refusal(m: Maintenance, server: dict[str, Any]) -> str | None:
    """The requester of this maintenance must still be allowed to run SQL here and to use the server's
    credentials Secret (the part admission cannot follow: maintenance -> server -> Secret)."""
    requester = authz.requester_of(m.obj, PLURAL, "run")
    refused = await authz.refusal(PLURAL, m.obj, requester, "run")
    if refused is None and (server.get("spec") or {}).get("credentialsSecretRef"):
        as_requested = {"metadata": m.obj["metadata"], "spec": server["spec"]}
        refused = await authz.refusal(database.PLURAL, as_requested, requester, "credentials")
    return f"{refused[0]}: {refused[1]}" if refused else None


async def _run(m: Maintenance, scheduled_at: str) -> None:
    s, spec = m.status, m.spec
    if s.phase != "Running":
        s.phase, s.scheduled_at, s.started_at, s.completed_at = "Running", scheduled_at, m.clock.now(), None
        s.rows_deleted = s.bytes_reclaimed = None
        s.dry_run = spec.dry_run or None
        s.operations = [_fresh_result(op) for op in spec.operations]
        m.condition("Queued", False, "Started", "The run started.")
        m.condition("Complete", False, "Running", f"Running {s.summary}.")
        m.mark_busy("Running", f"Running {s.summary}.")
        await _progress(m, force=True)  # the run is on record before the database is touched
        await _event(m, "Normal", "Started", f"Running {s.summary} on {spec.database_server_ref.name}.")
    m.mark_busy("Running", f"Running {s.summary}.")
    deadline = parse_time(s.started_at or m.clock.now()) + dt.timedelta(seconds=spec.timeout_seconds)
    error: str | None = None
    cancelled = timed_out = refused = False
    try:
        server_obj = await _server(m)
        refusal = await _refusal(m, server_obj)
        if refusal:
            raise RunRefused(refusal)
        server = DatabaseServerSpec.model_validate(server_obj["spec"])
        server = server.model_copy(update={"timeout_seconds": spec.timeout_seconds})
        # A database that stops answering (frozen, partitioned) must not hold the run past its timeout:
        # the cancellation also cancels the statement on the server (engines/postgres.py).
        left = (deadline - m.clock.wall()).total_seconds()
        async with asyncio.timeout(max(1.0, left) + 30), database.open_database(m.ns, server, m.identity) as db:
            for op, result in zip(spec.operations, s.operations or [], strict=True):
                if result.phase == "Succeeded":
                    continue
                _check_cancel(m)
                await _operation(m, db.session, op, result, deadline)
    except RunCancelled as e:
        error, cancelled = str(e), True
    except TimeoutError as e:
        error, timed_out = str(e) or f"timeoutSeconds ({spec.timeout_seconds}s) passed", True
    except BatchUnsettled:
        raise  # its receipt is in status: the run is resumed, and the batch settled with the database, later
    except (RunFailed, EngineError, database.NoTarget, NotActionable) as e:
        error, refused = str(e) or type(e).__name__, isinstance(e, RunRefused)
    except kube.ApiException as e:
        if e.status is None or e.status >= 500 or e.status == 429:
            raise  # the apiserver's trouble, not the run's: it is resumed once the apiserver answers
        error = f"Kubernetes API: {e.status} {e.reason}"
    if error is not None:
        # The step that was running failed; a run that failed before any step began (no primary, no
        # DatabaseServer) names its first unfinished step, so the error sits where a person looks.
        unfinished = [r for r in s.operations or [] if r.phase in ("Running", "Pending")]
        running = [r for r in unfinished if r.phase == "Running"] or ([] if cancelled else unfinished[:1])
        for result in running:  # a cancel ends the step that was running; the ones not begun stay Pending
            result.phase, result.error, result.completed_at = ("Cancelled" if cancelled else "Failed"), \
                error[:1024], m.clock.now()
    _finish(m, error, cancelled, timed_out, refused)
    m.busy = None
    # The outcome's Event comes before the status write that records it (a client waiting on Complete
    # then finds the Event).
    if cancelled:
        await _event(m, "Warning", "Cancelled", f"{s.summary} {error}: {s.rows_deleted or 0} rows deleted, "
                                                "no step or batch started after that.")
    elif error is None and s.dry_run:
        await _event(m, "Normal", "DryRun", _plan(s))
    elif error is None:
        await _event(m, "Normal", "Succeeded", f"{s.summary}: {s.rows_deleted or 0} rows deleted, "
                                               f"{s.bytes_reclaimed or 0} bytes reclaimed.")
    else:
        unsettled = [r.pending_batch for r in s.operations or [] if r.pending_batch is not None]
        pending = "".join(f"; a batch of {p.rows} rows from {p.part} ({p.receipt}) is not known to have committed "
                          "and is not counted" for p in unsettled)
        await _event(m, "Warning", "TimedOut" if timed_out else "Failed",
                     f"{s.summary} failed: {error}; {s.rows_deleted or 0} rows deleted before that{pending}.")
    await _progress(m, force=True)
    if not s.dry_run:
        await _report_to_server(m)


def _plan(s: DatabaseMaintenanceStatus) -> str:
    """What a dry run found, for people: per step what a real run would do now."""
    parts = []
    for r in s.operations or []:
        if r.type == "clearOldData":
            parts.append(f"{r.target}: {r.matched_at_start} rows older than {r.cutoff} ({r.bytes_before} bytes)")
        else:
            parts.append(f"compact {r.target or 'the database'}: {r.bytes_before} bytes")
    return f"Dry run of {s.summary}, nothing changed; a real run now: " + "; ".join(parts) + "."


def _fresh_result(op: Operation) -> OperationResult:
    if op.clear_old_data is not None:
        c = op.clear_old_data
        return OperationResult(type="clearOldData", target=f"{c.table}.{c.timestamp_column}")
    tables = (op.compact.tables if op.compact else None) or []
    return OperationResult(type="compact", target=", ".join(tables) or None)


async def _operation(m: Maintenance, db: DatabaseSession, op: Operation, result: OperationResult,
                     deadline: dt.datetime) -> None:
    started = m.clock.monotonic()
    result.phase, result.started_at, result.error = "Running", result.started_at or m.clock.now(), None
    if m.status.dry_run:
        await _plan_operation(db, op, result)
    elif op.compact is not None:
        tables = op.compact.tables
        result.bytes_before = await db.size(tables)
        await _progress(m, force=True)
        await db.compact(op.compact.full, tables)
        result.bytes_after = await db.size(tables)
    elif op.clear_old_data is not None:
        await _clear_old_data(m, db, op, result, deadline)
    result.phase, result.completed_at = "Succeeded", m.clock.now()
    result.duration_seconds = round((result.duration_seconds or 0) + m.clock.monotonic() - started, 3)
    await _progress(m)


async def _plan_operation(db: DatabaseSession, op: Operation, result: OperationResult) -> None:
    """A dry run of one step: the same reads a real run makes first (the table's checks, the cut-off computed by
    the database, the matching rows), plus the size; no DELETE, no VACUUM."""
    if op.compact is not None:
        result.bytes_before = await db.size(op.compact.tables)
        return
    assert op.clear_old_data is not None
    await purge.plan(db, op.clear_old_data, result)


async def _clear_old_data(m: Maintenance, db: DatabaseSession, op: Operation, result: OperationResult,
                          deadline: dt.datetime) -> None:
    assert op.clear_old_data is not None

    def before_batch() -> None:
        if m.clock.wall() >= deadline:
            raise TimeoutError(f"timeoutSeconds ({m.spec.timeout_seconds}s) passed after {result.batches} batches")
        _check_cancel(m)  # between batches: the batch in flight is committed and counted

    await purge.clear(db, op.clear_old_data, result, lambda: _progress(m, force=True), before_batch)


def _finish(m: Maintenance, error: str | None, cancelled: bool = False, timed_out: bool = False,
            refused: bool = False) -> None:
    s = m.status
    s.phase = "Cancelled" if cancelled else "Failed" if error else "Succeeded"
    s.completed_at = m.clock.now()
    s.rows_deleted = sum(r.rows_deleted or 0 for r in s.operations or [] if r.type == "clearOldData")
    s.bytes_reclaimed = sum(max(0, (r.bytes_before or 0) - (r.bytes_after or 0))
                            for r in s.operations or [] if r.type == "compact" and r.bytes_after is not None)
    if cancelled:
        m.condition("Complete", False, "Cancelled", f"{s.summary} {error}: {s.rows_deleted} rows deleted.")
        m.condition("Failed", False, "Cancelled", f"The run was {error}.")
    elif error:
        m.condition("Complete", False, "Failed", f"{s.summary} failed: {error}")
        reason = "TimedOut" if timed_out else "RequesterNotAllowed" if refused else "OperationFailed"
        m.condition("Failed", True, reason, error)
    elif s.dry_run:
        s.rows_deleted = s.bytes_reclaimed = None
        m.condition("Complete", True, "DryRun", _plan(s))
        m.condition("Failed", False, "DryRun", "The last run was a dry run and could make its plan.")
    else:
        m.condition("Complete", True, "Succeeded", f"{s.summary}: {s.rows_deleted} rows deleted, "
                                                    f"{s.bytes_reclaimed} bytes reclaimed.")
        m.condition("Failed", False, "Succeeded", "The last run succeeded.")
    metrics.REQUESTS.labels("DatabaseMaintenance", "run", s.phase.lower()).inc()
    requester = authz.requester_of(m.obj, PLURAL, "run")
    record = RunRecord(scheduled_at=s.scheduled_at, phase=s.phase, started_at=s.started_at,
                       completed_at=s.completed_at, rows_deleted=s.rows_deleted,
                       bytes_reclaimed=s.bytes_reclaimed, error=error[:1024] if error else None,
                       dry_run=s.dry_run, trigger="Schedule" if m.spec.schedule else "Create",
                       requester=requester.user if requester else None)
    s.history = [record, *(s.history or [])][:MAX_HISTORY]
    if m.spec.schedule is not None:
        found = _slots(m, m.clock.wall())  # a slot that passed during this run is due at once
        due = found.slot or found.next
        if due is not None:
            s.next_run_at = _utc(due)
            m.delays.append(max(0.0, (due - m.clock.wall()).total_seconds()))
    elif m.spec.ttl_seconds_after_finished is not None:
        m.delays.append(float(m.spec.ttl_seconds_after_finished))


async def _report_to_server(m: Maintenance) -> None:
    """Copies the run's last compact / clearOldData results to the DatabaseServer's status."""
    patch: dict[str, Any] = {}
    for r in m.status.operations or []:
        key = "lastCompaction" if r.type == "compact" else "lastClearOldData"
        if r.phase in ("Succeeded", "Failed", "Cancelled"):
            patch[key] = r.dump()
    if not patch:
        return
    try:
        await patch_status(GROUP, VERSION, database.PLURAL, m.ns, m.spec.database_server_ref.name, patch)
    except kube.ApiException as e:
        if e.status != 404:
            raise
