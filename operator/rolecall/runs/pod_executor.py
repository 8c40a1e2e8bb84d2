"""The PodFanOut executor: every target pod once per request, at most `concurrency` at a time, in waves if
asked, failed pods retried with backoff; progress written in batches while the fan-out goes on.

Promises kept here (each has a test):
- Nothing requested is lost: the target UIDs are written to `status.run` (the ledger) before any target is
  touched; a restart resumes it.
- Status never claims what did not happen: a target leaves `pending` only with an outcome; if the fan-out is
  aborted (a progress write fails, this process stops leading) every sibling is cancelled and nothing is
  recorded for a target whose action was not seen to finish.
- Bounded repeats: after a crash or takeover only targets not recorded are acted on again: at most those
  started but not in a progress write that landed, 2 * max(PROGRESS_BATCH, concurrency) (what the write on
  its way carries, and what gathered behind it before starts stopped), are acted on twice.
- Retries keep their backoff in status (`run.retryAt`, `lastRequest.retryAt`): a restart does not reset it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

from rolecall import metrics
from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.common import (
    DEFAULT_MAX_RETRIES,
    MAX_FAILED_PODS,
    MAX_POD_RESULTS,
    DryRunPlan,
    NodeSummary,
    PodResult,
    RunLedger,
)
from rolecall.engines import EngineError
from rolecall.runs import events, fanout, fence, ledger, queue
from rolecall.runs.action import Action, RequestFailed
from rolecall.runs.context import Context
from rolecall.runs.outcome import acknowledge, halted, remember_request
from rolecall.runs.reasons import Stall
from rolecall.runs.triggers import Trigger, describe
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable, Target

# Progress is written after this many outcomes, or after PROGRESS_SECONDS with at least one new one: a
# 1,000-pod fan-out costs ~20 progress patches (the API budget is ⌈targets/50⌉ + 2 patches per request).
PROGRESS_BATCH = int(os.environ.get("ROLECALL_PROGRESS_BATCH", "50"))
PROGRESS_SECONDS = float(os.environ.get("ROLECALL_PROGRESS_SECONDS", "2"))


class PodFanOut:
    """The executor of every fan-out action (a cache clear, a compaction on a DatabaseServer)."""

    async def plan(self, ctx: Context[Any, Any], action: Action[Any], token: str, trigger: Trigger) -> None:
        """What a real run would touch now, reported (status.lastDryRun, history, an Event); nothing is changed."""
        assert action.resolve is not None
        s = ctx.role_status
        # Acknowledged in history and lastDryRun, not in lastRequest: its backoff bookkeeping is the real requests'.
        names: list[str] = []
        try:
            names = sorted(t.name for t in await action.resolve(ctx))
            shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            outcome, kind, reason = "DryRun", "Normal", f"{action.name.title()}DryRun"
            message = (f"Dry run {token!r}: a {action.noun} now would act on {len(names)} pods"
                       + (f": {shown}." if names else ".") + " Nothing was changed.")
        except (Stall, RequestFailed) as e:  # e.g. no PostgreSQL primary: the plan cannot be made now
            outcome = "Stalled" if isinstance(e, Stall) else "Failed"
            kind, reason, message = "Warning", e.reason, f"Dry run {token!r} of a {action.noun}: {e}"
        s.last_dry_run = DryRunPlan(action=action.name, token=token, planned_at=ctx.clock.now(), targets=len(names),
                                    pods=names[:100] or None)
        remember_request(ctx, action, None, trigger, outcome, dry_run=True,
                         targets=len(names) if outcome == "DryRun" else None)
        metrics.REQUEST_OUTCOMES.labels(ctx.kind.kind, action.name, outcome).inc()
        await events.post(ctx.obj, kind, reason, message)

    async def accept(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, trigger: Trigger) -> None:
        assert action.resolve is not None
        targets = await action.resolve(ctx)
        s = ctx.role_status
        if not targets and s.replicas != 0:  # a workload at 0 on purpose (stopped, an HPA) has nothing to act on
            why = pods.none_match(ctx.spec.selector, getattr(ctx.spec, "node_selector", None))
            ctx.condition("Degraded", True, "NoTargetPods", f"{why}: nothing to act on.")
            raise RequestFailed("NoTargetPods", f"{why}: nothing was done (is a label mistyped?)")
        run.targets, run.pending = len(targets), [t.uid for t in targets]
        ctx.memory.targets = {t.uid: t for t in targets}
        s.run, s.targets, s.done, s.failed, s.failed_pods = run, len(targets), 0, 0, None
        s.nodes = _node_summary(targets)
        what = trigger.describe()
        ctx.condition(action.condition, False, f"{action.name.title()}Requested",
                      f"Accepted {what}: {len(targets)} target pods.")
        ctx.mark_busy(action.busy, f"{action.busy} {len(targets)} pods for {what}.")
        ctx.busy_phase = action.busy
        with metrics.REQUEST_STEP.labels(ctx.kind.kind, "ledger-write").time():
            await ctx.write()  # the ledger: request, requester and target UIDs recorded before any target is touched
        # Posted while the targets are acted on: nothing waits for it but the outcome's Event, which follows it.
        ctx.memory.started_event = events.post_soon(ctx.obj, "Normal", f"{action.name.title()}Started",
                                                    f"{action.busy} {len(targets)} pods for {what}.")

    def waiting(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger) -> bool:
        """A pause between waves, or the backoff before failed targets are tried again: shown, woken after it."""
        if run.wave_resume_at:
            wait = (parse_time(run.wave_resume_at) - ctx.clock.wall()).total_seconds()
            if wait > 0:
                ctx.wake_in(wait)
                _wave_pause(ctx, action, run)
                return True
            run.wave_resume_at = None
        if run.first_pass_done and run.retry_at:
            wait = (parse_time(run.retry_at) - ctx.clock.wall()).total_seconds()
            if wait > 0:
                ctx.wake_in(wait)
                ctx.mark_busy("RetryingFailedTargets", f"{ledger.failed(run)} of {run.targets} targets failed; "
                                                       f"trying them again at {run.retry_at}.")
                return True
        return False

    def progress(self, run: RunLedger) -> str:
        return f"{ledger.done(run)} of {run.targets} pods"

    async def carry_out(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, prepared: Any) -> None:
        ctx.mark_busy(action.busy, f"{action.busy} pods for {describe(run)}.")
        await _carry_out(ctx, action, run, prepared)

    async def stop(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, outcome: str, reason: str,
                   why: str) -> None:
        await _stop_run(ctx, action, run, outcome, reason, why)


POD_FAN_OUT = PodFanOut()


def _node_summary(targets: list[Target]) -> list[NodeSummary] | None:
    per: dict[str, NodeSummary] = {}
    for t in targets:
        per.setdefault(t.node or "", NodeSummary(node=t.node or "(none)")).targets += 1
    return sorted(per.values(), key=lambda n: n.node)[:100] or None



class _Progress:
    """Writes progress in batches while the fan-out goes on: after PROGRESS_BATCH outcomes, or PROGRESS_SECONDS
    after the last write when at least one outcome is unwritten (a timer, so slow last targets do not hold
    finished ones back). Targets keep starting while a write is on its way, but only while the outcomes not
    in it plus the targets in flight stay under a batch; so a write carries at most max(batch, concurrency)
    outcomes, and the targets started but not in a write that landed stay at most
    2 * max(PROGRESS_BATCH, concurrency).
    A write that fails stops every later start and is raised after the fan-out: nothing unseen is recorded."""

    def __init__(self, ctx: Context[Any, Any], run: RunLedger) -> None:
        self.ctx = ctx
        self.run = run
        self.halt: tuple[str, str, str] | None = None  # (outcome, reason, message) once a cancel or deadline hit
        self.draining = False  # a planned stop halted the fan-out: the run stays in status for the next leader
        self.unwritten = 0  # outcomes not in any write yet
        self.in_flight: set[str] = set()  # targets started and without an outcome yet
        self.writing = False
        self.failure: BaseException | None = None
        self.timer: asyncio.Task[None] | None = None
        self.last = ctx.clock.monotonic()
        self.landed = asyncio.Event()
        self.landed.set()

    async def before_act(self, target: Target) -> None:
        while self.writing and self.unwritten + len(self.in_flight - {target.uid}) >= PROGRESS_BATCH:
            self.landed.clear()
            await self.landed.wait()
        if self.failure is not None:
            raise self.failure  # a progress write failed: nothing more starts
        await fence.may_act(self.ctx.kind.kind)  # nothing starts outside the renew deadline; in flight goes on
        if queue.draining():  # a planned stop: the targets in flight finish and are written, nothing starts
            self.draining = True
            raise fanout.Halt("the operator is stopping")
        self.halt = self.halt or halted(self.ctx, self.run)
        if self.halt:
            raise fanout.Halt(self.halt[2])  # nothing starts after a cancel or the deadline
        self.in_flight.add(target.uid)  # counted now, in the same step as the check: no start slips past it

    async def recorded(self, uid: str) -> None:
        self.in_flight.discard(uid)
        self.unwritten += 1
        if self.writing:
            return
        if self.unwritten >= PROGRESS_BATCH or self.ctx.clock.monotonic() - self.last >= PROGRESS_SECONDS:
            await self._write()  # a failure aborts the fan-out: nothing more is done unrecorded
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().create_task(self._write_later(), name="progress write")

    async def _write(self) -> None:
        """Writes until less than a batch is left (what gathered while a write was on its way included)."""
        self.writing = True
        try:
            while True:
                self.unwritten, self.last = 0, self.ctx.clock.monotonic()
                await self.ctx.write()
                if self.unwritten < PROGRESS_BATCH:
                    break
        finally:
            self.writing = False
            self.landed.set()
        if self.unwritten and self.timer is None:
            self.timer = asyncio.get_running_loop().create_task(self._write_later(), name="progress write")

    async def _write_later(self) -> None:
        await asyncio.sleep(PROGRESS_SECONDS)
        self.timer = None
        if self.unwritten and not self.writing and self.failure is None:
            try:
                await self._write()
            except Exception as e:  # nobody awaits a timer: the fan-out stops at its next start, and raises it
                self.failure = e

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


async def _pending_targets(ctx: Context[Any, Any], run: RunLedger) -> dict[str, Target]:
    known = ctx.memory.targets
    if all(u in known for u in run.pending):
        return known
    # After a restart: find the recorded UIDs among the namespace's pods (never by a stored IP).
    listed = await pods.by_uid(ctx.ns, ctx.spec.selector)
    ctx.memory.targets = listed
    return listed


async def _carry_out(ctx: Context[Any, Any], action: Action[Any], run: RunLedger, prepared: Any) -> None:
    s = ctx.role_status
    first_pass = not run.first_pass_done
    if run.first_pass_done:
        ledger.start_retry_pass(run)
        run.retries += 1
        run.retry_at = None
    by_uid = await _pending_targets(ctx, run)
    progress = _Progress(ctx, run)
    results: dict[str, PodResult] = {}

    async def act(t: Target) -> str:
        try:
            address = await action.same_target(ctx.ns, t)
        except NotActionable as e:
            if e.gone:
                raise fanout.Skip(f"{e}: nothing left to act on") from e
            if e.permanent:
                raise fanout.Permanent(str(e)) from e
            raise
        assert action.act is not None
        try:
            return await action.act(ctx, prepared, t, address)
        except EngineError as e:
            if e.fix:  # retrying cannot help: failed for good at once, with what to change
                raise fanout.Permanent(f"{e}; {e.fix}") from e
            raise

    async def record(o: fanout.Outcome[Target]) -> None:
        t = o.target
        if not ledger.record(run, t.uid, o.status, o.permanent):
            progress.in_flight.discard(t.uid)  # already recorded: nothing new to write
            return
        metrics.POD_ACTIONS.labels(ctx.kind.kind, str(getattr(ctx.spec, "engine", "")), action.name, o.status).inc()
        result = PodResult(pod=t.name, uid=t.uid, node=t.node, outcome=o.status,
                           message=o.message[:1024], at=ctx.clock.now())
        results[t.uid] = result
        s.recent_results = [*(s.recent_results or []), result][-MAX_POD_RESULTS:]
        for n in s.nodes or []:
            if n.node == (t.node or "(none)"):
                n.done += o.status != ledger.FAILED
                n.failed += o.status == ledger.FAILED
        s.done, s.failed = ledger.done(run), ledger.failed(run)
        await progress.recorded(t.uid)

    for uid in [u for u in run.pending if u not in by_uid]:  # gone before we got to it
        ledger.record(run, uid, ledger.SKIPPED)
    todo = [by_uid[u] for u in run.pending]
    waves = getattr(ctx.spec, action.waves_field, None) if action.waves_field and first_pass else None
    if waves is not None:
        todo = todo[:fanout.limit_of(waves.size, max(1, run.targets))]  # this wave; the rest stay pending
    try:
        with metrics.REQUEST_STEP.labels(ctx.kind.kind, "engine-calls").time():
            await fanout.fan_out(todo, act, fanout.limit_of(ctx.spec.concurrency, max(1, run.targets)), record,
                                 attempts=action.attempts, timeout=float(ctx.spec.timeout_seconds) * 2 + 5,
                                 before_act=progress.before_act)
    finally:
        progress.close()
        if (started := ctx.memory.started_event) is not None:  # the start's Event comes before any outcome's
            ctx.memory.started_event = None
            await started
    if progress.failure is not None:
        raise progress.failure  # a timed progress write failed: the request is resumed from what status says
    if progress.draining:
        await ctx.write()  # every outcome seen is on record: the next leader acts only on the targets not started
        return
    if progress.halt:
        await _stop_run(ctx, action, run, *progress.halt)
        return
    if waves is not None and run.pending:
        _name_failures(s, run, results)  # kept in status: the last wave's conclusion names them too
        run.waves_done = (run.waves_done or 0) + 1
        run.wave_resume_at = format_time(ctx.clock.wall() + dt.timedelta(seconds=waves.pause_seconds))
        ctx.wake_in(waves.pause_seconds)
        _wave_pause(ctx, action, run)
        return
    await _conclude(ctx, action, run, results, first_pass)


def _wave_pause(ctx: Context[Any, Any], action: Action[Any], run: RunLedger) -> None:
    """A guard holding the request between two waves: busy, with the guard named (not a failure)."""
    s = ctx.role_status
    s.done, s.failed = ledger.done(run), ledger.failed(run)
    message = (f"{action.busy} for {describe(run)}: wave {run.waves_done} done, {ledger.done(run)} of "
               f"{run.targets} pods; {len(run.pending)} wait for the next wave at {run.wave_resume_at}.")
    ctx.busy_phase = action.busy
    if ctx.busy is None or ctx.busy[0] in (action.busy, "ResumingInterruptedRun"):
        ctx.busy = ("WaitingForWave", message)  # over the wave's own busy reason: the pause is what holds it now
    ctx.condition(action.condition, False, "WaitingForWave", message)


async def _stop_run(ctx: Context[Any, Any], action: Action[Any], run: RunLedger, outcome: str, reason: str,
                    why: str) -> None:
    """Ends a cancelled or timed-out request with its true counts: targets done, failed, never started."""
    s = ctx.role_status
    ctx.busy = ctx.busy_phase = None
    s.done, s.failed = ledger.done(run), ledger.failed(run)
    not_started = len(run.pending)
    message = (f"{action.noun.capitalize()} for {describe(run)} {why}: {s.done} of {run.targets} pods done, "
               f"{s.failed} failed, {not_started} not started.")
    s.run = None
    ctx.condition(action.condition, False, reason, message)
    acknowledge(ctx, action, run, outcome, reason, message)
    if s.last_request is not None:
        s.last_request.not_started = not_started
    await events.post(ctx.obj, "Warning", f"{action.name.title()}{reason}", message)
    metrics.REQUESTS.labels(ctx.kind.kind, action.name, outcome.lower()).inc()


async def _conclude(ctx: Context[Any, Any], action: Action[Any], run: RunLedger, results: dict[str, PodResult],
                    first_pass: bool) -> None:
    s = ctx.role_status
    ctx.busy = ctx.busy_phase = None  # the pass is over: busy again only if failed targets wait for a retry
    s.done, s.failed = ledger.done(run), ledger.failed(run)
    what = describe(run)
    named = _name_failures(s, run, results)
    if not run.failed:
        s.run = None
        if action.completed_field:  # handled: nothing left to retry (what failed for good is named, and Stalled)
            setattr(s, action.completed_field, run.accepted_at)
    if not run.failed and not run.permanent:
        message = f"{action.done} {s.done} of {run.targets} pods for {what}."
        ctx.condition(action.condition, True, action.done, message)
        if ctx.condition_status("Degraded") == "True":
            ctx.condition("Degraded", False, "Recovered", "Every target pod succeeded.")
        elif ctx.condition_status("Degraded") is None:
            ctx.condition("Degraded", False, "AllPodsHealthy", "No target pod failed.")
        reason = action.done if first_pass else f"{action.done}AfterRetry"
        acknowledge(ctx, action, run, "Succeeded", reason, message)
        await events.post(ctx.obj, "Normal", action.done if first_pass else f"{action.name.title()}Recovered", message)
        metrics.REQUESTS.labels(ctx.kind.kind, action.name, "succeeded").inc()
        metrics.ACTION_SECONDS.labels(ctx.kind.kind, action.name).observe(
            (ctx.clock.wall() - parse_time(run.accepted_at)).total_seconds())
        return
    names = ", ".join(f"{p.pod} ({p.message})" for p in named[:5])
    count = len(run.failed) + len(run.permanent)
    ctx.condition("Degraded", True, "PodsFailed", f"{count} of {run.targets} pods failed: {names}")
    exhausted = bool(run.failed) and run.retries >= getattr(ctx.spec, "max_retries", DEFAULT_MAX_RETRIES)
    if exhausted:  # the retry budget is spent: what still fails is for a person to look at
        run.permanent, run.failed, s.run = sorted({*run.permanent, *run.failed}), [], None
        if action.completed_field:
            setattr(s, action.completed_field, run.accepted_at)
    if run.failed:
        run.first_pass_done = True
        wait = ledger.retry_delay(run.retries + 1)
        run.retry_at = format_time(ctx.clock.wall() + dt.timedelta(seconds=wait))
        ctx.wake_in(wait)
        message = f"{count} of {run.targets} pods failed for {what}: {names}; retrying at {run.retry_at}."
        ctx.mark_busy("RetryingFailedTargets", message)
        ctx.condition(action.condition, False, "PartlyFailed", message)
        if first_pass:
            acknowledge(ctx, action, run, "Failed", "PodsFailed", message)
            await events.post(ctx.obj, "Warning", f"{action.name.title()}Failed", message)
            metrics.REQUESTS.labels(ctx.kind.kind, action.name, "failed").inc()
        elif s.last_request is not None:
            s.last_request.message, s.last_request.finished_at = message[:2048], ctx.clock.now()
            s.last_request.done, s.last_request.failed = s.done, s.failed
        return
    # Nothing left to retry: the request ends Stalled (handled), so a kstatus wait ends; a new token or spec time
    # asks again.
    reason = "RetriesExhausted" if exhausted else "TargetsRefused"
    why = f"still failing after {run.retries} retry passes" if exhausted else "retrying cannot help"
    message = (f"{count} of {run.targets} pods failed for {what} and {why}: {names}. Fix that, then ask again (a "
               "new token or spec time).")
    ctx.condition(action.condition, False, reason, message)
    acknowledge(ctx, action, run, "Stalled", reason, message)
    await events.post(ctx.obj, "Warning", reason, message)
    metrics.REQUESTS.labels(ctx.kind.kind, action.name, "stalled").inc()


def _name_failures(s: Any, run: RunLedger, results: dict[str, PodResult]) -> list[PodResult]:
    """status.failedPods from the ledger: every pod failed now (retryable or not), named by this pass's result
    or, failing that, by the one recorded earlier (an earlier wave, an earlier pass); the count is the ledger's."""
    failing = set(run.failed) | set(run.permanent)
    named = {p.uid: p for p in s.failed_pods or [] if p.uid in failing}
    named.update({u: r for u, r in results.items() if u in failing})
    s.failed_pods = sorted(named.values(), key=lambda p: p.pod)[:MAX_FAILED_PODS] or None
    return s.failed_pods or []
