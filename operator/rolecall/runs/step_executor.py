"""The Steps executor: ordered steps on one target (a database's primary), each checkpointed, resumed where it
stopped. Its unit of progress is the role's (a batch of rows, one compaction); the per-step ledger (a step's
cut-off, its rows deleted so far, its batch in flight) lives in the role's status next to `status.run`.

Promises kept here (each has a test):
- The run is on record before the target is touched: `status.run` (which steps, dry run or not, the
  requester) and the role's fresh step results are written by `accept`.
- Resume, never restart: a step leaves `run.pending` only once it finished and that is written; a restart or
  takeover goes on with the first pending step, from the role's checkpoint inside it.
- A cancel or the deadline is checked before every unit of work (`between_units`), as is the leader fence:
  nothing starts after either; the unit in flight finishes and is counted.
- A step that fails ends the run Failed at that step (the steps after it do not start); a failure that says
  nothing about the run (the apiserver away, an unsettled batch) propagates and the run is resumed later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from rolecall import kube, metrics
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.common import DryRunPlan, RunLedger
from rolecall.leadership import NotLeader
from rolecall.runs import events, ledger, queue
from rolecall.runs.action import Action
from rolecall.runs.context import Context
from rolecall.runs.outcome import acknowledge, halted
from rolecall.runs.triggers import Trigger, describe

T = TypeVar("T")
# A statement that hangs (a frozen database) is cancelled this long after the run's deadline at the latest.
DEADLINE_GRACE_SECONDS = 30.0


class Halted(Exception):
    """Raised between two units of work: a cancel or the deadline; nothing more starts."""

    def __init__(self, outcome: str, reason: str, why: str) -> None:
        super().__init__(why)
        self.outcome, self.reason, self.why = outcome, reason, why


class StepRole(Protocol[T]):
    """What a role declares for a Steps action: its steps, how to open the one target, and how to act."""

    def summary(self, ctx: Context[Any, Any]) -> str:
        """The steps in short, for messages, e.g. clearOldData(events) + compact."""

    def count(self, ctx: Context[Any, Any]) -> int:
        """How many steps a run has."""

    def dry_run(self, ctx: Context[Any, Any]) -> bool:
        """A new run only reports what it would do."""

    def begin(self, ctx: Context[Any, Any], run: RunLedger) -> None:
        """Fresh per-step results in status for a new run (written with the ledger, before the target is touched)."""

    def open(self, ctx: Context[Any, Any], prepared: Any) -> AbstractAsyncContextManager[T]:
        """The one target, for the whole run (e.g. a session on the primary, fenced on every statement)."""

    async def act(self, ctx: Context[Any, Any], target: T, index: int, dry_run: bool,
                  checkpoint: Callable[[], Awaitable[object]], between_units: Callable[[], None]) -> None:
        """Carry out (or plan) step `index`, resuming from its checkpoint in status."""

    def failure(self, e: Exception) -> str | None:
        """The message when `e` ends the run Failed at its step; None when it says nothing about the run."""

    def stop_step(self, ctx: Context[Any, Any], index: int, outcome: str, message: str) -> None:
        """Record on step `index` that the run ended there (Failed, Cancelled, TimedOut)."""

    def settle(self, ctx: Context[Any, Any], run: RunLedger, outcome: str) -> str:
        """The run ended with `outcome`: settle the role's view (totals, phase) and say what it did."""

    async def reported(self, ctx: Context[Any, Any], run: RunLedger, outcome: str) -> None:
        """After the run is acknowledged: copy its results elsewhere (e.g. to the DatabaseServer's status)."""

    def figures(self, ctx: Context[Any, Any]) -> dict[str, int | None]:
        """Totals of the run for its history entry, e.g. rows_deleted."""


