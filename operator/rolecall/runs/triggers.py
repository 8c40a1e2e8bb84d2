"""Trigger detection: is a request due now? A token the status has not echoed, a spec time not yet met, or
a schedule slot not yet handled.

Pure reads of the object and its status (plus a timer for a time still in the future): the request core
(runs/request.py) calls these first, and a role whose action has no fan-out (a web refresh) uses them alone.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import RunLedger, ScheduleSpec, ScheduleStatus
from rolecall.runs import calendar
from rolecall.runs.context import Context
from rolecall.runs.reasons import Stall


class Triggered(Protocol):
    """What trigger detection needs to know of an action (runs.request.Action has it)."""

    @property
    def name(self) -> str: ...

    @property
    def token_annotation(self) -> str | None: ...

    @property
    def handled_field(self) -> str | None: ...

    @property
    def after_field(self) -> str | None: ...

    @property
    def completed_field(self) -> str | None: ...

    @property
    def schedule_field(self) -> str | None: ...

    @property
    def condition(self) -> str: ...

    @property
    def schedule_of(self) -> Callable[[Context[Any, Any]], ScheduleSpec | None] | None: ...


@dataclass(frozen=True)
class Trigger:
    token: str | None
    after: str | None
    scheduled: str | None = None  # a schedule slot (format_time), when neither a token nor a spec time asked

    def describe(self) -> str:
        if self.token:
            return f"request {self.token!r}"
        if self.after:
            return f"{self.after} (spec time)"
        return f"the {self.scheduled} slot of the schedule"

    @property
    def kind(self) -> str:
        return "Annotation" if self.token else "SpecTime" if self.after else "Schedule"


def describe(run: RunLedger) -> str:
    return Trigger(run.token, run.cleared_after, run.scheduled_at).describe()


def token_due(ctx: Context[Any, Any], action: Triggered) -> str | None:
    """The request token to handle now: the annotation's value when status has not echoed it yet."""
    if not action.token_annotation or not action.handled_field:
        return None
    value = ctx.annotations.get(action.token_annotation)
    handled = getattr(ctx.status, action.handled_field)
    return str(value) if value is not None and value != handled else None


def after_due(ctx: Context[Any, Any], action: Triggered) -> str | None:
    """The spec time to satisfy now: unmet, not in the future, and not waiting out a retry backoff.
    Times compare with the precision they were written with (a fraction of a second counts)."""
    if not action.after_field:
        return None
    wanted = getattr(ctx.spec, action.after_field)
    if not wanted:
        return None
    try:
        t = parse_time(wanted)
    except ValueError as e:
        raise Stall("InvalidSpec", f"spec.{camel(action.after_field)} {wanted!r} is not a time: {e}") from e
    last = getattr(ctx.status, action.completed_field) if action.completed_field else None
    if last is not None and parse_time(last) >= t:
        return None
    now = ctx.clock.wall()
    if t > now:
        ctx.wake_in((t - now).total_seconds())  # an in-process timer, rebuilt from spec on restart
        return None
    tried = ctx.request_status.last_request
    if (tried is not None and tried.action == action.name and tried.requested_after == wanted
            and tried.outcome in ("Cancelled", "TimedOut")):
        return None  # ended on purpose: a new spec time asks again
    if tried is not None and tried.action == action.name and tried.requested_after == wanted and tried.retry_at:
        wait = (parse_time(tried.retry_at) - now).total_seconds()
        if wait > 0:
            ctx.wake_in(wait)
            if tried.outcome == "Failed":
                ctx.mark_busy("RetryingFailedTargets", f"{tried.message} Trying again at {tried.retry_at}.")
            return None
    return str(wanted)


def schedule_status(ctx: Context[Any, Any], action: Triggered) -> ScheduleStatus | None:
    """This action's entry in status.schedules (None when it has no schedule)."""
    return next((e for e in ctx.request_status.schedules or [] if e.action == action.name), None)


def schedule_spec(ctx: Context[Any, Any], action: Triggered) -> ScheduleSpec | None:
    """The action's schedule: its spec field, or what the action builds from its kind's own spec fields."""
    if action.schedule_of is not None:
        return action.schedule_of(ctx)
    return getattr(ctx.spec, action.schedule_field) if action.schedule_field else None


