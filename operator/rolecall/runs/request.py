"""The request lifecycle every role action shares: trigger → hold → rights → accept (ledger) → execute →
acknowledge → history. A role declares an `Action` (runs/action.py: its trigger, rights and executor);
`step()` does one reconcile's worth of it, and nothing else in rolecall carries a request. What an accepted
request does is its executor's: PodFanOut (runs/pod_executor.py) or Steps (runs/step_executor.py).

Promises kept here (each has a test):
- Nothing requested is lost: the request and its requester are written to `status.run` (the ledger) by the
  executor's accept before anything is touched; a restart resumes it, from what the ledger says.
- Acknowledged is not succeeded: a request that ends (succeeded, partly failed, refused, stalled) has its
  token echoed and its outcome in `status.lastRequest` (runs/outcome.py), its Event posted before that write.
- A hold (the role is stopped, another maintenance holds the database) is checked only before a request is
  accepted: an accepted run is never held, and a held request is not lost.
- A cancel or the deadline (`run.deadline`, from the action's timeout field) stops a run between two units
  of work, whatever the executor; a retry backoff or a wave pause does not delay it.
"""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any, TypeVar

from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import RunLedger
from rolecall.runs import authz, events, queue
from rolecall.runs.action import Action, Executor, Refused, RequestFailed
from rolecall.runs.context import Context
from rolecall.runs.outcome import acknowledge_read, cancel_asked, end, halted, remember, run_keys
from rolecall.runs.pod_executor import POD_FAN_OUT
from rolecall.runs.reasons import Stall
from rolecall.runs.triggers import (
    Trigger,
    after_due,
    describe,
    schedule_due,
    schedule_handled,
    schedule_spec,
    token_due,
)

__all__ = ["Action", "Refused", "RequestFailed", "acknowledge_read", "cancel_asked", "remember", "run_keys", "step"]

P = TypeVar("P")


def executor_of(action: Action[Any]) -> Executor:
    return action.executor or POD_FAN_OUT


# --- the lifecycle --------------------------------------------------------------------------------------

async def step(ctx: Context[Any, Any], action: Action[P]) -> None:
    """One reconcile's worth of `action`: accept a new request, resume or retry the current one, or nothing."""
    executor = executor_of(action)
    await _dry_run(ctx, action)
    s = ctx.request_status
    run = s.run if s.run is not None and s.run.action == action.name else None
    token = action.token_source(ctx) if action.token_source else token_due(ctx, action)
    after = after_due(ctx, action)
    slot = schedule_due(ctx, action)  # always: it keeps status.schedules and the wake-up for the next slot
    schedule = schedule_spec(ctx, action)
    if slot and schedule is not None and schedule.dry_run:
        # A preview of the schedule: it touches nothing, so it neither waits for nor supersedes a real request.
        await executor.plan(ctx, action, f"schedule@{slot}", Trigger(None, None, slot))
        schedule_handled(ctx, action, slot)
        slot = None
    if run is not None and run.first_pass_done and (token or (after and after != run.cleared_after)
                                                    or (slot and slot != run.scheduled_at)):
        run = s.run = None  # a new request supersedes retries of an earlier one: it covers every target again
    if run is None and not (token or after or slot):
        return
    if run is None and queue.draining():
        return  # a planned stop: the next leader accepts it (its token stays unhandled, its slot due)
    why = action.hold(ctx) if run is None else None
    if inspect.isawaitable(why):
        why = await why
    if run is None and why:
        reason, message = why if isinstance(why, tuple) else (action.held_reason, why)
        what = Trigger(token, after, slot).describe()
        ctx.condition(action.condition, False, reason, f"The {action.noun} for {what} waits: {message}.")
        return  # woken when the hold lifts (the run state's own timer, or the start's readiness checks)
    if (token or after) and slot:
        ctx.wake_in(0.5)  # one request at a time: the due slot runs right after this one
        slot = None
    if run is not None and (halt := halted(ctx, run, action.timeout_name)):
        await executor.stop(ctx, action, run, *halt)  # a cancel or a deadline does not wait out a retry backoff
        return
    if run is not None and run.deadline:
        ctx.wake_in(max(0.05, (parse_time(run.deadline) - ctx.clock.wall()).total_seconds()))
    if run is not None and executor.waiting(ctx, action, run):
        return  # a pause between waves, or a backoff before failed targets are retried: shown, woken after it
    trigger = Trigger(run.token, run.cleared_after, run.scheduled_at) if run else Trigger(token, after, slot)
    requester = (authz.Requester(run.requester, tuple(run.requester_groups or ()))
                 if run is not None and run.requester else authz.requester_of(ctx.obj, ctx.plural, action.name))
    refused = await authz.refusal(ctx.plural, ctx.obj, requester, *action.rights(ctx))
    if refused:
        await end(ctx, action, run, trigger, "Refused", *refused)
        return
    try:
        prepared = await action.prepare(ctx)
        if run is None:
            run = await _accept(ctx, action, trigger, requester)
        else:
            await _resume(ctx, action, run)
    except Refused as e:
        await end(ctx, action, run, trigger, "Refused", e.reason, str(e))
        return
    except Stall as e:
        await end(ctx, action, run, trigger, "Stalled", e.reason, str(e))
        return
    except RequestFailed as e:
        await end(ctx, action, run, trigger, "Failed", e.reason, str(e))
        return
    await executor.carry_out(ctx, action, run, prepared)





async def _dry_run(ctx: Context[Any, Any], action: Action[Any]) -> None:
    """A dry-run token not yet handled: report what a real run would do now, change nothing."""
    token = ctx.annotations.get(action.dry_run_annotation)
    last = ctx.request_status.last_dry_run
    if token is None or (last is not None and (last.action, last.token) == (action.name, token)):
        return
    await executor_of(action).plan(ctx, action, str(token), Trigger(str(token), None))


async def _accept(ctx: Context[Any, Any], action: Action[Any], trigger: Trigger,
                  requester: authz.Requester | None) -> RunLedger:
    run = RunLedger(action=action.name, token=trigger.token, cleared_after=trigger.after,
                    scheduled_at=trigger.scheduled, accepted_at=ctx.clock.now(),
                    requester=requester.user if requester else None,
                    requester_groups=list(requester.groups) if requester and requester.groups else None,
                    holder=ctx.identity)
    limit = getattr(ctx.spec, action.timeout_field, None)
    if limit:
        run.deadline = format_time(parse_time(run.accepted_at) + dt.timedelta(seconds=limit))
    await executor_of(action).accept(ctx, action, run, trigger)
    return run


async def _resume(ctx: Context[Any, Any], action: Action[Any], run: RunLedger) -> None:
    """Continues an accepted run; one interrupted in another process (a crash, a takeover) is reported."""
    note = f"{run.action}:{run.token or run.cleared_after or run.scheduled_at}:{run.accepted_at}"
    if run.holder != ctx.identity and ctx.memory.resumed_note != note:
        ctx.memory.resumed_note = note
        where = f"it was being carried out by {run.holder}" if run.holder else "its operator stopped"
        message = (f"Resuming {action.noun} for {describe(run)}, interrupted after "
                   f"{executor_of(action).progress(run)} ({where}); what was in flight then may be done again.")
        ctx.mark_busy("ResumingInterruptedRun", message)
        await events.post(ctx.obj, "Warning", "RunResumed", message)
    run.holder = ctx.identity
    ctx.busy_phase = action.busy
