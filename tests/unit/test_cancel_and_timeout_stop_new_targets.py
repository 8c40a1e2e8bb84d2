"""Cancel and timeout on the request core (fake clock): once a cancel names the run (or its deadline passes) no
target starts; targets in flight finish and are recorded; the request is acknowledged Cancelled / TimedOut
with true counts (done, failed, not started)."""

from __future__ import annotations

import asyncio
from typing import Any

from test_request_core_with_a_fake_clock import PODS, FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.runs import request
from rolecall.runs.context import Memory


def test_a_cancel_mid_fan_out_starts_nothing_more_and_counts_truthfully(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted, memory = FakeClock(), [], Memory()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        if len(acted) == 2:  # the cancel arrives (the watch updates the memory) while the second pod is in flight
            memory.annotations = {"rolecall.dev/clear-requested-at": "t1", "rolecall.dev/cancel": "t1"}
        return "OK"

    status = CacheServerStatus()
    ctx = context(clock, annotations={"rolecall.dev/clear-requested-at": "t1"}, memory=memory, status=status,
                  concurrency=1)
    asyncio.run(request.step(ctx, action(act)))
    assert acted == ["mc-0", "mc-1"]  # nothing started after the cancel; the one in flight finished
    last = status.last_request
    assert last is not None and (last.outcome, last.token, last.done, last.not_started) == ("Cancelled", "t1", 2, 4)
    assert status.run is None and status.last_handled_clear_request == "t1"  # acknowledged: waiting clients end
    assert world["events"][-1][:2] == ("Warning", "ClearCancelled")


def test_a_request_past_its_deadline_ends_timed_out(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        clock.advance(4)  # each pod takes 4 s
        return "OK"

    status = CacheServerStatus()
    ctx = context(clock, annotations={"rolecall.dev/clear-requested-at": "t2"}, status=status, concurrency=1,
                  requestTimeoutSeconds=10)
    asyncio.run(request.step(ctx, action(act)))
    last = status.last_request
    assert len(acted) == 3 and last is not None and last.outcome == "TimedOut", last  # 0 s, 4 s, 8 s; 12 s is late
    assert (last.done, last.failed, last.not_started) == (3, 0, 3) and "requestTimeoutSeconds" in last.message
    assert status.history is not None and status.history[0].outcome == "TimedOut"


def test_a_cancelled_spec_time_is_not_asked_again_and_a_halted_retry_is_a_failure(
        world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted, memory = FakeClock(), [], Memory()
    when = "2026-11-26T04:00:00Z"

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        if t.name == "mc-1":
            memory.annotations = {"rolecall.dev/cancel": when}  # arrives while mc-1 is tried
            raise OSError("connection refused")  # its retry is then never made
        return "OK"

    status = CacheServerStatus()
    for _ in range(3):  # the same spec time on every reconcile: cancelled once, never started again
        asyncio.run(request.step(context(clock, memory=memory, status=status, concurrency=1, clearedAfter=when),
                                 action(act)))
    last = status.last_request
    assert acted == ["mc-0", "mc-1"] and last is not None and last.outcome == "Cancelled", (acted, last)
    assert (last.done, last.failed, last.not_started) == (1, 1, 4), last  # mc-1 was tried: failed, not "not started"
