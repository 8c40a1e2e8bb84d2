"""The work queue: one reconcile at a time per object (by UID), latest body wins, echoes skipped, timers wake
it, and only while the leader gate is open."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rolecall.runs.context import Memory, Runtime
from rolecall.runs.packing import pack, unpack
from rolecall.runs.queue import Gate, WorkQueue


async def until(check: Any, deadline: float = 5.0) -> None:
    """Waits for a condition, with a deadline (no fixed sleeps as synchronisation)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


def body(gen: int, ann: str = "", status: str = "", uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "x", "uid": uid, "generation": gen, "annotations": {"a": ann}},
            "status": {"s": status}}


def queue(reconcile: Any, **kw: Any) -> tuple[WorkQueue, Gate]:
    gate = Gate()
    q = WorkQueue(reconcile, gate, Runtime(), **kw)
    gate.open()
    return q, gate


def test_events_during_a_reconcile_coalesce_into_one_more_with_the_latest_body() -> None:
    seen: list[int] = []
    hold = asyncio.Event()

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        seen.append(b["metadata"]["generation"])
        if len(seen) == 1:
            await hold.wait()
        return None

    async def main() -> None:
        q, _ = queue(reconcile)
        q.observe(body(1))
        await until(lambda: seen == [1])
        for g in (2, 3, 4):
            q.observe(body(g))
        hold.set()
        await until(lambda: len(seen) == 2)
        await asyncio.sleep(0.02)  # room for a wrong third reconcile to show up

    asyncio.run(main())
    assert seen == [1, 4]


def test_status_only_echoes_do_not_reconcile_but_annotation_changes_do() -> None:
    seen: list[str] = []

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        seen.append(b["metadata"]["annotations"]["a"])
        return None

    async def main() -> None:
        q, _ = queue(reconcile)
        q.observe(body(1, "t1"))
        await until(lambda: seen == ["t1"])
        q.observe(body(1, "t1", status="written by us"))
        q.observe(body(1, "t2"))
        await until(lambda: len(seen) == 2)

    asyncio.run(main())
    assert seen == ["t1", "t2"]


def test_a_returned_delay_wakes_the_reconcile_and_deletion_cancels_it() -> None:
    calls = 0

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        nonlocal calls
        calls += 1
        return 0.01

    async def main() -> None:
        q, _ = queue(reconcile)
        q.observe(body(1))
        await until(lambda: calls >= 3)  # woke by its own timer, no watch event needed
        q.observe(body(1), deleted=True)
        settled = calls
        await asyncio.sleep(0.05)
        assert calls == settled and len(q) == 0

    asyncio.run(main())


def test_a_failing_reconcile_is_retried_with_backoff() -> None:
    attempts = 0

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("apiserver hiccup")
        return None

    async def main() -> None:
        q, _ = queue(reconcile, max_backoff=0.02)
        q.observe(body(1))
        await until(lambda: attempts == 2)

    asyncio.run(main())
    assert attempts == 2


def test_a_recreated_object_is_a_new_object_with_a_fresh_memory() -> None:
    memories: list[Memory] = []

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        memory.errors += 1  # something remembered about this object
        memories.append(memory)
        return None

    async def main() -> None:
        q, _ = queue(reconcile)
        q.observe(body(1, uid="first"))
        await until(lambda: len(memories) == 1)
        q.observe(body(1, uid="second"))  # same namespace/name, deleted and created again
        await until(lambda: len(memories) == 2)

    asyncio.run(main())
    assert memories[0] is not memories[1] and memories[1].errors == 1


def test_nothing_reconciles_while_the_gate_is_closed_and_closing_cancels_the_running_one() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        started.append(b["metadata"]["generation"])
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(b["metadata"]["generation"])
            raise
        return None

    async def main() -> None:
        gate = Gate()
        q = WorkQueue(reconcile, gate, Runtime())
        q.observe(body(1))
        await asyncio.sleep(0.02)
        assert started == []  # a standby keeps bodies but acts on nothing
        gate.open()
        await until(lambda: started == [1])
        await gate.close()  # lost the lead: running work is cancelled before close returns
        assert cancelled == [1]
        q.observe(body(2))
        await asyncio.sleep(0.02)
        assert started == [1]
        gate.open()  # leading again: every object is reconciled from its latest body
        await until(lambda: started == [1, 2])
        await gate.close()

    asyncio.run(main())


def test_bodies_are_kept_packed_and_reconciled_as_they_came() -> None:
    """Every watched object's latest body stays in memory: packed (runs/packing.py), a fraction of its size."""
    history = [{"action": "clear", "token": f"t{i}", "outcome": "Succeeded", "acceptedAt": "2026-11-26T23:00:00Z"}
               for i in range(10)]
    big = {**body(1), "status": {"history": history, "conditions": [{"type": "Ready", "status": "True"}] * 5}}
    seen: list[dict[str, Any]] = []

    async def reconcile(b: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        seen.append(b)
        return None

    async def main() -> WorkQueue:
        q, _ = queue(reconcile)
        q.observe(big)
        await until(lambda: len(seen) == 1)
        return q

    q = asyncio.run(main())
    assert seen == [big] and seen[0] is not big  # the reconcile gets its own copy, equal to the event's
    kept = next(iter(q._slots.values())).packed
    assert isinstance(kept, bytes) and len(kept) < len(json.dumps(big)) / 3
    assert unpack(pack(big)) == big and pack(big) == pack(json.loads(json.dumps(big)))
