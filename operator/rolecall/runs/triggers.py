"""Trigger detection: is a request due now? A token the status has not echoed, or a spec time not yet met.

Pure reads of the object and its status (plus a timer for a time still in the future): the request core
(runs/request.py) calls these first, and a role whose action has no fan-out (a web refresh) uses them alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.common import RunLedger
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


@dataclass(frozen=True)
class Trigger:
    token: str | None
    after: str | None

    def describe(self) -> str:
        return f"request {self.token!r}" if self.token else f"{self.after} (spec time)"


def describe(run: RunLedger) -> str:
    return Trigger(run.token, run.cleared_after).describe()


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
        raise Stall("InvalidSpec", f"spec.{_camel(action.after_field)} {wanted!r} is not a time: {e}") from e
    last = getattr(ctx.status, action.completed_field) if action.completed_field else None
    if last is not None and parse_time(last) >= t:
        return None
    now = ctx.clock.wall()
    if t > now:
        ctx.wake_in((t - now).total_seconds())  # an in-process timer, rebuilt from spec on restart
        return None
    tried = ctx.role_status.last_request
    if tried is not None and tried.action == action.name and tried.requested_after == wanted and tried.retry_at:
        wait = (parse_time(tried.retry_at) - now).total_seconds()
        if wait > 0:
            ctx.wake_in(wait)
            if tried.outcome == "Failed":
                ctx.mark_busy("RetryingFailedTargets", f"{tried.message} Trying again at {tried.retry_at}.")
            return None
    return str(wanted)


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p.title() for p in rest)
