"""Schedules, start windows and run windows on daylight-saving days (runs/calendar.py, the one implementation):
a job at a fixed time runs once per local day (a skipped time right after the jump, a repeated one at its first
occurrence), a job with `*` in its minute or hour field runs at each matching wall-clock time as it passes, and
a local time range covers its stated local times (ambiguous start: the earliest occurrence, ambiguous end: the
latest). The cron part is checked against cronsim (Debian cron's rules) in zones shifting by whole hours in
both hemispheres; Lord Howe's 30-minute shift is checked by hand where cronsim differs from those rules."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from typing import Any

import pytest
from cronsim import CronSim
from test_request_core_with_a_fake_clock import PODS, T0, FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.api.v1alpha1.common import RunWindows
from rolecall.runs import calendar, request, windows

UTC = dt.UTC
JOBS = ["30 2 * * *", "0 2 * * *", "30 1 * * *", "0,30 2 * * *", "45 2 * * *", "15 2-3 * * *", "59 1 * * *",
        "0 3 * * *", "30 2 * * 0", "0 0 * * *", "30 * * * *", "*/15 2 * * *", "0 */2 * * *", "* 2 * * *"]
WHOLE_HOUR_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago"]


def _transitions(zone: str, year: int) -> list[dt.datetime]:
    """The UTC hours in which the zone's offset changes during `year`."""
    tz, found = zoneinfo.ZoneInfo(zone), []
    t = dt.datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        later = t + dt.timedelta(hours=1)
        if later.astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset():
            found.append(later)
        t = later
    return found


def _ours(cron: str, zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    got = []
    for slot in calendar.slots(cron, zone, start):
        if slot > end:
            return got
        got.append(slot)
    return got


def _cronsim(cron: str, zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    got = []
    for slot in CronSim(cron, start.astimezone(zoneinfo.ZoneInfo(zone))):
        if slot.astimezone(UTC) > end:
            return got
        got.append(slot.astimezone(UTC))
    return got


@pytest.mark.parametrize("zone", WHOLE_HOUR_ZONES)
def test_slots_on_both_transition_days_agree_with_cronsim(zone: str) -> None:
    changes = _transitions(zone, 2026)
    assert len(changes) == 2, changes
    for change in changes:
        start, end = change - dt.timedelta(days=1), change + dt.timedelta(days=2)
        for cron in JOBS:
            assert _ours(cron, zone, start, end) == _cronsim(cron, zone, start, end), (zone, change, cron)


def test_a_daily_job_in_the_repeated_hour_runs_once_and_an_hourly_one_every_elapsed_hour() -> None:
    # The reproduction: the 00:30Z slot (02:30 CEST) was handled; 02:30 CET an hour later is not due.
    found = calendar.due("30 2 * * *", "Europe/Berlin", dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                         dt.datetime(2026, 10, 25, 1, 31, tzinfo=UTC))
    assert (found.slot, found.next) == (None, dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC))
    night = (dt.datetime(2026, 10, 31, 23, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))
    assert _ours("30 1 * * *", "America/New_York", *night) == [dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]
    hourly = _ours("30 * * * *", "Europe/Berlin", dt.datetime(2026, 10, 24, 23, tzinfo=UTC),
                   dt.datetime(2026, 10, 25, 3, tzinfo=UTC))
    assert [s.hour for s in hourly] == [23, 0, 1, 2]  # 01:30, 02:30 CEST, 02:30 CET, 03:30 CET: every hour
    spring = _ours("30 2 * * *", "Europe/Berlin", dt.datetime(2026, 3, 28, 23, tzinfo=UTC),
                   dt.datetime(2026, 3, 29, 23, tzinfo=UTC))
    assert spring == [dt.datetime(2026, 3, 29, 1, tzinfo=UTC)]  # 02:30 does not exist: once, at the jump


def test_lord_howe_shifts_half_an_hour_and_each_wall_clock_time_that_passes_runs_once_per_pass() -> None:
    zone = "Australia/Lord_Howe"  # autumn: 02:00 +11 becomes 01:30 +10:30 (15:00Z); spring: 02:00 becomes 02:30
    autumn = (dt.datetime(2026, 4, 4, 12, tzinfo=UTC), dt.datetime(2026, 4, 4, 18, tzinfo=UTC))
    assert _ours("45 1 * * *", zone, *autumn) == [dt.datetime(2026, 4, 4, 14, 45, tzinfo=UTC)]  # first 01:45 only
    assert _ours("45 1 * * *", zone, *autumn) == _cronsim("45 1 * * *", zone, *autumn)
    quarter = [s.strftime("%H:%M") for s in _ours("*/15 2 * * *", zone, *autumn)]
    assert quarter == ["15:30", "15:45", "16:00", "16:15"]  # 02:00-02:45 +10:30, each passes once
    spring = (dt.datetime(2026, 10, 3, 12, tzinfo=UTC), dt.datetime(2026, 10, 3, 18, tzinfo=UTC))
    assert _ours("15 2 * * *", zone, *spring) == [dt.datetime(2026, 10, 3, 15, 30, tzinfo=UTC)]  # at the jump
    assert _ours("15 2 * * *", zone, *spring) == _cronsim("15 2 * * *", zone, *spring)


def test_a_scheduled_clear_runs_once_in_the_night_the_clocks_go_back(world: dict[str, Any]) -> None:  # noqa: F811
    clock, acted = FakeClock(), []
    clock.t = (dt.datetime(2026, 10, 24, 23, 0, tzinfo=UTC) - T0).total_seconds()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "flush_all: OK"

    clear = request.Action(**{**action(act).__dict__, "schedule_field": "clear_schedule"})
    status, schedule = CacheServerStatus(), {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}
    for _ in range(4 * 5):  # every 15 minutes from 23:00Z to 04:00Z (01:00 CEST to 05:00 CET)
        asyncio.run(request.step(context(clock, status=status, clearSchedule=schedule), clear))
        clock.advance(15 * 60)
    assert len(acted) == len(PODS)  # one clear of every pod, at 00:30Z (02:30 CEST), not again at 02:30 CET
    assert [h.scheduled_at for h in status.history or []] == ["2026-10-25T00:30:00.000000Z"]


def _open_spans(spec: dict[str, Any], start: dt.datetime, end: dt.datetime) -> list[tuple[str, str]]:
    """(from, to) in UTC of the spans decide() says Running, sampled every 5 minutes."""
    windows_ = RunWindows.model_validate(spec)
    spans: list[list[dt.datetime]] = []
    t = start
    while t <= end:
        if windows.decide(False, windows_, {}, t).desired == "Running":
            if spans and spans[-1][1] == t - dt.timedelta(minutes=5):
                spans[-1][1] = t
            else:
                spans.append([t, t])
        t += dt.timedelta(minutes=5)
    return [(a.strftime("%H:%M"), (b + dt.timedelta(minutes=5)).strftime("%H:%M")) for a, b in spans]


@pytest.mark.parametrize(("spec", "day", "spans"), [
    # autumn, Berlin: 02:30 first occurs at 00:30Z, 03:30 CET is 02:30Z: one span of two hours
    ({"timeZone": "Europe/Berlin", "windows": [{"days": "* 02:30-03:30"}]}, (2026, 10, 24), [("00:30", "02:30")]),
    # a cron and a duration: the slot's rule (first occurrence) and elapsed time; no second opening at 01:30Z
    ({"timeZone": "Europe/Berlin", "windows": [{"cron": "30 2 * * *", "duration": "1h"}]}, (2026, 10, 24),
     [("00:30", "01:30")]),
    # spring, Berlin: 02:30 is skipped: open from the jump (03:00 CEST) to 03:30 CEST, not to 04:00
    ({"timeZone": "Europe/Berlin", "windows": [{"days": "* 02:30-03:30"}]}, (2026, 3, 28), [("01:00", "01:30")]),
    # autumn, New York: 01:30 EDT (05:30Z) to 02:30 EST (07:30Z)
    ({"timeZone": "America/New_York", "windows": [{"days": "* 01:30-02:30"}]}, (2026, 10, 31), [("05:30", "07:30")]),
    # autumn, Sydney (April): 02:30 AEDT (15:30Z) to 03:30 AEST (17:30Z)
    ({"timeZone": "Australia/Sydney", "windows": [{"days": "* 02:30-03:30"}]}, (2026, 4, 4), [("15:30", "17:30")]),
])
def test_a_run_window_covers_its_stated_local_times_on_a_dst_night(
        spec: dict[str, Any], day: tuple[int, int, int], spans: list[tuple[str, str]]) -> None:
    start = dt.datetime(*day, 12, tzinfo=UTC)
    assert _open_spans(spec, start, start + dt.timedelta(hours=23, minutes=55)) == spans


def test_a_start_window_opens_at_the_jump_when_its_start_is_skipped() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    before = dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC).astimezone(berlin)  # 01:30 CET
    assert calendar.window_opens("02:30-03:30", before) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert calendar.window_opens("02:30-03:30", dt.datetime(2026, 3, 29, 1, 10, tzinfo=UTC).astimezone(berlin)) \
        is None  # 03:10 CEST: inside
    repeated = dt.datetime(2026, 10, 25, 1, 10, tzinfo=UTC).astimezone(berlin)  # 02:10 CET, the second pass
    assert calendar.window_opens("02:00-03:00", repeated) is None


