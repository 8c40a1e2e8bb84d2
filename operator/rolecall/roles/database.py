"""DatabaseServer reconcile: stop/start, compaction on request, size and connection figures.

Observes: the DatabaseServer (spec, the compact annotation, our own status), its pods and workload.
Triggers: SQL on the one primary (PostgreSQL) or sqlite3 through pod exec (SQLite), scale-subresource
patches, status writes and Events.

Idempotency is the cache clear's: a compaction runs when the annotation holds a value not yet echoed in
status.lastHandledCompactRequest, or when spec.compactedAfter is later than status.lastCompactedAt. The
request is written to status.run before the database is touched.

`open_database` is shared with DatabaseMaintenance: it finds the one pod to act on (the single
PostgreSQL primary, or the single SQLite pod) and opens a session on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rolecall import kube, metrics
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.common import RunLedger
from rolecall.api.v1alpha1.database import (
    COMPACT_ANNOTATION,
    DatabaseServerSpec,
    DatabaseServerStatus,
    OperationResult,
    TableFigures,
)
from rolecall.engines import EngineError
from rolecall.engines import postgres as pg
from rolecall.engines.database import DatabaseSession
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles.common import RoleReconcile, read_credentials, stop_start, writer_for
from rolecall.runs.status import now
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable

PLURAL = "databaseservers"
RETRY_AFTER = (10.0, 300.0)  # first and longest wait before a failed compaction is tried again


class NoTarget(Exception):
    """No single pod to act on (no primary, several primaries, several SQLite pods): the message says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    session: DatabaseSession
    pod: str


@asynccontextmanager
async def open_database(namespace: str, spec: DatabaseServerSpec) -> AsyncIterator[Opened]:
    """A session on the one database `spec` names: PostgreSQL's single primary, or the single SQLite pod.

    Every target pod is re-read by UID just before it is contacted (pods.address). PostgreSQL standbys
    are found with pg_is_in_recovery() and never written to; none or several primaries is refused.
    """
    targets = await pods.resolve(namespace, spec.selector.to_label_selector(), spec.node_selector)
    if not targets:
        raise NoTarget("NoTargetPods", "no running pod matches spec.selector")
    timeout = float(spec.timeout_seconds)
    if spec.engine == "sqlite":
        if len(targets) > 1:
            raise NoTarget("SeveralPods", f"{len(targets)} pods match ({', '.join(t.name for t in targets[:5])}); "
                                          "a SQLite DatabaseServer acts on the file in exactly one pod")
        t = targets[0]
        await pods.address(namespace, t)  # re-read by UID: still this pod, running, not host-networked
        run = functools.partial(_exec, namespace, t.name, spec.container, timeout)
        yield Opened(SqliteSession(run, spec.path or ""), t.name)
        return
    creds = await read_credentials(namespace, spec.credentials_secret_ref)
    port, database = spec.port or pg.DEFAULT_PORT, spec.database or "postgres"
    async with AsyncExitStack() as stack:
        primaries: list[tuple[str, pg.PostgresSession]] = []
        errors: list[str] = []
        for t in targets:
            try:
                ip = await pods.address(namespace, t)
                s = await stack.enter_async_context(pg.session(ip, port, database, creds, timeout))
                if not await s.in_recovery():
                    primaries.append((t.name, s))
            except (EngineError, NotActionable) as e:
                errors.append(f"{t.name}: {e}")
        if len(primaries) != 1:
            names = ", ".join(n for n, _ in primaries)
            unread = f"; unreadable: {'; '.join(errors[:3])}" if errors else ""
            if not primaries:
                raise NoTarget("NoPrimary", f"none of {len(targets)} pods is a PostgreSQL primary{unread}")
            raise NoTarget("SeveralPrimaries", f"{len(primaries)} pods are primaries ({names}); rolecall acts on "
                                               "exactly one and will not guess")
        name, session = primaries[0]
        yield Opened(session, name)


async def _exec(namespace: str, pod: str, container: str | None, timeout: float,
                argv: list[str]) -> tuple[int, str, str]:
    metrics.api("create", "pods/exec")
    return await asyncio.to_thread(kube.exec_argv, namespace, pod, container, argv, timeout)


# --- DatabaseServer -----------------------------------------------------------------------------------

@dataclass
class Reconcile(RoleReconcile[DatabaseServerSpec, DatabaseServerStatus]):
    pass


async def reconcile(body: dict[str, Any], memo: dict[str, Any]) -> float | None:
    out = writer_for(PLURAL, body, memo, DatabaseServerStatus)
    spec = DatabaseServerSpec.model_validate(body["spec"])
    r = Reconcile("DatabaseServer", body, spec, out)
    metrics.RECONCILES.labels("DatabaseServer").inc()
    try:
        await stop_start(r)
        if not spec.stopped:
            await _compact(r)
            await _figures(r)
    finally:
        busy = "Compacting" if r.status.run is not None and not r.memo.get("retry_at") else None
        delay = await r.finish(busy, "database role")
    return delay


