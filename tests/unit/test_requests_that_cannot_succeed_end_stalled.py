"""A request whose failures retrying cannot fix ends: at once when the engine's answer says so (memcached -F, a
Redis ACL, a missing table: EngineError.fix), or when spec.maxRetries retry passes are spent. It ends Stalled
(lastRequest outcome Stalled, reason TargetsRefused or RetriesExhausted, the fix named), nothing stays busy so
a kstatus wait ends, and the request is handled: the same spec time is not asked again (a later request of
another trigger does not change that), a new spec time asks again."""

from __future__ import annotations

import asyncio
from typing import Any

from test_request_core_with_a_fake_clock import FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.engines import EngineError
from rolecall.runs import conditions, request

TOKEN = "rolecall.dev/clear-requested-at"


def _stalled(ctx: Any) -> tuple[str, str] | None:
    s = ctx.status
    return conditions.stalled_by(s.last_request, ctx.generation)


def test_an_answer_retrying_cannot_fix_ends_the_request_stalled_at_once(world: dict[str, Any]) -> None:  # noqa: F811
    calls: list[str] = []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        calls.append(t.name)
        if t.name == "mc-2":
            raise EngineError("memcached: CLIENT_ERROR flush_all not allowed",
                              fix="memcached runs with -F (flush_all disabled): start it without -F")
        return "flush_all: OK"

    ctx = context(FakeClock(), {TOKEN: "t1"})
    asyncio.run(request.step(ctx, action(act)))
    s = ctx.status
    assert calls.count("mc-2") == 1  # not tried again: its own answer says why
    assert s.run is None and ctx.busy is None and s.last_handled_clear_request == "t1"
    assert s.last_request is not None and (s.last_request.outcome, s.last_request.reason) == ("Stalled",
                                                                                           "TargetsRefused")
    assert "start it without -F" in s.last_request.message and "mc-2" in s.last_request.message
    assert _stalled(ctx) == ("TargetsRefused", s.last_request.message)
    assert s.last_cleared_at == s.last_request.accepted_at  # handled: nothing left to retry
    assert [e[1] for e in world["events"] if e[0] == "Warning"] == ["TargetsRefused"]
    assert (s.history or [])[0].outcome == "Stalled"


def test_retries_end_when_the_budget_is_spent_and_a_spec_time_waits_for_a_spec_change(
        world: dict[str, Any]) -> None:  # noqa: F811
    clock, calls = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        calls.append(t.name)
        if t.name == "mc-1":
            raise EngineError("postgresql: canceling statement due to statement timeout")  # retryable
        return "ok"

    clear = request.Action(**{**action(act).__dict__, "attempts": 1})
    after = {"clearedAfter": "2026-11-26T04:37:00Z", "maxRetries": 2}
    status = CacheServerStatus()
    for _ in range(20):  # reconciles, each woken when it asked to be
        ctx = context(clock, status=status, **after)
        asyncio.run(request.step(ctx, clear))
        if status.run is None:
            break
        clock.advance(min(ctx.delays))
    assert calls.count("mc-1") == 3  # the first pass and 2 retry passes
    last = status.last_request
    assert last is not None and (last.outcome, last.reason) == ("Stalled", "RetriesExhausted"), last
    assert "still failing after 2 retry passes" in last.message and "statement timeout" in last.message
    assert ctx.busy is None and _stalled(ctx) is not None

    clock.advance(3600)
    asyncio.run(request.step(context(clock, status=status, **after), clear))
    assert calls.count("mc-1") == 3  # the same spec time: not asked again
    asyncio.run(request.step(context(clock, {"rolecall.dev/clear-requested-at": "other"}, status=status, **after),
                             clear))  # another request ends in between (it overwrites lastRequest)
    asyncio.run(request.step(context(clock, {"rolecall.dev/clear-requested-at": "other"}, status=status, **after),
                             clear))
    assert calls.count("mc-1") == 4  # the token's one pass (and its retries are its own), not the spec time again
    later = {**after, "clearedAfter": "2026-11-26T05:00:00Z"}  # a new spec time after the fix asks again
    asyncio.run(request.step(context(clock, status=status, **later), clear))
    assert calls.count("mc-1") == 5
