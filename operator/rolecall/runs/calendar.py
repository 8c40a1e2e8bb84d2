"""Schedule slots: which slot of a cron schedule is due now, how many were missed, when the next one is.

Pure functions of (schedule, zone, what was already run, now), so a restart or a takeover computes the same
slot and never runs one twice, and unit tests drive them with a fake clock. Slots are computed in the
schedule's own time zone (croniter with zone-aware times: 03:00 Europe/Berlin stays 03:00 across DST).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

NEVER_FIRES = "names no time that exists (e.g. 30 February): it never fires"
# Counting missed slots stops here (a seconds schedule after a week's outage): the figure says "at least".
MAX_COUNTED = 1000


@dataclass(frozen=True)
class Due:
    slot: dt.datetime | None  # the latest slot after `since` and not after now: run it once (None: nothing due)
    missed: int  # earlier slots after `since` that will not run (they are superseded by `slot`)
    next: dt.datetime | None  # the first slot after now (None: the schedule never fires, e.g. 30 February)


def due(cron: str, zone: str | None, since: dt.datetime, now: dt.datetime) -> Due:
    """The slot to run now: the latest one in (since, now]; earlier ones in that span count as missed."""
    tz = zoneinfo.ZoneInfo(zone or "UTC")
    try:
        next_slot = croniter(cron, now.astimezone(tz)).get_next(dt.datetime).astimezone(dt.UTC)
    except CroniterBadDateError:
        return Due(None, 0, None)  # admission cannot know that no date matches; nothing is ever due
    slots, latest = 0, None
    walk = croniter(cron, since.astimezone(tz))
    while slots < MAX_COUNTED:
        slot = walk.get_next(dt.datetime).astimezone(dt.UTC)
        if slot > now:
            break
        slots, latest = slots + 1, slot
    if slots == MAX_COUNTED:  # a long gap: the latest slot directly, the count says "at least"
        latest = croniter(cron, now.astimezone(tz) + dt.timedelta(microseconds=1)).get_prev(dt.datetime)
        latest = latest.astimezone(dt.UTC)
    if latest is None or latest <= since:
        return Due(None, 0, next_slot)
    return Due(latest, slots - 1, next_slot)


def between(cron: str, zone: str | None, after: dt.datetime, before: dt.datetime) -> int:
    """Slots strictly between two times (counted up to MAX_COUNTED)."""
    tz = zoneinfo.ZoneInfo(zone or "UTC")
    count = 0
    try:
        walk = croniter(cron, after.astimezone(tz))
        while count < MAX_COUNTED and walk.get_next(dt.datetime).astimezone(dt.UTC) < before:
            count += 1
    except CroniterBadDateError:
        return 0
    return count


def window_opens(window: str | None, t: dt.datetime) -> dt.datetime | None:
    """None when `t` (a time in the window's zone) is inside HH:MM-HH:MM (or there is no window); else when
    the window next opens. A range whose end is before its start wraps midnight."""
    if not window:
        return None
    start_s, end_s = window.split("-")
    start = t.replace(hour=int(start_s[:2]), minute=int(start_s[3:]), second=0, microsecond=0)
    end = t.replace(hour=int(end_s[:2]), minute=int(end_s[3:]), second=0, microsecond=0)
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if inside:
        return None
    return start if start > t else start + dt.timedelta(days=1)
