"""The Steps executor (a DatabaseMaintenance's) on the request core, with a fake clock and an in-memory target
that counts what was done to it: a run resumes from its ledger after a crash without repeating a finished step;
a cancel, the deadline or the leader fence stops it between two units of work; a failed step ends the run
there, with the steps after it not started; every end is acknowledged with its outcome and in history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_request_core_with_a_fake_clock import FakeClock, context, world  # noqa: F401

from rolecall import kube
from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION
from rolecall.leadership import NotLeader
from rolecall.runs import request
from rolecall.runs.context import Context, Memory
from rolecall.runs.step_executor import Steps

TOKEN = "rolecall.dev/clear-requested-at"


class Broken(Exception):
    """What the target answers for a step that cannot be done (a refused table)."""


@dataclass
class Target:
    """Step 0 and 2 compact (counted: a repeat shows), step 1 deletes `rows` one unit at a time."""

    rows: int = 4
    compactions: list[int] = field(default_factory=list)
    deleted: int = 0
    broken: int | None = None  # this step fails
    units: int = 0  # units started, to stop the world at a chosen one
    on_unit: Callable[[int], None] = lambda n: None


class Role:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.stopped: list[tuple[int, str]] = []
        self.outcomes: list[str] = []

    def summary(self, ctx: Context[Any, Any]) -> str:
        return "compact + purge + compact"

    def count(self, ctx: Context[Any, Any]) -> int:
        return 3

    def dry_run(self, ctx: Context[Any, Any]) -> bool:
        return False

    def begin(self, ctx: Context[Any, Any], run: Any) -> None:
        return None

    @asynccontextmanager
    async def open(self, ctx: Context[Any, Any], prepared: Any) -> AsyncIterator[Target]:
        yield self.target

    async def act(self, ctx: Context[Any, Any], t: Target, index: int, dry_run: bool,
                  checkpoint: Callable[[], Awaitable[object]], between_units: Callable[[], None]) -> None:
        if t.broken == index:
            raise Broken(f"step {index} refused by the target")
        if index != 1:
            t.compactions.append(index)
            return
        while t.deleted < t.rows:
            between_units()
            t.units += 1
            t.on_unit(t.units)
            t.deleted += 1  # committed before its checkpoint: a resume goes on from what the target says
            await checkpoint()

    def failure(self, e: Exception) -> str | None:
        return str(e) if isinstance(e, Broken) else None

    def stop_step(self, ctx: Context[Any, Any], index: int, outcome: str, message: str) -> None:
        self.stopped.append((index, outcome))

    def settle(self, ctx: Context[Any, Any], run: Any, outcome: str) -> str:
        self.outcomes.append(outcome)
        return f"{self.target.deleted} rows deleted"

    async def reported(self, ctx: Context[Any, Any], run: Any, outcome: str) -> None:
        return None

    def figures(self, ctx: Context[Any, Any]) -> dict[str, int | None]:
        return {"rows_deleted": self.target.deleted}


def _action(role: Role) -> request.Action[None]:
    return request.Action(name="clear", condition="Cleared", busy="Clearing", done="Cleared", noun="cache clear",
                          token_annotation=TOKEN, handled_field="last_handled_clear_request", after_field=None,
                          completed_field=None, executor=Steps(role), timeout_field="request_timeout_seconds")


def _step(ctx: Context[Any, Any], role: Role) -> None:
    asyncio.run(request.step(ctx, _action(role)))


def test_a_crash_mid_step_resumes_from_the_ledger_without_repeating_a_finished_step(
        world: dict[str, Any]) -> None:  # noqa: F811
    clock, target = FakeClock(), Target()
    writes = world["writes"]
    writes.fail_after = 3  # the ledger, step 0's end, one checkpoint: the write after the 2nd unit is lost
    with pytest.raises(kube.Unavailable):
        _step(context(clock, {TOKEN: "t1"}), Role(target))
    assert (target.compactions, target.deleted) == ([0], 2)
    last = CacheServerStatus.model_validate(writes.statuses[-1])
    assert last.run is not None and last.run.pending == ["1", "2"]  # step 0 finished and on record

    writes.fail_after = None
    role = Role(target)
    ctx = context(clock, {TOKEN: "t1"}, status=last)
    _step(ctx, role)
    assert (target.compactions, target.deleted) == ([0, 2], 4)  # step 0 not repeated, step 1 went on
    s = ctx.status
    assert s.run is None and s.last_handled_clear_request == "t1" and role.outcomes == ["Succeeded"]
    assert s.last_request is not None and (s.last_request.outcome, s.last_request.done) == ("Succeeded", 3)
    (entry,) = s.history or []
    assert (entry.outcome, entry.rows_deleted, entry.targets, entry.done) == ("Succeeded", 4, 3, 3)
    assert "RunResumed" not in [e[1] for e in world["events"]]  # the same process (identity) went on


def test_a_cancel_stops_between_units_and_names_the_step_it_ended(world: dict[str, Any]) -> None:  # noqa: F811
    clock, memory = FakeClock(), Memory()
    target = Target(rows=10)
    ctx = context(clock, {TOKEN: "t1"}, memory=memory)
    target.on_unit = lambda n: memory.annotations.update({CANCEL_ANNOTATION: "t1"}) if n == 3 else None
    memory.annotations = {TOKEN: "t1"}
    role = Role(target)
    _step(ctx, role)
    assert target.deleted == 3 and target.compactions == [0]  # the unit in flight finished; nothing after it
    assert role.stopped == [(1, "Cancelled")] and role.outcomes == ["Cancelled"]
    assert ctx.status.last_request is not None and ctx.status.last_request.outcome == "Cancelled"
    assert ctx.status.run is None


def test_the_deadline_stops_between_units(world: dict[str, Any]) -> None:  # noqa: F811
    clock, target = FakeClock(), Target(rows=10)
    target.on_unit = lambda n: clock.advance(4)
    role = Role(target)
    ctx = context(clock, {TOKEN: "t1"}, requestTimeoutSeconds=10)
    _step(ctx, role)
    assert target.deleted == 3  # 12 s after acceptance the 4th unit does not start
    assert ctx.status.last_request is not None and ctx.status.last_request.outcome == "TimedOut"
    assert "requestTimeoutSeconds ran out" in ctx.status.last_request.message
    assert role.stopped == [(1, "TimedOut")]


def test_a_process_that_may_no_longer_lead_starts_no_unit_and_the_next_leader_finishes(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    clock, target, leading = FakeClock(), Target(rows=6), [True]

    def guard() -> None:
        if not leading[0]:
            raise NotLeader("past the renew deadline")

    monkeypatch.setattr(kube, "check_write_guard", guard)
    target.on_unit = lambda n: leading.__setitem__(0, n < 2)
    with pytest.raises(NotLeader):
        _step(context(clock, {TOKEN: "t1"}), Role(target))
    assert target.deleted == 2  # the unit in flight when the lease ran out finished; none started after it
    last = CacheServerStatus.model_validate(world["writes"].statuses[-1])
    leading[0], target.on_unit = True, lambda n: None
    ctx = context(clock, {TOKEN: "t1"}, status=last)
    ctx.identity = "standby"
    _step(ctx, Role(target))
    assert (target.compactions, target.deleted) == ([0, 2], 6)
    assert "RunResumed" in [e[1] for e in world["events"]]
    assert ctx.status.last_request is not None and ctx.status.last_request.outcome == "Succeeded"


def test_a_failed_step_ends_the_run_there_and_later_steps_never_start(world: dict[str, Any]) -> None:  # noqa: F811
    clock, target = FakeClock(), Target(broken=1)
    role = Role(target)
    ctx = context(clock, {TOKEN: "t1"})
    _step(ctx, role)
    assert target.compactions == [0] and target.deleted == 0  # step 2 never started
    assert role.stopped == [(1, "Failed")]
    s = ctx.status
    assert s.run is None and s.last_request is not None
    assert (s.last_request.outcome, s.last_request.reason, s.last_request.failed) == ("Failed", "OperationFailed", 1)
    assert "step 1 refused by the target" in s.last_request.message
    _step(context(clock, {TOKEN: "t1"}, status=s), role)  # acknowledged: the same token does not run again
    assert target.compactions == [0]


def test_a_dry_run_annotation_is_answered_once_and_acts_on_nothing(world: dict[str, Any]) -> None:  # noqa: F811
    clock, target = FakeClock(), Target()
    ask = {"rolecall.dev/clear-dry-run-requested-at": "d1"}
    ctx = context(clock, ask)
    _step(ctx, Role(target))
    _step(context(clock, ask, status=ctx.status), Role(target))
    assert (target.compactions, target.deleted) == ([], 0)
    assert [e[1] for e in world["events"]] == ["DryRunNotSupported"]  # answered once, not at every reconcile


def test_a_failure_after_the_run_ended_cannot_make_it_run_again(world: dict[str, Any]) -> None:  # noqa: F811
    clock, target = FakeClock(), Target()

    class Unreported(Role):
        async def reported(self, ctx: Context[Any, Any], run: Any, outcome: str) -> None:
            raise kube.Unavailable("apiserver gone while copying the results elsewhere")

    ctx = context(clock, {TOKEN: "t1"})
    with pytest.raises(kube.Unavailable):
        _step(ctx, Unreported(target))
    s = ctx.status  # what the error boundary writes next
    assert s.run is None and s.last_handled_clear_request == "t1"
    assert s.last_request is not None and s.last_request.outcome == "Succeeded"
    _step(context(clock, {TOKEN: "t1"}, status=s), Role(target))
    assert (target.compactions, target.deleted) == ([0, 2], 4)  # not run a second time
