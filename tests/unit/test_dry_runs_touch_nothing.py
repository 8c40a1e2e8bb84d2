"""Dry runs on the request core (fake clock): the targets are resolved and reported, acknowledged with outcome
DryRun in lastRequest and history, handled once per token, and nothing is acted on; the real run that follows
touches exactly the pods the dry run named."""

from __future__ import annotations

import asyncio
from typing import Any

from test_request_core_with_a_fake_clock import PODS, FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.runs import request


def test_a_dry_run_reports_the_targets_touches_nothing_and_is_handled_once(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    status = CacheServerStatus()
    preview = {"rolecall.dev/clear-dry-run-requested-at": "look-1"}
    asyncio.run(request.step(context(clock, annotations=preview, status=status), action(act)))
    assert acted == []
    plan = status.last_dry_run
    assert plan is not None and (plan.token, plan.targets, plan.pods) == ("look-1", 6, [p.name for p in PODS])
    assert status.last_request is None  # lastRequest is the real requests' (their backoff lives there)
    assert status.last_handled_clear_request is None and status.run is None
    assert status.history is not None and status.history[0].dry_run and status.history[0].outcome == "DryRun"
    assert world["events"][-1][:2] == ("Normal", "ClearDryRun") and "mc-0, mc-1" in world["events"][-1][2]
    asyncio.run(request.step(context(clock, annotations=preview, status=status), action(act)))
    assert len(status.history) == 1  # handled once
    real = {**preview, "rolecall.dev/clear-requested-at": "go"}
    asyncio.run(request.step(context(clock, annotations=real, status=status), action(act)))
    assert acted == plan.pods  # the real run touched exactly what the dry run named


def test_a_dry_run_that_cannot_plan_now_is_acknowledged_failed_not_a_crash(world: dict[str, Any]) -> None:  # noqa: F811
    clock = FakeClock()

    async def no_primary(ctx: Any) -> list[Target]:
        raise request.RequestFailed("NoPrimary", "none of the PostgreSQL pods is a primary")

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        raise AssertionError("a dry run acted")

    compact = request.Action(**{**action(act).__dict__, "resolve": no_primary})
    status = CacheServerStatus()
    preview = {"rolecall.dev/clear-dry-run-requested-at": "look-2"}
    asyncio.run(request.step(context(clock, annotations=preview, status=status), compact))
    assert status.history is not None and status.history[0].outcome == "Failed" and status.history[0].dry_run
    assert world["events"][-1][:2] == ("Warning", "NoPrimary")
