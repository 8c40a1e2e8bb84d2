"""A selector that matches no pod is not a job done: a request ends Failed with reason NoTargetPods and the
selector named, Degraded says so, with one Warning; a workload at 0 on purpose (stopped, an HPA holding it
there) keeps its meaning: nothing to act on, and nothing wrong."""

from __future__ import annotations

import asyncio
from typing import Any

from test_request_core_with_a_fake_clock import FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.roles.common import pods_matched
from rolecall.runs import request

TOKEN = "rolecall.dev/clear-requested-at"


def _nothing_matches(acted: list[str]) -> request.Action[None]:
    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    async def resolve(ctx: Any) -> list[Target]:
        return []

    return request.Action(**{**action(act).__dict__, "resolve": resolve})


def _condition(status: CacheServerStatus, type_: str) -> tuple[str, str, str]:
    c = next(c for c in status.conditions or [] if c.type == type_)
    return c.status, c.reason, c.message


def test_a_clear_on_a_selector_that_matches_nothing_fails_and_names_it(world: dict[str, Any]) -> None:  # noqa: F811
    ctx, acted = context(FakeClock(), {TOKEN: "t1"}), []
    asyncio.run(request.step(ctx, _nothing_matches(acted)))
    s = ctx.status
    assert acted == [] and s.run is None and s.last_handled_clear_request == "t1"
    assert s.last_request is not None and (s.last_request.outcome, s.last_request.reason) == ("Failed", "NoTargetPods")
    assert "no running pod matches spec.selector app=mc" in s.last_request.message
    status, reason, message = _condition(s, "Degraded")
    assert (status, reason) == ("True", "NoTargetPods") and "app=mc" in message
    assert [e[1] for e in world["events"] if e[0] == "Warning"] == ["NoTargetPods"]


def test_a_workload_at_zero_on_purpose_has_nothing_to_act_on_and_nothing_wrong(
        world: dict[str, Any]) -> None:  # noqa: F811
    status, acted = CacheServerStatus(replicas=0), []  # an HPA (or a stop) holds the workload at 0
    ctx = context(FakeClock(), {TOKEN: "t1"}, status=status)
    asyncio.run(request.step(ctx, _nothing_matches(acted)))
    assert status.last_request is not None and status.last_request.outcome == "Succeeded"
    assert _condition(status, "Degraded")[0] == "False"


def test_periodic_reads_flag_an_empty_selector_once_and_clear_it_when_pods_match(
        world: dict[str, Any]) -> None:  # noqa: F811
    ctx = context(FakeClock())
    assert pods_matched(ctx, 0) == "no running pod matches spec.selector app=mc"
    assert pods_matched(ctx, 0) is not None
    assert [n[1] for n in ctx.notices] == ["NoTargetPods"]  # one Warning, not one per read
    assert _condition(ctx.status, "Degraded")[:2] == ("True", "NoTargetPods")
    assert pods_matched(ctx, 2) is None
    assert _condition(ctx.status, "Degraded")[:2] == ("False", "Recovered")
    stopped = context(FakeClock(), status=CacheServerStatus(replicas=0))
    assert pods_matched(stopped, 0) is None and stopped.notices == []
