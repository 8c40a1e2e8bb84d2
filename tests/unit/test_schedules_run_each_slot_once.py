"""Scheduled requests on the request core (fake clock): each slot is one request, acknowledged into
status.schedules and status.history; slots missed while the operator was away run once (the latest), a
starting deadline or a suspend skips them, and slots before the schedule was first seen never run."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from test_request_core_with_a_fake_clock import PODS, FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.runs import calendar, request

UTC = dt.UTC
EVERY_10S = "* * * * * */10"


def test_the_latest_slot_is_due_and_earlier_ones_are_counted_missed() -> None:
    now = dt.datetime(2026, 11, 26, 10, 0, 7, tzinfo=UTC)
    found = calendar.due("* * * * * */5", None, now - dt.timedelta(seconds=30), now)
    assert (found.slot, found.missed, found.next) == (now.replace(second=5), 5, now.replace(second=10))
    assert calendar.due("* * * * * */5", None, now.replace(second=5), now).slot is None
    # 03:00 in Berlin is 02:00 UTC in winter; three days of outage: the latest runs, two are missed
    berlin = calendar.due("0 3 * * *", "Europe/Berlin", now - dt.timedelta(days=3), now)
    assert (berlin.slot, berlin.missed) == (dt.datetime(2026, 11, 26, 2, 0, tzinfo=UTC), 2)
    summer = calendar.due("0 3 * * *", "Europe/Berlin", dt.datetime(2026, 7, 1, tzinfo=UTC),
                          dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert summer.slot == dt.datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # CEST: UTC+2


def _scheduled(act: Any) -> request.Action[None]:
    base = action(act)
    return request.Action(**{**base.__dict__, "schedule_field": "clear_schedule"})


def test_each_slot_is_one_request_in_history_and_the_next_slot_waits(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "flush_all: OK"

    status = CacheServerStatus()
    schedule = {"cron": EVERY_10S}
    ctx = context(clock, status=status, clearSchedule=schedule)
    asyncio.run(request.step(ctx, _scheduled(act)))
    assert acted == []  # slots before the schedule was first seen never run
    (entry,) = status.schedules or []
    assert entry.since and entry.next_schedule_time and min(ctx.delays) <= 10  # woken at the next slot

    clock.advance(1)  # 04:37:30.1: the first slot passed
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    assert acted == [p.name for p in PODS]
    slot = status.schedules[0].last_schedule_time
    assert status.last_request is not None and status.last_request.outcome == "Succeeded"
    assert status.last_request.scheduled_at == slot and status.last_request.token is None
    assert status.last_handled_clear_request is None  # a slot never touches the token's echo
    (run,) = status.history or []
    assert (run.trigger, run.scheduled_at, run.done, run.outcome) == ("Schedule", slot, len(PODS), "Succeeded")

    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    assert len(acted) == len(PODS)  # the same slot again: nothing

    clock.advance(45)  # the operator was away for 4 slots: the latest runs once, 3 are missed
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    assert len(acted) == 2 * len(PODS) and status.schedules[0].missed == 3 and len(status.history or []) == 2


def test_suspend_and_the_starting_deadline_skip_slots(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    status = CacheServerStatus()
    asyncio.run(request.step(context(clock, status=status, clearSchedule={"cron": EVERY_10S}), _scheduled(act)))
    clock.advance(21)  # 04:37:50.1: the slots :30, :40, :50 passed while suspended
    suspended = {"cron": EVERY_10S, "suspend": True}
    asyncio.run(request.step(context(clock, status=status, clearSchedule=suspended), _scheduled(act)))
    assert acted == [] and status.schedules[0].suspended and status.schedules[0].missed == 3
    clock.advance(15)  # 04:38:05.1: the :00 slot is 5 s old when seen, past a 1 s starting deadline
    late = {"cron": EVERY_10S, "startingDeadlineSeconds": 1}
    asyncio.run(request.step(context(clock, status=status, clearSchedule=late), _scheduled(act)))
    assert acted == [] and status.schedules[0].missed == 4 and not status.schedules[0].suspended
    clock.advance(5.1)  # 04:38:10.2: just after the :10 slot, inside the deadline
    asyncio.run(request.step(context(clock, status=status, clearSchedule=late), _scheduled(act)))
    assert acted == [p.name for p in PODS]



def test_a_token_and_a_slot_due_together_run_one_after_the_other_and_missed_is_exact(
        world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    status, schedule = CacheServerStatus(), {"cron": EVERY_10S}
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    clock.advance(31)  # 04:38:00.1: slots :30, :40, :50, :00 passed; the token arrives too
    token = {"rolecall.dev/clear-requested-at": "t1"}
    first = context(clock, annotations=token, status=status, clearSchedule=schedule)
    asyncio.run(request.step(first, _scheduled(act)))
    assert status.last_request is not None and status.last_request.token == "t1" and min(first.delays) <= 0.5
    for _ in range(3):  # the slot, then nothing more however often it is reconciled
        asyncio.run(request.step(context(clock, annotations=token, status=status, clearSchedule=schedule),
                                 _scheduled(act)))
    assert len(acted) == 2 * len(PODS)
    assert status.schedules is not None and status.schedules[0].missed == 3  # :30, :40, :50; :00 ran


def test_a_slot_due_outside_the_start_window_waits_for_it_and_the_latest_runs_once(
        world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    status = CacheServerStatus()
    schedule = {"cron": EVERY_10S, "startWindow": "04:38-05:00"}  # T0 is 04:37:29 UTC
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    clock.advance(1)  # the 04:37:30 slot is due, the window opens at 04:38
    ctx = context(clock, status=status, clearSchedule=schedule)
    asyncio.run(request.step(ctx, _scheduled(act)))
    assert acted == [] and status.run is None and status.last_request is None
    entry = (status.schedules or [])[0]
    assert entry.waits_for_window is not None and entry.waits_for_window.startswith("2026-11-26T04:38:00.")
    held = next(c for c in status.conditions or [] if c.type == "Cleared")
    assert held.reason == "OutsideStartWindow" and "04:38-05:00 (UTC)" in held.message
    assert min(ctx.delays) <= 29.9 + 0.01
    clock.advance(31)  # 04:38:01: inside; of 04:37:30, :40, :50 and 04:38:00 only the latest runs
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    assert len(acted) == len(PODS) and status.last_request is not None
    assert (status.last_request.scheduled_at or "").startswith("2026-11-26T04:38:00.")
    assert entry.missed == 3 and entry.waits_for_window is None


def test_a_dry_run_schedule_reports_each_slot_and_touches_nothing(world: dict[str, Any]) -> None:  # noqa: F811
    clock = FakeClock()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        raise AssertionError("a dry-run schedule acted")

    status = CacheServerStatus()
    schedule = {"cron": EVERY_10S, "dryRun": True}
    asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
    for _ in range(2):
        clock.advance(10)
        asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))
        asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), _scheduled(act)))  # again
    history = status.history or []
    assert [(h.trigger, h.outcome, h.dry_run) for h in history] == [("Schedule", "DryRun", True)] * 2
    assert status.last_dry_run is not None and status.last_dry_run.token == f"schedule@{history[0].scheduled_at}"
    assert status.last_dry_run.targets == len(PODS) and status.last_request is None and status.run is None
    assert (status.schedules or [])[0].last_schedule_time == history[0].scheduled_at


def test_history_keeps_history_limit_entries(world: dict[str, Any]) -> None:  # noqa: F811
    clock = FakeClock()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        return "OK"

    status = CacheServerStatus()
    for token in ("t1", "t2", "t3"):
        clock.advance(1)  # history tells requests apart by when they were accepted
        ctx = context(clock, {"rolecall.dev/clear-requested-at": token}, status=status, historyLimit=2)
        asyncio.run(request.step(ctx, action(act)))
    assert [h.token for h in status.history or []] == ["t3", "t2"]


def test_a_schedule_that_never_fires_is_stalled_with_its_reason(world: dict[str, Any]) -> None:  # noqa: F811
    clock = FakeClock()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        return "OK"

    ctx = context(clock, clearSchedule={"cron": "0 0 30 2 *"})
    asyncio.run(request.step(ctx, _scheduled(act)))
    assert ctx.stalled is not None and ctx.stalled[0] == "ScheduleNeverFires" and "30 February" in ctx.stalled[1]