class Steps(Generic[T]):
    """The executor of a Steps action (a DatabaseMaintenance run)."""

    def __init__(self, role: StepRole[T]) -> None:
        self.role = role

    async def plan(self, ctx: Context[Any, Any], action: Action[Any], token: str, trigger: Trigger) -> None:
        """A dry-run annotation: this kind plans with its own spec field, so the token is answered, not acted on."""
        message = (f"Dry run {token!r}: a {action.noun} is previewed with spec.dryRun: true, not with the "
                   f"{action.dry_run_annotation} annotation; nothing was changed.")
        ctx.request_status.last_dry_run = DryRunPlan(action=action.name, token=token, planned_at=ctx.clock.now(),
                                                     targets=0)  # answered once, not at every reconcile
        await events.post(ctx.obj, "Warning", "DryRunNotSupported", message)

    async def accept(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, trigger: Trigger) -> None:
        run.targets = self.role.count(ctx)
        run.pending = [str(i) for i in range(run.targets)]
        run.dry_run = self.role.dry_run(ctx) or None
        ctx.request_status.run = run
        self.role.begin(ctx, run)
        what, summary = trigger.describe(), self.role.summary(ctx)
        kind = "Dry run of" if run.dry_run else "Running"
        ctx.condition(action.condition, False, action.busy, f"{kind} {summary} for {what}.")
        ctx.mark_busy(action.busy, f"{kind} {summary} for {what}.")
        with metrics.REQUEST_STEP.labels(ctx.kind.kind, "ledger-write").time():
            await ctx.write()  # the run and its fresh step results are on record before the target is touched
        await events.post(ctx.obj, "Normal", "Started", f"{kind} {summary} for {what}.")

    def waiting(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger) -> bool:
        return False  # a failed step is not retried: the run ends at it (a schedule's next slot is a new run)

    def progress(self, run: RunLedger) -> str:
        return f"{ledger.done(run)} of {run.targets} steps"

    async def carry_out(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, prepared: Any) -> None:
        ctx.mark_busy(action.busy, f"{self.role.summary(ctx)}: step {ledger.done(run) + 1} of {run.targets} for "
                                   f"{describe(run)}.")
        limit = action.timeout_name

        def between_units() -> None:
            kube.check_write_guard()  # a process that may no longer lead starts nothing
            if queue.draining():  # a planned stop: the unit in flight is done and written; the next leader goes on
                raise NotLeader("the operator is stopping: the run goes on with the next leader")
            if halt := halted(ctx, run, limit):
                raise Halted(*halt)

        left = (parse_time(run.deadline) - ctx.clock.wall()).total_seconds() if run.deadline else None
        current: str | None = None  # the step under way (None between steps, and while its end is written)
        opened = False
        try:
            # A target that stops answering (frozen, partitioned) does not hold the run past its deadline: the
            # cancellation also cancels the statement on the server.
            async with asyncio.timeout(None if left is None else max(1.0, left) + DEADLINE_GRACE_SECONDS):
                async with self.role.open(ctx, prepared) as target:
                    opened = True
                    for index in list(run.pending):
                        between_units()
                        current = index
                        await self.role.act(ctx, target, int(index), bool(run.dry_run), ctx.write, between_units)
                        current = None
                        ledger.record(run, index, ledger.DONE)
                        await ctx.write()  # the step's end is on record before the next one starts
        except Halted as h:
            await self.stop(ctx, action, run, h.outcome, h.reason, h.why)
            return
        except Exception as e:
            past = run.deadline is not None and ctx.clock.wall() >= parse_time(run.deadline)
            if isinstance(e, TimeoutError) and past:
                await self.stop(ctx, action, run, "TimedOut", "TimedOut", f"{limit} ran out at {run.deadline}")
                return
            # The step that failed: the one under way, or, when the target could not be opened, the first one.
            at = current if current is not None else None if opened else next(iter(run.pending), None)
            message = (str(e) or "the target did not answer in time") if isinstance(e, TimeoutError) \
                else self.role.failure(e)
            if message is None or at is None:
                raise  # nothing said about a step (the apiserver away): the error boundary retries, the run resumes
            await self._failed(ctx, action, run, at, message)
            return
        outcome = "DryRun" if run.dry_run else "Succeeded"
        await self._end(ctx, action, run, outcome, "DryRun" if run.dry_run else action.done, "Normal", outcome)

    async def stop(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, outcome: str, reason: str,
                   why: str) -> None:
        if run.pending:
            self.role.stop_step(ctx, int(run.pending[0]), outcome, why)
        await self._end(ctx, action, run, outcome, reason, "Warning", reason, why)

    async def _failed(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, index: str,
                      message: str) -> None:
        self.role.stop_step(ctx, int(index), "Failed", message)
        ledger.record(run, index, ledger.FAILED, permanent=True)
        await self._end(ctx, action, run, "Failed", "OperationFailed", "Warning", "Failed", message)

    async def _end(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, outcome: str, reason: str,
                   event_type: str, event_reason: str, why: str | None = None) -> None:
        """The run ended: the role's view settled and the request acknowledged (lastRequest, history) before any
        await, so nothing that fails afterwards can leave the run ended but unacknowledged (and run again); its
        Event comes before the status write that records it."""
        s = ctx.request_status
        s.run = None
        ctx.busy = ctx.busy_phase = None
        result = self.role.settle(ctx, run, outcome)
        message = f"{result} ({why})" if why else result
        ctx.condition(action.condition, outcome in ("Succeeded", "DryRun"), reason, message)
        acknowledge(ctx, action, run, outcome, reason, message, dry_run=bool(run.dry_run),
                    figures=self.role.figures(ctx))
        ctx.wake_in(0.05)  # a schedule slot that passed while the run went on is due now
        metrics.REQUESTS.labels(ctx.kind.kind, action.name, outcome.lower()).inc()
        await events.post(ctx.obj, event_type, event_reason, message)
        await self.role.reported(ctx, run, outcome)
