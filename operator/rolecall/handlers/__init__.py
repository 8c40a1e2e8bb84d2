"""kopf handlers: decorators only. Each role kind's watch events go to that kind's work queue and return; in
webhook mode, admission requests get the requester recorded."""

from __future__ import annotations

from typing import Any

import kopf

from rolecall.api.admission import requester_webhook_id
from rolecall.api.kinds import CACHE_SERVER, DATABASE_MAINTENANCE, DATABASE_SERVER, WEB_SERVER, Kind
from rolecall.api.rights import ACTIONS, Action
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


def register_requester_webhooks(registry: kopf.OperatorRegistry) -> None:
    """Webhook mode: one mutating handler per recorded action, at the path its webhook calls. The apiserver
    calls it only when that action's trigger changed (the webhook's matchConditions), so all it does is name
    the requesting user and their groups, as the MutatingAdmissionPolicy does in policy mode."""
    for kind, _ in ROLES:
        for action in ACTIONS[kind.plural]:
            if action.has_requester:
                _record_requester(registry, kind, action)


def _record_requester(registry: kopf.OperatorRegistry, kind: Kind, action: Action) -> None:
    @kopf.on.mutate(kind.group, kind.version, kind.plural, id=requester_webhook_id(kind.plural, action.name),
                    registry=registry)
    def record(*, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any) -> None:
        patch.meta.annotations[action.requested_by] = userinfo.get("username") or ""
        patch.meta.annotations[action.requested_by_groups] = ",".join(userinfo.get("groups") or [])
