"""Cron schedules and IANA time zones, refused at admission exactly when the operator could not use them.

Cron: five fields (minute hour day-of-month month day-of-week), or six with seconds last. Each field is
checked on its own, with its range: `*`, numbers, ranges `a-b`, steps `/n` (n ≥ 1) and lists `,`; months
and weekdays also by name. The same pattern is a CEL rule in the CRD and the operator's own check; a unit
test (hypothesis) shows that croniter accepts every schedule the pattern admits.

Time zones: the names of the `tzdata` package (pinned in pyproject.toml). The CRD lists them in a CEL rule
(an OpenAPI enum would answer a typo with all 598 names); the operator reads zones from the same package
only (main.py empties zoneinfo's search path), so admission and run time agree.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
# One value of each field, with its range.
_VALUES = {
    "minute": "[0-5]?[0-9]",
    "hour": "[01]?[0-9]|2[0-3]",
    "day of month": "0?[1-9]|[12][0-9]|3[01]",
    "month": f"0?[1-9]|1[0-2]|{_MONTHS}",
    "day of week": f"[0-7]|{_DAYS}",
    "second": "[0-5]?[0-9]",
}


def _field(values: str) -> str:
    item = rf"(\*|({values})(-({values}))?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


_FIELDS = [_field(_VALUES[name]) for name in ("minute", "hour", "day of month", "month", "day of week")]
CRON_PATTERN = "(?i)^" + " ".join(_FIELDS) + f"( {_field(_VALUES['second'])})?$"
CRON_WORDS = ("must be a cron schedule of 5 fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or "
              "jan-dec, day of week 0-7 or sun-sat), or 6 with seconds (0-59) last, each a *, a value, a range "
              "a-b, a step /n or a list with commas, e.g. '0 3 * * *' or '*/15 9-17 * * mon-fri'")
_CRON = re.compile(CRON_PATTERN.removeprefix("(?i)"), re.IGNORECASE)


def _cron(value: str) -> str:
    if not _CRON.match(value):
        raise ValueError(f"{value!r} {CRON_WORDS}")
    return value


CronSchedule = Annotated[str, AfterValidator(_cron), WithJsonSchema({
    "type": "string", "maxLength": 128,
    "x-kubernetes-validations": [{"rule": f"self.matches('{CRON_PATTERN}')".replace("\\", "\\\\"),
                                  "message": CRON_WORDS, "reason": "FieldValueInvalid"}]})]

TIME_ZONES = sorted(importlib.resources.files("tzdata").joinpath("zones").read_text().split())
_ZONE_SET = frozenset(TIME_ZONES)
ZONE_WORDS = "must be an IANA time zone name, e.g. UTC, Europe/Berlin or America/New_York"


def _zone(value: str) -> str:
    if value not in _ZONE_SET:
        raise ValueError(f"{value!r} {ZONE_WORDS}")
    return value


TimeZone = Annotated[str, AfterValidator(_zone), WithJsonSchema({
    "type": "string", "maxLength": 64,
    "x-kubernetes-validations": [{"rule": "self in [" + ", ".join(f"'{z}'" for z in TIME_ZONES) + "]",
                                  "message": ZONE_WORDS, "reason": "FieldValueInvalid"}]})]


# --- run windows: "when should this role run", as days and a local time range, or a cron start and a duration ---
_DAY = f"({_DAYS})"
_DAY_SET = rf"(\*|{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*)"
_START = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_CLOCK = rf"({_START}|24:00)"
DAYS_PATTERN = rf"(?i)^{_DAY_SET} {_START}-{_CLOCK}$"
DAYS_WORDS = ("must be days and a local time range, e.g. 'Mon-Fri 07:00-20:00', 'Sat,Sun 10:00-16:00' or "
              "'* 22:00-06:00' (days: * or mon..sun as ranges and lists; times HH:MM, up to 24:00; a range "
              "may wrap midnight; 24:00 only as an end)")
_DAYS_RE = re.compile(DAYS_PATTERN.removeprefix("(?i)"), re.IGNORECASE)
DURATION_PATTERN = r"^([0-9]{1,3}h)?([0-9]{1,4}m)?([0-9]{1,6}s)?$"
DURATION_WORDS = "must be a duration of hours, minutes and seconds, e.g. 10s, 90m, 4h or 1h30m (more than 0)"
_DURATION_RE = re.compile(DURATION_PATTERN)


def _days(value: str) -> str:
    if not _DAYS_RE.match(value):
        raise ValueError(f"{value!r} {DAYS_WORDS}")
    return value


def duration_seconds(value: str) -> int:
    match = _DURATION_RE.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} {DURATION_WORDS}")
    h, m, s = (int(g[:-1]) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


def _duration(value: str) -> str:
    if duration_seconds(value) == 0:
        raise ValueError(f"{value!r} {DURATION_WORDS}")
    return value


def days_window(value: str) -> tuple[str, int]:
    """'Mon-Fri 07:00-20:00' as (cron of the start, duration in seconds); a range that wraps midnight lasts
    into the next day."""
    days, times = value.split(" ", 1)
    start, end = times.split("-")
    (sh, sm), (eh, em) = (int(x) for x in start.split(":")), (int(x) for x in end.split(":"))
    length = (eh * 60 + em) - (sh * 60 + sm)
    if length <= 0:
        length += 24 * 60
    return f"{sm} {sh} * * {days.lower()}", length * 60


WindowDays = Annotated[str, AfterValidator(_days), WithJsonSchema({
    "type": "string", "maxLength": 64,
    "x-kubernetes-validations": [{"rule": f"self.matches('{DAYS_PATTERN}')".replace("\\", "\\\\"),
                                  "message": DAYS_WORDS, "reason": "FieldValueInvalid"}]})]
Duration = Annotated[str, AfterValidator(_duration), WithJsonSchema({
    "type": "string", "maxLength": 16,
    "x-kubernetes-validations": [{"rule": f"self.matches('{DURATION_PATTERN}') && self.matches('[1-9]')"
                                          .replace("\\", "\\\\"),
                                  "message": DURATION_WORDS, "reason": "FieldValueInvalid"}]})]

# --- a start window: local clock times in which a due schedule slot may start -------------------------------
TIME_RANGE_PATTERN = rf"^{_START}-{_START}$"
TIME_RANGE_WORDS = "must be a local time range HH:MM-HH:MM, e.g. 01:00-05:00 or 22:00-02:00 (wraps midnight)"
_TIME_RANGE_RE = re.compile(TIME_RANGE_PATTERN)


def _time_range(value: str) -> str:
    if not _TIME_RANGE_RE.match(value):
        raise ValueError(f"{value!r} {TIME_RANGE_WORDS}")
    return value


TimeRange = Annotated[str, AfterValidator(_time_range), WithJsonSchema({
    "type": "string", "maxLength": 11,
    "x-kubernetes-validations": [{"rule": f"self.matches('{TIME_RANGE_PATTERN}')".replace("\\", "\\\\"),
                                  "message": TIME_RANGE_WORDS, "reason": "FieldValueInvalid"}]})]