def _wanted(r: Reconcile) -> tuple[str | None, str | None]:
    token = (r.obj["metadata"].get("annotations") or {}).get(COMPACT_ANNOTATION)
    new_token = token if token is not None and token != r.status.last_handled_compact_request else None
    due = None
    if r.spec.compacted_after:
        t, last = parse_time(r.spec.compacted_after), r.status.last_compacted_at
        if last is None or parse_time(last) < t:
            wait = (t - dt.datetime.now(dt.UTC)).total_seconds()
            if wait <= 0:
                due = r.spec.compacted_after
            else:
                r.delays.append(wait)  # an in-process timer, rebuilt from spec on restart
    return new_token, due


async def _compact(r: Reconcile) -> None:
    s = r.status
    token, after = _wanted(r)
    if s.run is None and not (token or after):
        return
    if s.run is not None and time.monotonic() < r.memo.get("retry_at", 0.0):
        r.delays.append(r.memo["retry_at"] - time.monotonic())
        return
    rights = ("compact", "credentials") if r.spec.credentials_secret_ref else ("compact",)
    if await r.refused("Compacted", *rights):
        return
    if s.run is None:
        s.run = RunLedger(action="compact", token=token, cleared_after=after, accepted_at=now(), targets=1)
        request = f"request {token!r}" if token else f"compactedAfter {after}"
        r.condition("Compacted", False, "CompactionRequested", f"Compacting for {request}.")
        await r.out.flush()  # the ledger first: a crash from here on resumes this request
        r.memo.pop("retry_at", None)
        r.memo["retries"] = 0
    run = s.run
    request = f"request {run.token!r}" if run.token else f"compactedAfter {run.cleared_after}"
    result = OperationResult(type="compact", phase="Running", started_at=now())
    started = time.monotonic()
    try:
        async with open_database(r.ns, r.spec) as db:
            s.primary = db.pod
            result.bytes_before = await db.session.size(None)
            await db.session.compact(False, None)
            result.bytes_after = await db.session.size(None)
        result.phase = "Succeeded"
    except (EngineError, NoTarget, NotActionable, kube.ApiException) as e:
        result.phase, result.error = "Failed", (getattr(e, "reason", None) if isinstance(e, kube.ApiException)
                                                else None) or str(e)
    result.completed_at, result.duration_seconds = now(), round(time.monotonic() - started, 3)
    s.last_compaction = result
    first = not r.memo.get("retries")
    if run.token and first:
        s.last_handled_compact_request = run.token  # handled even if it failed: Degraded says why
    if result.phase == "Failed":
        retries = r.memo.get("retries", 0)
        wait = min(RETRY_AFTER[1], RETRY_AFTER[0] * 2 ** retries)
        r.memo["retries"], r.memo["retry_at"] = retries + 1, time.monotonic() + wait
        r.delays.append(wait)
        r.condition("Compacted", False, "CompactionFailed", f"Compaction for {request} failed: {result.error}; "
                                                            f"retrying in {wait:.0f}s.")
        r.condition("Degraded", True, "CompactionFailed", str(result.error))
        if first:
            r.notify("Warning", "CompactionFailed", f"Compaction for {request} failed: {result.error}")
            metrics.REQUESTS.labels("DatabaseServer", "compact", "failed").inc()
        return
    s.run, s.last_compacted_at = None, run.accepted_at
    r.memo.pop("retry_at", None)
    r.memo["retries"] = 0
    freed = (result.bytes_before or 0) - (result.bytes_after or 0)
    message = f"Compacted {s.primary} for {request}: {result.bytes_before} -> {result.bytes_after} bytes."
    r.condition("Compacted", True, "Compacted", message)
    if r.condition_status("Degraded") == "True":
        r.condition("Degraded", False, "Recovered", "The last action succeeded.")
    r.notify("Normal", "Compacted", message + (f" {freed} bytes reclaimed." if freed > 0 else ""))
    metrics.REQUESTS.labels("DatabaseServer", "compact", "succeeded").inc()
    r.memo["figures_at"] = 0.0  # the size changed: refresh the figures now


async def _figures(r: Reconcile) -> None:
    due = r.memo.get("figures_at", 0.0)
    if time.monotonic() < due:
        r.delays.append(due - time.monotonic())
        return
    interval = float(r.spec.status_interval_seconds)
    r.memo["figures_at"] = time.monotonic() + interval
    r.delays.append(interval)
    s = r.status
    try:
        async with open_database(r.ns, r.spec) as db:
            figures = await db.session.figures()
            pod = db.pod
    except NoTarget as e:
        r.condition("Degraded", True, e.reason, str(e))
        return
    except (EngineError, NotActionable, kube.ApiException) as e:
        r.condition("Degraded", True, "DatabaseUnreachable", str(e))
        return
    tables = [TableFigures(table=t.table, dead_tuples=t.dead_tuples, live_tuples=t.live_tuples)
              for t in figures.largest_tables] or None
    before = (s.primary, s.size_bytes, s.connections, s.largest_tables)
    s.primary, s.size_bytes, s.connections, s.largest_tables = pod, figures.size_bytes, figures.connections, tables
    if before != (s.primary, s.size_bytes, s.connections, s.largest_tables):
        s.refreshed_at = now()
    if r.condition_status("Degraded") == "True" and s.run is None:
        r.condition("Degraded", False, "Recovered", f"{pod} answers.")
    elif r.condition_status("Degraded") is None:
        r.condition("Degraded", False, "DatabaseReachable", f"{pod} answers.")
