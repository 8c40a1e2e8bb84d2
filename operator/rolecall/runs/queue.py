"""One worker per object: watch events coalesce, reconciles never overlap, timers wake it later.

Objects are keyed by UID (a deleted and re-created object is a new object with a fresh memory).
Handlers only call `observe()` with each watch event's body; the latest body wins. A reconcile returns
how many seconds until it wants to run again (a future `clearedAfter`, the next stats refresh, a retry)
or None: an in-process timer, so nothing is polled and nothing is written while waiting.

Only the leader reconciles. `Gate.close()` (the leader's term ended) cancels every running reconcile;
`Gate.open()` (it leads again) forgets what each object's memory says it wrote, since another leader may
have written since, and reconciles every object from its latest body.

One rule for `NotLeader` met by a reconcile (leadership.py defines when this process may act): while the
gate is open the term goes on, so the object is not dropped: it waits (runs/fence.py) for the next
renewal landing in time and is reconciled again; if the term ends instead, `close()` cancels the wait and
marks it for the next term. Either way its due times are kept (`_Slot.due_at`): a reconcile that did not
finish has not served them. `Gate.overdue()` counts objects due longer than `overdue_after` that have not
been reconciled, for `rolecall_overdue_objects`: a stranded object shows on a dashboard.

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
from rolecall.runs import fence
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
    overdue_after: float = 60.0  # seconds past due before an object counts as overdue
    # Made here, not on first use: the metrics thread reads it too (overdue()), and two lazily made Events would
    # leave the reconciles waiting on the lost one stranded.
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _deferred: int = 0  # reconciles waiting for `until_acting` since acting last resumed

    async def defer(self, kind: str, key: str, why: NotLeader) -> bool:
        """A reconcile met NotLeader while the gate is open: waits until this process may act again (True),
        or its term ends (False: close() marks the object for the next term)."""
        if not self._deferred:
            log.warning("not acting until the next Lease renewal lands (%s %s first): %s", kind, key, why)
        self._deferred += 1
        try:
            await fence.wait_to_act(kind)
        except NotLeader:
            return False
        if self._deferred:
            log.info("acting again: %d deferred reconciles go on", self._deferred)
            self._deferred = 0
        return True

    def overdue(self) -> dict[str, int]:
        """Per kind, objects whose reconcile was due more than `overdue_after` ago and has not run. One under way
        is not counted (its own timeouts bound it), nor anything while this process does not lead or drains."""
        counts = {q._kind: 0 for q in self.queues}
        if not self.is_open() or _draining:
            return counts
        late = time.monotonic() - self.overdue_after
        for q in self.queues:
            counts[q._kind] += sum(1 for s in list(q._slots.values())
                                   if s.due_at is not None and s.due_at < late and not s.reconciling)
        return counts

    @property
    def event(self) -> asyncio.Event:
        return self._open

    def is_open(self) -> bool:
        return self.event.is_set()

    def open(self) -> None:
        for q in self.queues:
            q.forget_and_kick_all()
        self.event.set()

    async def close(self) -> None:
        self.event.clear()
        self._deferred = 0
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
    # Monotonic due times no finished reconcile has served: the earliest event or kick, and the timer (kept when
    # a reconcile that cancelled it does not finish, replaced by the next finished reconcile's answer).
    asked_at: float | None = None
    timer_due: float | None = None

    def ask(self, at: float) -> None:
        self.asked_at = at if self.asked_at is None else min(self.asked_at, at)

    @property
    def due_at(self) -> float | None:
        return min((t for t in (self.asked_at, self.timer_due) if t is not None), default=None)


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
            slot.ask(time.monotonic())
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
            slot.asked_at, slot.timer_due = time.monotonic(), None  # due from now: a standby owed nothing
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
            # The asks this pass serves once it finishes; asks arriving meanwhile are kept for the next pass.
            serving, slot.asked_at = slot.asked_at, None
            slot.reconciling = True
            try:
                delay = await self._reconcile(body, slot.memory, self._runtime)
                slot.failures = 0
            except asyncio.CancelledError:
                if serving is not None:
                    slot.ask(serving)  # not served
                raise
            except NotLeader as e:
                slot.dirty = True  # not served: its due times stay
                if serving is not None:
                    slot.ask(serving)
                if _draining or not self._gate.is_open():
                    return  # the term is ending: close() cancels the rest, and leading again reconciles it
                slot.reconciling = False
                if await self._gate.defer(self._kind, slot.key, e):
                    continue
                return
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
            slot.timer_due = None  # this reconcile's answer replaces the timer it cancelled
            if delay is not None and not slot.dirty:
                slot.timer_due = time.monotonic() + max(0.0, delay)
                slot.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._wake, uid)

    def __len__(self) -> int:
        return len(self._slots)
