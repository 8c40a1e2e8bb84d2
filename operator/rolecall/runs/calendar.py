"""Schedule slots and local time ranges, the one implementation behind every kind's schedules, a
maintenance's window and run windows.

Pure functions of (schedule, zone, what was already run, now), so a restart or a takeover computes the same
slot and never runs one twice, and unit tests drive them with a fake clock. Slots are computed in the
schedule's own time zone, and on the two daylight-saving days they follow Debian cron (cronsim, the test
reference, does the same, except for wildcard times that pass once in a 30-minute zone: see the README):
- a job at a fixed time (no `*` in its minute and hour fields) runs once per local day: a time skipped in
  spring runs once, at the first instant after the jump; a time repeated in autumn runs at its first
  occurrence only;
- a job with `*` in its minute or hour field runs at every matching wall-clock time as it passes: every
  elapsed hour for `30 * * * *`, both passes of a repeated hour, none of a skipped one.
A local time range (a run window's `days`, a start window) covers its stated local times: an ambiguous start
is its earliest occurrence, an ambiguous end its latest, and a start or end in a skipped hour is the jump.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

NEVER_FIRES = "names no time that exists (e.g. 30 February): it never fires"
# Counting missed slots stops here (a seconds schedule after a week's outage): the figure says "at least".
MAX_COUNTED = 1000
# croniter candidates looked at for one slot: past this, the schedule never fires (its only times are skipped).
_MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class Due:
    slot: dt.datetime | None  # the latest slot after `since` and not after now: run it once (None: nothing due)
    missed: int  # earlier slots after `since` that will not run (they are superseded by `slot`)
    next: dt.datetime | None  # the first slot after now (None: the schedule never fires, e.g. 30 February)


def _fixed(cron: str) -> bool:
    """A job at a fixed time of day: no `*` in its minute or hour field (Debian cron's distinction)."""
    minute, hour = cron.split()[:2]
    return "*" not in minute and "*" not in hour


def slots(cron: str, zone: str | None, after: dt.datetime) -> Iterator[dt.datetime]:
    """The schedule's slots after `after`, in UTC, by the daylight-saving rules above. Raises
    CroniterBadDateError when the schedule never fires."""
    tz, fixed = zoneinfo.ZoneInfo(zone or "UTC"), _fixed(cron)
    walk, last, looked = croniter(cron, after.astimezone(tz)), after, 0
    while True:
        candidate: dt.datetime = walk.get_next(dt.datetime)
        looked += 1
        utc = candidate.astimezone(dt.UTC)
        wall = utc.astimezone(tz)  # the wall-clock time at that instant (fold=1: the second pass of an hour)
        if fixed:
            kept = not (wall.fold and _ambiguous(wall.replace(tzinfo=None), tz))  # a repeated time: once
        else:
            kept = croniter.match(cron, wall.replace(tzinfo=None))  # a skipped time croniter moved: not run
        if kept and utc > last:
            looked, last = 0, utc
            yield utc
        elif looked > _MAX_CANDIDATES:
            raise CroniterBadDateError(f"{cron!r} has no slot that exists in {tz.key}")


def slot_before(cron: str, zone: str | None, t: dt.datetime) -> dt.datetime | None:
    """The latest slot at or before `t` (None: the schedule never fires). croniter walks back to the latest
    candidate that is a slot by the rules above; the slots from there up to `t` (a time moved past a
    skipped hour lies after its candidate) are then walked forward: a few steps, whatever the density."""
    tz = zoneinfo.ZoneInfo(zone or "UTC")
    walk = croniter(cron, t.astimezone(tz) + dt.timedelta(microseconds=1))
    for _ in range(_MAX_CANDIDATES):
        try:
            candidate: dt.datetime = walk.get_prev(dt.datetime).astimezone(dt.UTC)
            confirmed = next(slots(cron, zone, candidate - dt.timedelta(microseconds=1))) == candidate
        except CroniterBadDateError:
            return None
        if candidate > t or not confirmed:
            continue
        latest = candidate
        for slot in slots(cron, zone, candidate):
            if slot > t:
                break
            latest = slot
        return latest
    return None


def due(cron: str, zone: str | None, since: dt.datetime, now: dt.datetime) -> Due:
    """The slot to run now: the latest one in (since, now]; earlier ones in that span count as missed."""
    try:
        next_slot = next(slots(cron, zone, now))
        count, latest = 0, None
        for slot in slots(cron, zone, since):
            if slot > now or count == MAX_COUNTED:
                break
            count, latest = count + 1, slot
        if count == MAX_COUNTED:  # a long gap: the latest slot directly, the count says "at least"
            latest = slot_before(cron, zone, now)
    except CroniterBadDateError:
        return Due(None, 0, None)  # admission cannot know that no date matches; nothing is ever due
    if latest is None or latest <= since:
        return Due(None, 0, next_slot)
    return Due(latest, count - 1, next_slot)


def between(cron: str, zone: str | None, after: dt.datetime, before: dt.datetime) -> int:
    """Slots strictly between two times (counted up to MAX_COUNTED)."""
    count = 0
    try:
        for slot in slots(cron, zone, after):
            if count == MAX_COUNTED or slot >= before:
                break
            count += 1
    except CroniterBadDateError:
        return 0
    return count


def _ambiguous(naive: dt.datetime, tz: dt.tzinfo) -> bool:
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


def instant(naive: dt.datetime, tz: dt.tzinfo, latest: bool = False) -> dt.datetime:
    """The UTC instant of a local wall-clock time: of an ambiguous one its earliest occurrence (or `latest`),
    of one in a skipped hour the jump itself (the first instant after the gap)."""
    early, late = (naive.replace(tzinfo=tz, fold=f).astimezone(dt.UTC) for f in (0, 1))
    if early.astimezone(tz).replace(tzinfo=None) == naive:  # it exists (once, or twice when ambiguous)
        return max(early, late) if latest else min(early, late)
    low, high = min(early, late), max(early, late)  # the jump lies between the two readings of the gap
    before = low.astimezone(tz).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        low, high = (middle, high) if middle.astimezone(tz).utcoffset() == before else (low, middle)
    return high.replace(microsecond=0)


def window_opens(window: str | None, t: dt.datetime) -> dt.datetime | None:
    """None when `t` (a time in the window's zone) is inside HH:MM-HH:MM (or there is no window); else when
    the window next opens (in UTC). A range whose end is before its start wraps midnight; it covers its
    stated local times as instants (both passes of a repeated hour inside it, none of a skipped one)."""
    if not window:
        return None
    tz, now = t.tzinfo or dt.UTC, t.astimezone(dt.UTC)
    (sh, sm), (eh, em) = ((int(p[:2]), int(p[3:])) for p in window.split("-"))
    openings = []
    for days in (-1, 0, 1, 2):
        day = t.replace(tzinfo=None).date() + dt.timedelta(days=days)
        start, end = dt.datetime.combine(day, dt.time(sh, sm)), dt.datetime.combine(day, dt.time(eh, em))
        end += dt.timedelta(days=1) if end <= start else dt.timedelta(0)
        opens, closes = instant(start, tz), instant(end, tz, latest=True)
        if opens <= now < closes:
            return None
        openings.append(opens)
    return min(o for o in openings if o > now)
