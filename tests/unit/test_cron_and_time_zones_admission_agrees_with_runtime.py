"""What admission lets through, the operator can use: every schedule the CRD's cron pattern admits is read by
croniter (hypothesis draws them from the pattern itself), and the time zones it lists are the ones the
operator loads."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import zoneinfo

from croniter import CroniterBadDateError, croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from rolecall.api import schedule

CRON = re.compile(schedule.CRON_PATTERN.removeprefix("(?i)"), re.IGNORECASE)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.from_regex(CRON, fullmatch=True))
def test_every_admitted_schedule_is_read_by_croniter(expr: str) -> None:
    # A valid schedule may name no time that exists (30 February): the operator says ScheduleNeverFires.
    with contextlib.suppress(CroniterBadDateError):
        croniter(expr, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).get_next(dt.datetime)


def test_the_observed_bad_schedules_are_refused() -> None:
    for bad in ("61 * * * *", "0 3 * * 9", "*/0 * * * *", "0 24 * * *", "0 3 0 * *", "0 3 * 13 *", "0 3 * *",
                "@daily", "0 3 * * * 60"):
        assert not CRON.match(bad), bad
    for good in ("0 3 * * *", "*/15 9-17 * * mon-fri", "0 0 1,15 jan,JUL *", "30 2 * * 0 15"):
        assert CRON.match(good), good


def test_every_listed_time_zone_loads_from_the_tzdata_package() -> None:
    zoneinfo.reset_tzpath(to=[])  # as the operator does: the package only
    try:
        for name in schedule.TIME_ZONES:
            zoneinfo.ZoneInfo(name)
    finally:
        zoneinfo.reset_tzpath()
    assert "UTC" in schedule.TIME_ZONES and "Europe/Berlin" in schedule.TIME_ZONES
