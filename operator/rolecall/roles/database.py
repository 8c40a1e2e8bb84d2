"""DatabaseServer reconcile: stop/start, compaction on request, size and connection figures.

Observes: the DatabaseServer (spec, the compact annotation, our own status), its pods and workload.
Triggers: SQL on the one primary (PostgreSQL) or sqlite3 through pod exec (SQLite), scale-subresource
patches, status writes and Events.

The compaction is a declaration on the request core (runs/request.py) acting on one target: it runs when
the annotation holds a value not yet echoed in status.lastHandledCompactRequest, or when
spec.compactedAfter is later than status.lastCompactedAt.

`open_database` is shared with DatabaseMaintenance: it finds the one pod to act on (the single
PostgreSQL primary, or the single SQLite pod) and opens a session on it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rolecall import kube, metrics
from rolecall.api.kinds import DATABASE_SERVER
from rolecall.api.v1alpha1.database import (
    COMPACT_ANNOTATION,
    DatabaseServerSpec,
    DatabaseServerStatus,
    OperationResult,
    TableFigures,
)
from rolecall.engines import DATABASE_ENGINES, Credentials, EngineError
from rolecall.engines.database import Connection, DatabaseSession, Where
from rolecall.roles.common import (
    desired_stopped,
    figures_due,
    hibernated,
    next_figures_in,
    not_degraded_while_stopped,
    read_credentials,
    reconcile_with,
    stop_start,
)
from rolecall.runs import request
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable, Target

PLURAL = DATABASE_SERVER.plural


class NoTarget(Exception):
    """No single pod to act on (no primary, several primaries, several SQLite pods): the message says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    session: DatabaseSession
    pod: str


def _where(namespace: str, spec: DatabaseServerSpec, target: Target, ip: str) -> Where:
    return Where(target.name, ip, functools.partial(_exec, namespace, target.name, spec.container,
                                                    float(spec.timeout_seconds)))


def _connection(spec: DatabaseServerSpec, creds: Credentials | None, identity: str = "rolecall") -> Connection:
    """Every statement on it passes the write guard first: a process that may no longer lead sends nothing."""
    name = identity if identity.startswith("rolecall") else f"rolecall {identity}"
    return Connection(timeout=float(spec.timeout_seconds), port=spec.port, database=spec.database, path=spec.path,
                      credentials=creds, fence=kube.check_write_guard, application_name=name)


async def find_target(namespace: str, spec: DatabaseServerSpec, creds: Credentials | None) -> Target:
    """The one pod to act on: the single pod of a one-pod engine (SQLite), or the single primary among
    replicas (PostgreSQL: asked on each pod; standbys are never written to; none or several is refused)."""
    engine = DATABASE_ENGINES[spec.engine]
    targets = await pods.resolve(namespace, spec.selector, spec.node_selector)
    if not targets:
        raise NoTarget("NoTargetPods", pods.none_match(spec.selector, spec.node_selector))
    if engine.one_pod:
        if len(targets) > 1:
            raise NoTarget("SeveralPods", f"{len(targets)} pods match ({', '.join(t.name for t in targets[:5])}); "
                                          f"a {spec.engine} DatabaseServer acts on the file in exactly one pod")
        return targets[0]
    primaries: list[Target] = []
    errors: list[str] = []
    for t in targets:
        try:
            ip = await pods.address(namespace, t)
            async with engine.session(_where(namespace, spec, t, ip), _connection(spec, creds)) as s:
                if await s.is_primary():
                    primaries.append(t)
        except (EngineError, NotActionable) as e:
            errors.append(f"{t.name}: {e}")
    if len(primaries) != 1:
        unread = f"; unreadable: {'; '.join(errors[:3])}" if errors else ""
        if not primaries:
            raise NoTarget("NoPrimary", f"none of {len(targets)} pods is a {spec.engine} primary{unread}")
        names = ", ".join(t.name for t in primaries)
        raise NoTarget("SeveralPrimaries", f"{len(primaries)} pods are primaries ({names}); rolecall acts on "
                                           "exactly one and will not guess")
    return primaries[0]


@asynccontextmanager
async def session_on(namespace: str, spec: DatabaseServerSpec, target: Target, ip: str,
                     creds: Credentials | None, identity: str = "rolecall") -> AsyncIterator[DatabaseSession]:
    """A session on `target` (whose IP was just re-read by UID), which must still be the primary."""
    engine = DATABASE_ENGINES[spec.engine]
    async with engine.session(_where(namespace, spec, target, ip), _connection(spec, creds, identity)) as s:
        if not await s.is_primary():
            raise EngineError(f"{target.name} is no longer the primary (it is in recovery)")
        yield s


@asynccontextmanager
async def open_database(namespace: str, spec: DatabaseServerSpec, identity: str = "rolecall") -> AsyncIterator[Opened]:
    """A session on the one database `spec` names (see find_target), its pod re-read by UID first."""
    creds = await read_credentials(namespace, spec.credentials_secret_ref)
    target = await find_target(namespace, spec, creds)
    ip = await pods.address(namespace, target)
    async with session_on(namespace, spec, target, ip, creds, identity) as session:
        yield Opened(session, target.name)


