"""How a request ends, the same for every executor: cancel and deadline, acknowledgement (the token echoed,
the schedule slot handled, status.lastRequest), history, and the request that ends before it began.

Acknowledged is not succeeded: a request that ends (succeeded, partly failed, refused, stalled, cancelled,
timed out) has its token echoed and its outcome in status.lastRequest, and its Event is posted before the
status write that records it (the caller's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rolecall import metrics
from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION, DEFAULT_HISTORY, HistoryEntry, LastRequest, RunLedger
from rolecall.runs import events, ledger
from rolecall.runs.action import Action
from rolecall.runs.context import Context
from rolecall.runs.triggers import Trigger, schedule_handled


def run_keys(run: RunLedger) -> set[str]:
    """What a cancel annotation may name to cancel this run: its token, spec time, schedule slot, or the time
    it was accepted."""
    return {k for k in (run.token, run.cleared_after, run.scheduled_at, run.accepted_at) if k}


def cancel_asked(ctx: Context[Any, Any]) -> str | None:
    """The cancel annotation's value as the watch saw it last (also while a reconcile runs), if any."""
    annotations = ctx.memory.annotations if ctx.memory.annotations is not None else ctx.annotations
    return annotations.get(CANCEL_ANNOTATION)


def halted(ctx: Context[Any, Any], run: RunLedger, limit: str = "requestTimeoutSeconds") -> tuple[str, str, str] | None:
    """(outcome, reason, message) when `run` must start no more work: cancelled, or past its deadline (set
    from the spec field `limit`)."""
    if (cancel := cancel_asked(ctx)) in run_keys(run):
        return "Cancelled", "Cancelled", f"cancelled ({CANCEL_ANNOTATION}={cancel})"
    if run.deadline and ctx.clock.wall() >= parse_time(run.deadline):
        return "TimedOut", "TimedOut", f"{limit} ran out at {run.deadline}"
    return None


def trigger_of(run: RunLedger) -> Trigger:
    return Trigger(run.token, run.cleared_after, run.scheduled_at)


def acknowledge(ctx: Context[Any, Any], action: Action[Any], run: RunLedger | None, outcome: str, reason: str,
                message: str, trigger: Trigger | None = None, retry_at: str | None = None,
                attempts: int | None = None, dry_run: bool = False,
                figures: dict[str, int | None] | None = None) -> None:
    """The request ended: its token echoed, its slot handled, lastRequest and history (with the executor's
    figures, e.g. rows deleted) say how."""
    s = ctx.request_status
    trigger = trigger or (trigger_of(run) if run else Trigger(None, None))
    if trigger.token and action.handled_field:
        setattr(s, action.handled_field, trigger.token)  # handled, whatever the outcome: waiting clients end
    if trigger.scheduled and not trigger.token and not trigger.after:
        schedule_handled(ctx, action, trigger.scheduled)  # never run again, whatever the outcome
    s.last_request = LastRequest(
        action=action.name, token=trigger.token, requested_after=trigger.after, scheduled_at=trigger.scheduled,
        outcome=outcome, reason=reason, message=message[:2048], accepted_at=run.accepted_at if run else None,
        finished_at=ctx.clock.now(), targets=run.targets if run else None,
        done=ledger.done(run) if run else None, failed=ledger.failed(run) if run else None, retry_at=retry_at,
        attempts=attempts, observed_generation=ctx.generation)
    remember_request(ctx, action, run, trigger, outcome, dry_run=dry_run, figures=figures)
    metrics.REQUEST_OUTCOMES.labels(ctx.kind.kind, action.name, outcome).inc()


def remember_request(ctx: Context[Any, Any], action: Action[Any], run: RunLedger | None, trigger: Trigger,
                     outcome: str, dry_run: bool = False, targets: int | None = None,
                     figures: dict[str, int | None] | None = None) -> None:
    """status.history: newest first, bounded; a request acknowledged again (it recovered after a retry) keeps
    its one entry, updated."""
    s = ctx.request_status
    failed_pods = getattr(s, "failed_pods", None)  # kinds without per-pod results (a maintenance) have none
    entry = HistoryEntry(
        action=action.name, trigger=action.token_trigger if trigger.token else trigger.kind, token=trigger.token,
        requested_after=trigger.after, scheduled_at=trigger.scheduled, requester=run.requester if run else None,
        accepted_at=run.accepted_at if run else None, finished_at=ctx.clock.now(),
        targets=run.targets if run else targets, done=ledger.done(run) if run else None,
        failed=ledger.failed(run) if run else None,
        failed_pods=[p.pod for p in failed_pods or []][:5] or None if run else None, outcome=outcome,
        dry_run=dry_run, **(figures or {}))
    remember(ctx, entry, run.accepted_at if run else None)


def remember(ctx: Context[Any, Any], entry: HistoryEntry, replaces: str | None = None) -> None:
    """Puts `entry` first in status.history (an entry of the same action accepted at `replaces` gives way),
    keeping at most the spec's historyLimit."""
    s = ctx.request_status
    history = [h for h in s.history or [] if replaces is None or (h.action, h.accepted_at) != (entry.action, replaces)]
    s.history = [entry, *history][:getattr(ctx.spec, "history_limit", DEFAULT_HISTORY)]


async def end(ctx: Context[Any, Any], action: Action[Any], run: RunLedger | None, trigger: Trigger, outcome: str,
              reason: str, message: str) -> None:
    """Ends a request that cannot go on (refused, stalled, or failed before it acted): acknowledged with its
    outcome; a spec time is tried again with backoff, a token is not (ask again with a new one)."""
    s = ctx.request_status
    retry_at = attempts = None
    if trigger.after and not trigger.token:
        tried = s.last_request
        attempts = (tried.attempts or 0) + 1 if tried and tried.requested_after == trigger.after else 1
        retry_at = format_time(ctx.clock.wall() + dt.timedelta(seconds=ledger.retry_delay(attempts)))
    full = f"{action.noun.capitalize()} for {trigger.describe()}: {message}"
    repeat = (s.last_request is not None and s.last_request.reason == reason
              and s.last_request.requested_after == trigger.after and not trigger.token and not trigger.scheduled)
    if run is not None:
        s.run = None
    ctx.condition(action.condition, False, reason, message)
    acknowledge(ctx, action, run, outcome, reason, full, trigger, retry_at, attempts)
    if retry_at:
        ctx.wake_in(ledger.retry_delay(attempts or 1))
    if not repeat:  # one Warning per request, not one per retry of the same spec time
        await events.post(ctx.obj, "Warning", reason, full)
    metrics.REQUESTS.labels(ctx.kind.kind, action.name, outcome.lower()).inc()


def acknowledge_read(ctx: Context[Any, Any], action: Action[Any], token: str, outcome: str, reason: str,
                     message: str) -> None:
    """For requests without side effects (a web refresh): echo the token and record how it ended."""
    acknowledge(ctx, action, None, outcome, reason, message, Trigger(token, None))
