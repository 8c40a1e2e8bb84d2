"""The work queue: one reconcile at a time per object, latest body wins, echoes skipped, timers wake it."""

from __future__ import annotations

import asyncio
from typing import Any

from rolecall.runs.queue import WorkQueue


async def until(check: Any, deadline: float = 5.0) -> None:
    """Waits for a condition, with a deadline (no fixed sleeps as synchronisation)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


def body(gen: int, ann: str = "", status: str = "") -> dict[str, Any]:
    return {"metadata": {"generation": gen, "annotations": {"a": ann}}, "status": {"s": status}}


def test_events_during_a_reconcile_coalesce_into_one_more_with_the_latest_body() -> None:
    seen: list[int] = []
    gate = asyncio.Event()

    async def reconcile(b: dict[str, Any], memo: dict[str, Any]) -> float | None:
        seen.append(b["metadata"]["generation"])
        if len(seen) == 1:
            await gate.wait()
        return None

    async def main() -> None:
        q = WorkQueue(reconcile)
        q.observe("ns/x", body(1))
        await asyncio.sleep(0)
        for g in (2, 3, 4):
            q.observe("ns/x", body(g))
        gate.set()
        await until(lambda: len(seen) == 2)
        await asyncio.sleep(0.02)  # room for a wrong third reconcile to show up

    asyncio.run(main())
    assert seen == [1, 4]


def test_status_only_echoes_do_not_reconcile_but_annotation_changes_do() -> None:
    seen: list[str] = []

    async def reconcile(b: dict[str, Any], memo: dict[str, Any]) -> float | None:
        seen.append(b["metadata"]["annotations"]["a"])
        return None

    async def main() -> None:
        q = WorkQueue(reconcile)
        q.observe("k", body(1, "t1"))
        await until(lambda: seen == ["t1"])
        q.observe("k", body(1, "t1", status="written by us"))
        q.observe("k", body(1, "t2"))
        await until(lambda: len(seen) == 2)

    asyncio.run(main())
    assert seen == ["t1", "t2"]


def test_a_returned_delay_wakes_the_reconcile_and_deletion_cancels_it() -> None:
    calls = 0

    async def reconcile(b: dict[str, Any], memo: dict[str, Any]) -> float | None:
        nonlocal calls
        calls += 1
        memo["n"] = memo.get("n", 0) + 1
        return 0.01

    async def main() -> None:
        q = WorkQueue(reconcile)
        q.observe("k", body(1))
        await until(lambda: calls >= 3)  # woke by its own timer, no watch event needed
        q.observe("k", body(1), deleted=True)
        settled = calls
        await asyncio.sleep(0.05)
        assert calls == settled and len(q) == 0

    asyncio.run(main())


def test_a_failing_reconcile_is_retried_with_backoff() -> None:
    attempts = 0

    async def reconcile(b: dict[str, Any], memo: dict[str, Any]) -> float | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("apiserver hiccup")
        return None

    async def main() -> None:
        q = WorkQueue(reconcile, max_backoff=0.02)
        q.observe("k", body(1))
        await until(lambda: attempts == 2)

    asyncio.run(main())
    assert attempts == 2