async def _exec(namespace: str, pod: str, container: str | None, timeout: float,
                argv: list[str]) -> tuple[int, str, str]:
    metrics.api("create", "pods/exec")
    return await asyncio.to_thread(kube.exec_argv, namespace, pod, container, argv, timeout)


# --- DatabaseServer -----------------------------------------------------------------------------------

Ctx = Context[DatabaseServerSpec, DatabaseServerStatus]


async def _credentials(ctx: Ctx) -> Credentials | None:
    return await read_credentials(ctx.ns, ctx.spec.credentials_secret_ref)


async def _the_target(ctx: Ctx) -> list[Target]:
    try:
        return [await find_target(ctx.ns, ctx.spec, await _credentials(ctx))]
    except NoTarget as e:
        raise request.RequestFailed(e.reason, str(e)) from e


async def _compact(ctx: Ctx, creds: Credentials | None, target: Target, ip: str) -> str:
    s = ctx.status
    result = OperationResult(type="compact", phase="Running", started_at=ctx.clock.now())
    started = time.monotonic()
    s.primary = target.name
    try:
        async with session_on(ctx.ns, ctx.spec, target, ip, creds, ctx.identity) as db:
            result.bytes_before = await db.size(None)
            await db.compact(False, None)
            result.bytes_after = await db.size(None)
        result.phase = "Succeeded"
    except EngineError as e:
        result.phase, result.error = "Failed", str(e)[:1024]
        raise
    finally:
        result.completed_at, result.duration_seconds = ctx.clock.now(), round(time.monotonic() - started, 3)
        s.last_compaction = result
    ctx.memory.figures_due = 0.0  # the size changed: refresh the figures now
    freed = (result.bytes_before or 0) - (result.bytes_after or 0)
    return f"{result.bytes_before} -> {result.bytes_after} bytes" + (f", {freed} reclaimed" if freed > 0 else "")


COMPACT: request.Action[Credentials | None] = request.Action(
    name="compact", condition="Compacted", busy="Compacting", done="Compacted", noun="compaction",
    token_annotation=COMPACT_ANNOTATION, handled_field="last_handled_compact_request", after_field="compacted_after",
    completed_field="last_compacted_at", schedule_field="compact_schedule", resolve=_the_target, act=_compact,
    prepare=_credentials, hold=hibernated,
    rights=lambda ctx: ("compact", "credentials") if ctx.spec.credentials_secret_ref else ("compact",), attempts=1)


async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
    return await reconcile_with(DATABASE_SERVER, body, memory, runtime, DatabaseServerSpec, DatabaseServerStatus,
                                _work)


async def _work(ctx: Ctx) -> None:
    await stop_start(ctx)
    await request.step(ctx, COMPACT)  # a new compaction is held while the database is stopped (hibernated)
    if not desired_stopped(ctx):
        await _figures(ctx)
    else:  # no figures to read, but the workload is looked at as often (a stop undone by GitOps is seen)
        not_degraded_while_stopped(ctx)
        ctx.wake_in(float(ctx.spec.status_interval_seconds))


async def _figures(ctx: Ctx) -> None:
    if not figures_due(ctx):
        return
    s = ctx.status
    with next_figures_in(ctx, float(ctx.spec.status_interval_seconds)):  # also after a Degraded answer below
        try:
            # A database that stops answering must not hold the reconcile: the figures wait at most this long.
            async with asyncio.timeout(float(ctx.spec.timeout_seconds) + 10), open_database(ctx.ns, ctx.spec) as db:
                figures = await db.session.figures()
                pod = db.pod
        except TimeoutError:
            ctx.condition("Degraded", True, "DatabaseUnreachable",
                          f"no answer within {ctx.spec.timeout_seconds + 10}s")
            return
        except NoTarget as e:
            ctx.condition("Degraded", True, e.reason, str(e))
            return
        except (EngineError, NotActionable) as e:
            ctx.condition("Degraded", True, "DatabaseUnreachable", str(e))
            return
    tables = [TableFigures(table=t.table, dead_tuples=t.dead_tuples, live_tuples=t.live_tuples)
              for t in figures.largest_tables] or None
    before = (s.primary, s.size_bytes, s.connections, s.largest_tables)
    s.primary, s.size_bytes, s.connections, s.largest_tables = pod, figures.size_bytes, figures.connections, tables
    if before != (s.primary, s.size_bytes, s.connections, s.largest_tables):
        s.refreshed_at = ctx.clock.now()
    if ctx.condition_status("Degraded") == "True" and s.run is None:
        ctx.condition("Degraded", False, "Recovered", f"{pod} answers.")
    elif ctx.condition_status("Degraded") is None:
        ctx.condition("Degraded", False, "DatabaseReachable", f"{pod} answers.")