@pytest.mark.parametrize("zone", [*WHOLE_HOUR_ZONES, "Australia/Lord_Howe"])
def test_the_latest_slot_before_a_time_is_the_last_one_walked_forward(zone: str) -> None:
    for change in _transitions(zone, 2026):
        start = change - dt.timedelta(days=8)  # a weekly job's previous slot is in there too
        for cron in JOBS:
            walked = _ours(cron, zone, start, change + dt.timedelta(days=1))
            for t in (change + dt.timedelta(minutes=m) for m in range(-90, 150, 7)):
                expected = max((s for s in walked if s <= t), default=None)
                assert calendar.slot_before(cron, zone, t) == expected, (zone, cron, t)


def test_a_weekday_seconds_schedule_missed_over_a_weekend_finds_its_latest_slot() -> None:
    friday, monday = dt.datetime(2026, 12, 4, 12, tzinfo=UTC), dt.datetime(2026, 12, 7, 6, tzinfo=UTC)
    found = calendar.due("* 9-17 * * 1-5 */10", "Europe/Berlin", friday, monday)  # over 1,000 slots missed
    assert found.slot == dt.datetime(2026, 12, 4, 16, 59, 50, tzinfo=UTC) and found.missed == calendar.MAX_COUNTED - 1
    assert found.next == dt.datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # Monday 09:00 CET


def test_a_start_window_covers_both_passes_of_a_repeated_hour() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    for minute in (20, 35, 70, 100, 130):  # 00:20Z (before) ... 02:10Z: 02:30 CEST first occurs at 00:30Z
        t = dt.datetime(2026, 10, 25, 0, tzinfo=UTC) + dt.timedelta(minutes=minute)
        opens = calendar.window_opens("02:30-03:30", t.astimezone(berlin))
        assert opens == (dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC) if minute < 30 else None), (t, opens)
    after = dt.datetime(2026, 10, 25, 2, 40, tzinfo=UTC).astimezone(berlin)  # 03:40 CET: the next day's 02:30
    assert calendar.window_opens("02:30-03:30", after) == dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
