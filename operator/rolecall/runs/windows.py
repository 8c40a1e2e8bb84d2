"""Hibernation: should the role be running now, which rule says so, and until when.

Precedence, fixed: `spec.stopped: true` > an unexpired override annotation (keep-running-until beats
keep-stopped-until when both are set) > runWindows > running. Pure (a fake clock drives the unit tests); the
caller acts on `RunState.desired` through the one stop/start path and wakes at `until`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import CroniterBadDateError, croniter

from rolecall.api.schedule import days_window, duration_seconds
from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import OVERRIDE_RUNNING, OVERRIDE_STOPPED, RunState, RunWindow, RunWindows
from rolecall.runs import calendar


def _cron_and_length(window: RunWindow) -> tuple[str, int]:
    """When the window opens (a cron) and for how many seconds."""
    if window.days:
        return days_window(window.days)
    assert window.cron and window.duration  # the model's validator guarantees one form
    return window.cron, duration_seconds(window.duration)


def _local_span(window: RunWindow, zone: zoneinfo.ZoneInfo, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """A `days` window's opening on local date `day` (None: not one of its days): it covers its stated local
    times, so a DST night makes it an hour shorter or longer (runs/calendar.instant)."""
    cron, seconds = _cron_and_length(window)
    minute, hour = (int(f) for f in cron.split()[:2])
    start = dt.datetime.combine(day, dt.time(hour, minute))
    if not croniter.match(cron, start):
        return None
    return calendar.instant(start, zone), calendar.instant(start + dt.timedelta(seconds=seconds), zone, latest=True)


def _open_span(window: RunWindow, zone: zoneinfo.ZoneInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of the window's latest opening at or before now (end may be in the past)."""
    if window.days:
        today = now.astimezone(zone).date()
        for back in range(9):
            span = _local_span(window, zone, today - dt.timedelta(days=back))
            if span is not None and span[0] <= now:
                return span
        raise CroniterBadDateError(f"{window.days!r} opened on no day of the last week")
    cron, seconds = _cron_and_length(window)  # a cron's slot (the schedules' DST rules) and elapsed time
    start = calendar.slot_before(cron, zone.key, now)
    if start is None:
        raise CroniterBadDateError(f"{cron!r} opened at no time in the last eight years")
    return start, start + dt.timedelta(seconds=seconds)


def _next_start(window: RunWindow, zone: zoneinfo.ZoneInfo, now: dt.datetime) -> dt.datetime:
    if window.days:
        today = now.astimezone(zone).date()
        for ahead in range(9):
            span = _local_span(window, zone, today + dt.timedelta(days=ahead))
            if span is not None and span[0] > now:
                return span[0]
        raise CroniterBadDateError(f"{window.days!r} opens on no day of the next week")
    return next(calendar.slots(_cron_and_length(window)[0], zone.key, now))


def in_windows(windows: RunWindows, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
    """(open now, when that changes): the latest end of the windows open now, else the earliest next start
    (None: no window ever opens, e.g. a cron for 30 February, which admission cannot know)."""
    zone = zoneinfo.ZoneInfo(windows.time_zone or "UTC")
    ends, starts = [], []
    for w in windows.windows:
        try:
            start, end = _open_span(w, zone, now)
            starts.append(_next_start(w, zone, now))
        except CroniterBadDateError:
            continue  # this window never opens
        if start <= now < end:
            ends.append(end)
    if ends:
        return True, max(ends)
    return False, min(starts, default=None)


def _override(annotations: dict[str, str], key: str, now: dt.datetime) -> tuple[dt.datetime | None, str | None]:
    """(until, problem) of an override annotation: until only when it is a time still in the future."""
    value = annotations.get(key)
    if value is None:
        return None, None
    try:
        until = parse_time(value)
    except ValueError:
        return None, f"{key}={value!r} is ignored: not an RFC 3339 time"
    return (until, None) if until > now else (None, f"{key} expired at {value}")


def decide(stopped: bool, windows: RunWindows | None, annotations: dict[str, str], now: dt.datetime) -> RunState:
    if stopped:
        return RunState(desired="Stopped", decided_by="Spec", reason="spec.stopped is true (it beats windows and "
                                                                     "overrides)")
    notes = []
    for key, desired in ((OVERRIDE_RUNNING, "Running"), (OVERRIDE_STOPPED, "Stopped")):
        until, problem = _override(annotations, key, now)
        if problem:
            notes.append(problem)
        if until is not None:
            return RunState(desired=desired, decided_by="Override", until=format_time(until),
                            reason=f"{key} until {format_time(until)}" + "".join(f"; {n}" for n in notes))
    suffix = "".join(f"; {n}" for n in notes)
    if windows is None:
        return RunState(desired="Running", decided_by="Default", reason="no runWindows" + suffix)
    open_now, change = in_windows(windows, now)
    zone = windows.time_zone or "UTC"
    if open_now and change is not None:
        return RunState(desired="Running", decided_by="Window", until=format_time(change),
                        reason=f"inside a run window ({zone}) until {format_time(change)}" + suffix)
    if change is None:
        return RunState(desired="Stopped", decided_by="Window", reason="no run window ever opens" + suffix)
    return RunState(desired="Stopped", decided_by="Window", until=format_time(change),
                    reason=f"outside every run window ({zone}); the next opens at {format_time(change)}" + suffix)
