"""Watches CacheServers; every event goes to the CacheServer work queue (roles.cache does the work)."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from rolecall.roles import cache
from rolecall.runs.queue import WorkQueue


def register(registry: kopf.OperatorRegistry) -> None:
    queue: WorkQueue | None = None

    # on.event, not on.create/on.update: the reconcile is level-based and keeps its state in status, so
    # kopf needs no progress or diff-base annotations (which would be UPDATEs of the user's object).
    @kopf.on.event(cache.GROUP, cache.VERSION, cache.PLURAL, id="cacheserver-watch", registry=registry)
    async def cacheserver_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        nonlocal queue
        if queue is None:
            queue = WorkQueue(cache.reconcile)
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        queue.observe(key, copy.deepcopy(dict(body)), deleted=event.get("type") == "DELETED")