def schedule_due(ctx: Context[Any, Any], action: Triggered) -> str | None:
    """The schedule slot to run now, if any. Keeps status.schedules current (since, next slot, missed) and wakes
    the object at the next slot. Slots before the schedule was first seen never run; of the slots missed
    since the last one handled, only the latest runs (once), unless it is past the starting deadline."""
    spec = schedule_spec(ctx, action)
    entries = [e for e in ctx.request_status.schedules or [] if e.action != action.name]
    if spec is None:
        ctx.request_status.schedules = entries or None
        return None
    now = ctx.clock.wall()
    entry = schedule_status(ctx, action)
    if entry is None or (entry.cron, entry.time_zone) != (spec.cron, spec.time_zone):
        entry = ScheduleStatus(action=action.name, cron=spec.cron, time_zone=spec.time_zone, since=format_time(now))
    ctx.request_status.schedules = [*entries, entry]
    found = calendar.due(spec.cron, spec.time_zone, _handled_until(ctx, action, entry), now)
    entry.next_schedule_time = format_time(found.next) if found.next else None
    entry.suspended, entry.waits_for_window = spec.suspend, None
    if found.next is not None:
        ctx.wake_in(max(0.05, (found.next - now).total_seconds()))
    elif found.slot is None:  # admission cannot know that no date matches the fields
        where = f"spec.{camel(action.schedule_field)}.cron" if action.schedule_field else "spec.schedule"
        ctx.mark_stalled("ScheduleNeverFires", f"{where} {spec.cron!r} "
                                               f"{calendar.NEVER_FIRES}")
    if found.slot is None:
        return None
    late = (now - found.slot).total_seconds()
    if spec.suspend or (spec.starting_deadline_seconds is not None and late > spec.starting_deadline_seconds):
        _advance(entry, spec, found.slot, ran=False)  # never run: suspended, or too late to start
        return None
    opens = calendar.window_opens(spec.start_window, now.astimezone(zoneinfo.ZoneInfo(spec.time_zone or "UTC")))
    if opens is not None:  # due, but it may start only inside startWindow: it waits (the latest slot runs once)
        entry.waits_for_window = format_time(opens)
        ctx.wake_in(max(0.05, (opens - now).total_seconds()))
        ctx.condition(action.condition, False, "OutsideStartWindow",
                      f"The {format_time(found.slot)} slot of the schedule waits for startWindow "
                      f"{spec.start_window} ({spec.time_zone or 'UTC'}), which opens at {entry.waits_for_window}.")
        return None
    return format_time(found.slot)


def _handled_until(ctx: Context[Any, Any], action: Triggered, entry: ScheduleStatus) -> dt.datetime:
    """Slots up to this time are handled: before the schedule was first seen (or changed), already ended, or
    the one a run in progress carries (resumed after a restart, it is not due again)."""
    marks = [parse_time(entry.since)]
    if entry.last_schedule_time:
        marks.append(parse_time(entry.last_schedule_time))
    run = ctx.request_status.run
    if run is not None and run.action == action.name and run.scheduled_at:
        marks.append(parse_time(run.scheduled_at))
    return max(marks)


def _advance(entry: ScheduleStatus, spec: ScheduleSpec, slot: dt.datetime, ran: bool) -> None:
    """Moves lastScheduleTime to `slot`, counting the slots passed over since the last one (exactly, once)."""
    last = parse_time(entry.last_schedule_time or entry.since)
    if slot <= last:
        return
    entry.missed += calendar.between(spec.cron, spec.time_zone, last, slot) + (0 if ran else 1)
    entry.last_schedule_time = format_time(slot)


def schedule_handled(ctx: Context[Any, Any], action: Triggered, slot: str) -> None:
    """Records a slot as handled (its request ended), so no process runs it again; slots before the schedule
    was (last) seen are never recorded."""
    spec, entry = schedule_spec(ctx, action), schedule_status(ctx, action)
    if entry is not None and spec is not None and parse_time(slot) > parse_time(entry.since):
        _advance(entry, spec, parse_time(slot), ran=True)


def camel(attr: str) -> str:
    """A spec attribute's name as users write it: request_timeout_seconds -> requestTimeoutSeconds."""
    head, *rest = attr.split("_")
    return head + "".join(p.title() for p in rest)
