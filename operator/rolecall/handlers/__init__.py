"""kopf handlers: decorators only. Each role kind's watch events go to that kind's work queue and return."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from rolecall.roles import cache, database, maintenance, web
from rolecall.runs.queue import Reconcile, WorkQueue

GROUP, VERSION = "rolecall.dev", "v1alpha1"
# (plural, pinned handler id, reconcile): the ids are stable, so renaming a function never orphans state.
ROLES: tuple[tuple[str, str, Reconcile], ...] = (
    (cache.PLURAL, "cacheserver-watch", cache.reconcile),
    (web.PLURAL, "webserver-watch", web.reconcile),
    (database.PLURAL, "databaseserver-watch", database.reconcile),
    (maintenance.PLURAL, "databasemaintenance-watch", maintenance.reconcile),
)


def register(registry: kopf.OperatorRegistry) -> None:
    for plural, handler_id, reconcile in ROLES:
        _watch(registry, plural, handler_id, reconcile)


def _watch(registry: kopf.OperatorRegistry, plural: str, handler_id: str, reconcile: Reconcile) -> None:
    queue: WorkQueue | None = None

    # on.event, not on.create/on.update: the reconcile is level-based and keeps its state in status, so
    # kopf needs no progress or diff-base annotations (which would be UPDATEs of the user's object).
    @kopf.on.event(GROUP, VERSION, plural, id=handler_id, registry=registry)
    async def role_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        nonlocal queue
        if queue is None:
            queue = WorkQueue(reconcile, kind=plural)  # created inside the operator's event loop
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        queue.observe(key, copy.deepcopy(dict(body)), deleted=event.get("type") == "DELETED")
