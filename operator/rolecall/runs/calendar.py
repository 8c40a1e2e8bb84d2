"""Schedule slots: which slot of a cron schedule is due now, how many were missed, when the next one is.

Pure functions of (schedule, zone, what was already run, now), so a restart or a takeover computes the same
slot and never runs one twice, and unit tests drive them with a fake clock. Slots are computed in the
schedule's own time zone (croniter with zone-aware times: 03:00 Europe/Berlin stays 03:00 across DST).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from croniter import croniter

# Counting missed slots stops here (a seconds schedule after a week's outage): the figure says "at least".
MAX_COUNTED = 1000


@dataclass(frozen=True)
class Due:
    slot: dt.datetime | None  # the latest slot after `since` and not after now: run it once (None: nothing due)
    missed: int  # earlier slots after `since` that will not run (they are superseded by `slot`)
    next: dt.datetime  # the first slot after now


def due(cron: str, zone: str | None, since: dt.datetime, now: dt.datetime) -> Due:
    """The slot to run now: the latest one in (since, now]; earlier ones in that span count as missed."""
    tz = zoneinfo.ZoneInfo(zone or "UTC")
    local_now = now.astimezone(tz)
    next_slot = croniter(cron, local_now).get_next(dt.datetime).astimezone(dt.UTC)
    latest = croniter(cron, local_now + dt.timedelta(microseconds=1)).get_prev(dt.datetime).astimezone(dt.UTC)
    if latest <= since:
        return Due(None, 0, next_slot)
    missed = 0
    walk = croniter(cron, since.astimezone(tz))
    while missed < MAX_COUNTED:
        slot = walk.get_next(dt.datetime).astimezone(dt.UTC)
        if slot >= latest:
            break
        missed += 1
    return Due(latest, missed, next_slot)
