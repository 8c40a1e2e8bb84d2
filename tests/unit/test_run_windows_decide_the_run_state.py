"""Hibernation decisions (pure, fixed times): spec.stopped beats an override, an override beats the windows, the
windows decide otherwise; days sugar and cron + duration windows, time zones, midnight wraps, and `until`."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from rolecall.api.schedule import days_window, duration_seconds
from rolecall.api.v1alpha1.common import RunWindows
from rolecall.runs.windows import decide

UTC = dt.UTC
WEEKDAYS = RunWindows.model_validate({"timeZone": "Europe/Berlin", "windows": [{"days": "Mon-Fri 07:00-20:00"}]})
THU_NOON = dt.datetime(2026, 11, 26, 11, 0, tzinfo=UTC)  # Thursday 12:00 in Berlin
THU_NIGHT = dt.datetime(2026, 11, 26, 21, 0, tzinfo=UTC)  # Thursday 22:00 in Berlin
RUN, STOP = "rolecall.dev/keep-running-until", "rolecall.dev/keep-stopped-until"


def test_days_windows_in_their_time_zone() -> None:
    inside = decide(False, WEEKDAYS, {}, THU_NOON)
    assert (inside.desired, inside.decided_by, inside.until) == ("Running", "Window", "2026-11-26T19:00:00.000000Z")
    outside = decide(False, WEEKDAYS, {}, THU_NIGHT)
    assert (outside.desired, outside.until) == ("Stopped", "2026-11-27T06:00:00.000000Z")  # Friday 07:00 Berlin
    saturday = decide(False, WEEKDAYS, {}, dt.datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert saturday.desired == "Stopped" and saturday.until == "2026-11-30T06:00:00.000000Z"  # Monday


def test_cron_and_duration_windows_and_midnight_wraps() -> None:
    seconds = RunWindows.model_validate({"windows": [{"cron": "* * * * * */20", "duration": "10s"}]})
    t = dt.datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
    assert decide(False, seconds, {}, t).desired == "Running"
    assert decide(False, seconds, {}, t + dt.timedelta(seconds=6)).desired == "Stopped"
    night = RunWindows.model_validate({"windows": [{"days": "* 22:00-06:00"}]})
    assert decide(False, night, {}, dt.datetime(2026, 11, 26, 3, tzinfo=UTC)).desired == "Running"
    assert days_window("* 22:00-06:00") == ("0 22 * * *", 8 * 3600) and duration_seconds("1h30m") == 5400


def test_precedence_spec_then_override_then_windows() -> None:
    later = {RUN: "2026-11-27T08:00:00Z"}
    kept = decide(False, WEEKDAYS, later, THU_NIGHT)
    assert (kept.desired, kept.decided_by, kept.until) == ("Running", "Override", "2026-11-27T08:00:00.000000Z")
    assert decide(True, WEEKDAYS, later, THU_NIGHT).decided_by == "Spec"  # stopped: true always wins
    held = decide(False, WEEKDAYS, {STOP: "2026-11-26T18:00:00Z"}, THU_NOON)
    assert (held.desired, held.decided_by) == ("Stopped", "Override")
    expired = decide(False, WEEKDAYS, {RUN: "2026-11-26T20:00:00Z"}, THU_NIGHT)
    assert (expired.desired, expired.decided_by) == ("Stopped", "Window") and "expired" in expired.reason
    junk = decide(False, None, {RUN: "tomorrow"}, THU_NIGHT)
    assert junk.decided_by == "Default" and "not an RFC 3339 time" in junk.reason
    both = decide(False, WEEKDAYS, {RUN: "2026-11-27T08:00:00Z", STOP: "2026-11-27T08:00:00Z"}, THU_NOON)
    assert both.desired == "Running"  # keep-running-until wins when both are set


def test_window_values_are_refused_readably() -> None:
    for bad in ({"days": "Mon-Fry 07:00-20:00"}, {"days": "Mon-Fri 7-20"}, {"cron": "0 7 * * *", "duration": "0s"},
                {"cron": "0 7 * * *", "duration": "soon"}):
        with pytest.raises(ValidationError, match="must be"):
            RunWindows.model_validate({"windows": [bad]})


def test_a_local_range_keeps_its_wall_clock_end_across_dst_and_a_window_that_never_opens() -> None:
    night = RunWindows.model_validate({"timeZone": "Europe/Berlin", "windows": [{"days": "* 22:00-06:00"}]})
    # The night of 28-29 March 2026 has no 02:00-03:00 in Berlin: 22:00 CET to 06:00 CEST is 7 hours.
    inside = decide(False, night, {}, dt.datetime(2026, 3, 29, 3, 0, tzinfo=UTC))
    assert inside.desired == "Running" and inside.until == "2026-03-29T04:00:00.000000Z"  # 06:00 CEST
    never = RunWindows.model_validate({"windows": [{"cron": "0 0 30 2 *", "duration": "1h"}]})
    state = decide(False, never, {}, THU_NOON)
    assert (state.desired, state.until, state.reason) == ("Stopped", None, "no run window ever opens")
    with pytest.raises(ValidationError, match="24:00 only as an end"):
        RunWindows.model_validate({"windows": [{"days": "* 24:00-06:00"}]})
    with pytest.raises(ValidationError, match="either days"):
        RunWindows.model_validate({"windows": [{"cron": "0 7 * * *"}]})
