"""kopf handlers: decorators only. Each role kind's watch events go to that kind's work queue and return."""

from __future__ import annotations

from typing import Any

import kopf

from rolecall.api.kinds import CACHE_SERVER, DATABASE_MAINTENANCE, DATABASE_SERVER, WEB_SERVER, Kind
from rolecall.roles import cache, database, maintenance, web
from rolecall.runs.context import Runtime
from rolecall.runs.queue import Gate, Reconcile, WorkQueue

ROLES: tuple[tuple[Kind, Reconcile], ...] = (
    (CACHE_SERVER, cache.reconcile),
    (WEB_SERVER, web.reconcile),
    (DATABASE_SERVER, database.reconcile),
    (DATABASE_MAINTENANCE, maintenance.reconcile),
)


def register(registry: kopf.OperatorRegistry, gate: Gate, runtime: Runtime) -> None:
    for kind, reconcile in ROLES:
        _watch(registry, kind, reconcile, gate, runtime)


def _watch(registry: kopf.OperatorRegistry, kind: Kind, reconcile: Reconcile, gate: Gate, runtime: Runtime) -> None:
    queue: WorkQueue | None = None

    # on.event, not on.create/on.update: the reconcile is level-based and keeps its state in status, so
    # kopf needs no progress or diff-base annotations (which would be UPDATEs of the user's object).
    # The id is pinned (Kind.handler_id): renaming a function never orphans kopf's state.
    @kopf.on.event(kind.group, kind.version, kind.plural, id=kind.handler_id, registry=registry)
    async def role_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        nonlocal queue
        if queue is None:
            queue = WorkQueue(reconcile, gate, runtime, kind=kind.plural)  # inside the operator's event loop
        # The raw body as the watch delivered it: the queue keeps a packed copy (runs/packing.py), not this dict.
        queue.observe(dict(event.get("object") or body), deleted=event.get("type") == "DELETED")
