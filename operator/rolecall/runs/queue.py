"""One worker per object: watch events coalesce, reconciles never overlap, timers wake it later.

Objects are keyed by UID (a deleted and re-created object is a new object with a fresh memory).
Handlers only call `observe()` with each watch event's body; the latest body wins. A reconcile returns
how many seconds until it wants to run again (a future `clearedAfter`, the next stats refresh, a retry)
or None: an in-process timer, so nothing is polled and nothing is written while waiting.

Only the leader reconciles. `Gate.close()` (the leader lost its Lease or its renew deadline) cancels
every running reconcile; `Gate.open()` (it leads again) forgets what each object's memory says it
wrote, since another leader may have written since, and reconciles every object from its latest body.
`Gate.drain()` (a planned stop: SIGTERM in a rollout) lets the running reconciles finish what is in
flight first: while `draining()`, no reconcile and no request starts, and the executors start no target
or batch; the ones in flight finish and are written, so the next leader repeats none of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rolecall import metrics
from rolecall.leadership import NotLeader
from rolecall.runs.context import Memory, Runtime
from rolecall.runs.packing import pack, unpack
from rolecall.runs.status import StaleStatus

log = logging.getLogger(__name__)
_draining = False


def draining() -> bool:
    """A planned stop is under way: start nothing new (a reconcile, a request, a target, a batch)."""
    return _draining

# reconcile(body, memory, runtime) -> seconds until it wants to run again, or None.
Reconcile = Callable[[dict[str, Any], Memory, Runtime], Awaitable[float | None]]


@dataclass
class Gate:
    """Open while this process leads; every queue waits on it before reconciling."""

    queues: list[WorkQueue] = field(default_factory=list)
    _open: asyncio.Event | None = None

    @property
    def event(self) -> asyncio.Event:
        if self._open is None:
            self._open = asyncio.Event()
        return self._open

    def is_open(self) -> bool:
        return self.event.is_set()

    def open(self) -> None:
        for q in self.queues:
            q.forget_and_kick_all()
        self.event.set()

    async def close(self) -> None:
        self.event.clear()
        await asyncio.gather(*(q.cancel_all() for q in self.queues))

    async def drain(self, grace: float) -> None:
        """A planned stop: nothing new starts, the reconciles under way get `grace` seconds to finish what is
        in flight and write it, then the rest is cancelled (as on a lost Lease)."""
        global _draining
        _draining = True
        busy = [s.task for q in self.queues for s in q._slots.values() if s.reconciling and s.task]
        if busy:
            log.info("stopping: waiting up to %.0fs for %d reconciles to finish what is in flight", grace, len(busy))
            _, late = await asyncio.wait(busy, timeout=grace)
            if late:
                log.warning("stopping: %d reconciles still running after %.0fs are cancelled", len(late), grace)
        await self.close()


@dataclass
class _Slot:
    key: str
    packed: bytes  # the latest body (runs/packing.py: kept for every object, so kept small)
    dirty: bool = True
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    failures: int = 0
    # Watch events that only echo our own status writes need no reconcile: skip when the inputs the
    # reconcile depends on (generation, annotations, deletion) are unchanged and no timer is due.
    inputs: Any = None
    memory: Memory = field(default_factory=Memory)
    event_at: float | None = None  # when the watch event that asked for the next reconcile arrived
    reconciling: bool = False  # a reconcile is under way (not waiting for the gate or a timer)


def _inputs(body: dict[str, Any]) -> Any:
    meta = body.get("metadata", {})
    return (meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())),
            meta.get("deletionTimestamp"))


class WorkQueue:
    def __init__(self, reconcile: Reconcile, gate: Gate, runtime: Runtime, kind: str = "",
                 max_backoff: float = 30) -> None:
        self._reconcile = reconcile
        self._gate = gate
        self._runtime = runtime
        self._kind = kind
        self._slots: dict[str, _Slot] = {}
        self._max_backoff = max_backoff
        gate.queues.append(self)

    def observe(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        meta = body["metadata"]
        uid = meta.get("uid") or f"{meta['namespace']}/{meta['name']}"
        if deleted:
            slot = self._slots.pop(uid, None)
            if slot:
                if slot.timer:
                    slot.timer.cancel()
                if slot.task and not slot.task.done():
                    slot.task.cancel()
            return
        slot = self._slots.get(uid)
        asks = slot is None or slot.inputs != _inputs(body)  # a new object, or new inputs: not an echo
        if slot is None:
            slot = self._slots[uid] = _Slot(key=f"{meta['namespace']}/{meta['name']}", packed=pack(body))
        else:
            slot.packed = pack(body)
            if not asks:
                return  # only status changed (our own writes' echoes): the inputs of a reconcile are the same
            slot.dirty = True
        slot.memory.annotations = dict(meta.get("annotations") or {})
        if asks:  # event-to-reconcile measures what a request waits, not echoes of our writes
            slot.event_at = slot.event_at or time.monotonic()
        self._kick(uid, slot)

    def _kick(self, uid: str, slot: _Slot) -> None:
        if slot.task is None or slot.task.done():
            slot.task = asyncio.get_running_loop().create_task(self._work(uid, slot), name=f"reconcile {slot.key}")

    def _wake(self, uid: str) -> None:
        slot = self._slots.get(uid)
        if slot is not None:
            slot.timer = None
            slot.dirty = True
            self._kick(uid, slot)

    def forget_and_kick_all(self) -> None:
        for uid, slot in self._slots.items():
            slot.memory = Memory()
            slot.dirty = True
            self._kick(uid, slot)

    async def cancel_all(self) -> None:
        tasks = [s.task for s in self._slots.values() if s.task and not s.task.done()]
        for slot in self._slots.values():
            if slot.timer:
                slot.timer.cancel()
                slot.timer = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots.values():
            slot.dirty = True  # reconciled again when this process leads again

    async def _work(self, uid: str, slot: _Slot) -> None:
        await self._gate.event.wait()
        while slot.dirty and self._slots.get(uid) is slot and not _draining:
            slot.dirty = False
            if slot.event_at is not None:
                metrics.EVENT_TO_RECONCILE.labels(self._kind).observe(time.monotonic() - slot.event_at)
                slot.event_at = None
            body = unpack(slot.packed)
            slot.inputs = _inputs(body)
            if slot.timer:
                slot.timer.cancel()
                slot.timer = None
            slot.reconciling = True
            try:
                delay = await self._reconcile(body, slot.memory, self._runtime)
                slot.failures = 0
            except asyncio.CancelledError:
                raise
            except NotLeader as e:
                log.warning("%s %s: not acting: %s", self._kind, slot.key, e)
                slot.dirty = True
                return  # the gate closes; leading again reconciles it from scratch
            except StaleStatus as stale:
                # Another writer changed the status since we read it: start over from its version.
                log.warning("%s %s: status changed by another writer; reconciling from the fresh object",
                            self._kind, slot.key)
                slot.memory = Memory()
                slot.packed = pack(stale.fresh)
                slot.failures += 1
                slot.dirty = slot.failures < 3
                delay = None if slot.dirty else min(self._max_backoff, 2.0 ** slot.failures)
            except Exception:
                slot.failures += 1
                delay = min(self._max_backoff, 2.0 ** slot.failures)
                log.exception("reconcile of %s failed (attempt %d); retrying in %.0fs", slot.key, slot.failures,
                              delay)
            finally:
                slot.reconciling = False
            if delay is not None and not slot.dirty:
                slot.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._wake, uid)

    def __len__(self) -> int:
        return len(self._slots)
