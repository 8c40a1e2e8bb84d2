"""One worker per resource: watch events coalesce, reconciles never overlap, timers wake it later.

Handlers only call `observe()` with each watch event's body; the latest body wins. A reconcile returns
how many seconds until it wants to run again (a future `clearedAfter`, the next stats refresh, a retry)
or None. That is an in-process timer: nothing is polled and nothing is written while waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rolecall import metrics

log = logging.getLogger(__name__)

# reconcile(body, memo): `memo` lives as long as the resource is watched. Reconcilers keep the status they
# last wrote there and trust it over the body's, since a watch event may still carry an older status.
Reconcile = Callable[[dict[str, Any], dict[str, Any]], Awaitable[float | None]]


@dataclass
class _Slot:
    body: dict[str, Any]
    dirty: bool = True
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    failures: int = 0
    # Watch events that only echo our own status writes need no reconcile: skip when the inputs the
    # reconcile depends on (generation, annotations, deletion) are unchanged and no timer is due.
    inputs: Any = None
    memo: dict[str, Any] = field(default_factory=dict)
    event_at: float | None = None  # when the watch event that asked for the next reconcile arrived


def _inputs(body: dict[str, Any]) -> Any:
    meta = body.get("metadata", {})
    return (meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())),
            meta.get("deletionTimestamp"))


class WorkQueue:
    def __init__(self, reconcile: Reconcile, max_backoff: float = 300, kind: str = "") -> None:
        self._reconcile = reconcile
        self._kind = kind
        self._slots: dict[str, _Slot] = {}
        self._max_backoff = max_backoff

    def observe(self, key: str, body: dict[str, Any], *, deleted: bool = False) -> None:
        if deleted:
            slot = self._slots.pop(key, None)
            if slot:
                if slot.timer:
                    slot.timer.cancel()
                if slot.task and not slot.task.done():
                    slot.task.cancel()
            return
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(body=body)
        else:
            slot.body = body
            if slot.inputs == _inputs(body) and not (slot.task and not slot.task.done()):
                return  # only our own status changed
            slot.dirty = True
        slot.event_at = slot.event_at or time.monotonic()
        self._kick(key, slot)

    def _kick(self, key: str, slot: _Slot) -> None:
        if slot.task is None or slot.task.done():
            slot.task = asyncio.get_running_loop().create_task(self._work(key, slot), name=f"reconcile {key}")

    def _wake(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            slot.timer = None
            slot.dirty = True
            self._kick(key, slot)

    async def _work(self, key: str, slot: _Slot) -> None:
        while slot.dirty and self._slots.get(key) is slot:
            slot.dirty = False
            if slot.event_at is not None:
                metrics.EVENT_TO_RECONCILE.labels(self._kind).observe(time.monotonic() - slot.event_at)
                slot.event_at = None
            body = slot.body
            slot.inputs = _inputs(body)
            if slot.timer:
                slot.timer.cancel()
                slot.timer = None
            try:
                delay = await self._reconcile(body, slot.memo)
                slot.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                slot.failures += 1
                delay = min(self._max_backoff, 2.0 ** slot.failures)
                log.exception("reconcile of %s failed (attempt %d); retrying in %.0fs", key, slot.failures, delay)
            if delay is not None and not slot.dirty:
                slot.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._wake, key)

    def __len__(self) -> int:
        return len(self._slots)
