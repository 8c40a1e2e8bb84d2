"""What a role declares for one action on the request core (runs/request.py), and the executor protocol.

The lifecycle (trigger → hold → rights → accept → execute → acknowledge → history) is the core's; what an
action does once accepted is its executor's: `PodFanOut` (runs/pod_executor.py: every target pod once, in
waves, with retries) or `Steps` (runs/step_executor.py: ordered steps on one target, each checkpointed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from rolecall.api.v1alpha1.common import RunLedger, ScheduleSpec, dry_run_annotation
from rolecall.runs.context import Context
from rolecall.runs.triggers import Trigger, camel
from rolecall.targets import pods
from rolecall.targets.pods import Target

P = TypeVar("P")
Held = str | tuple[str, str] | None  # why a request waits: a message, or (reason, message); None: it need not


class RequestFailed(Exception):
    """The request cannot be carried out now, but may be later (e.g. no PostgreSQL primary during a failover)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Refused(Exception):
    """The requester may not do what the request needs (a right the core's check cannot see by itself, e.g. the
    credentials of the DatabaseServer a maintenance names): the request ends Refused."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Executor(Protocol):
    """Carries out an accepted request; the lifecycle around it is the core's."""

    async def plan(self, ctx: Context[Any, Any], action: Action[Any], token: str, trigger: Trigger) -> None:
        """A dry run: report what a real run would do now, change nothing."""

    async def accept(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, trigger: Trigger) -> None:
        """Fill the new ledger (its targets or steps) and write it before anything is touched."""

    def waiting(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger) -> bool:
        """True when the run waits now (a pause, a backoff; shown in status and woken after it)."""

    def progress(self, run: RunLedger) -> str:
        """How far the run got, for people, e.g. "3 of 10 pods"."""

    async def carry_out(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, prepared: Any) -> None:
        """Act, checkpoint, and end the request (acknowledged) or leave it to be resumed (a retry, a wave)."""

    async def stop(self, ctx: Context[Any, Any], action: Action[Any], run: RunLedger, outcome: str, reason: str,
                   why: str) -> None:
        """End a cancelled or timed-out run with its true counts."""


async def _nothing(ctx: Context[Any, Any]) -> None:
    return None


@dataclass(frozen=True)
class Action(Generic[P]):
    """What a role declares for one action; the core does the rest."""

    name: str  # as in the rights table and the ledger, e.g. clear
    condition: str  # its condition type, e.g. Cleared
    busy: str  # Reconciling reason and phase while it runs, e.g. Clearing
    done: str  # condition reason and Event reason when it succeeded, e.g. Cleared
    noun: str  # for messages, e.g. "cache clear"
    token_annotation: str | None  # the request token, e.g. rolecall.dev/clear-requested-at
    handled_field: str | None  # status attribute echoing the handled token
    after_field: str | None  # spec attribute: "done at or after this time"
    completed_field: str | None  # status attribute: when the last completed request was accepted
    schedule_field: str | None = None  # spec attribute holding a ScheduleSpec: every slot is a request
    # Or the schedule built from the kind's own fields (a DatabaseMaintenance's schedule, timeZone, window).
    schedule_of: Callable[[Context[Any, Any]], ScheduleSpec | None] | None = None
    waves_field: str | None = None  # spec attribute holding Waves: the first pass goes a share at a time
    # The fan-out: which targets, and what to do on each (ctx, prepared, target, address). An action without
    # them and without an executor has no side effects (a web refresh): it only uses trigger detection and
    # acknowledgement.
    resolve: Callable[[Context[Any, Any]], Awaitable[list[Target]]] | None = None
    act: Callable[[Context[Any, Any], P, Target, str], Awaitable[str]] | None = None
    prepare: Callable[[Context[Any, Any]], Awaitable[P]] = _nothing  # type: ignore[assignment]
    rights: Callable[[Context[Any, Any]], tuple[str, ...]] = lambda ctx: ()
    # The "is this still the same pod" check, called just before each act: returns the address to use.
    same_target: Callable[[str, Target], Awaitable[str]] = pods.address
    attempts: int = 3
    # Why a new request must wait now (e.g. the role is stopped or still starting), or None: a held request is
    # not lost, it is accepted once this returns None (its token stays unhandled, its slot stays due). It may
    # read the apiserver (another maintenance running on the same database), and name its own reason.
    hold: Callable[[Context[Any, Any]], Held | Awaitable[Held]] = lambda ctx: None
    held_reason: str = "HeldWhileStopped"  # the condition reason while held, unless the hold names one
    executor: Executor | None = None  # None: PodFanOut over resolve/act
    # Where the token comes from when it is not an annotation (a one-shot maintenance: its creation), and the
    # trigger name history gives it.
    token_source: Callable[[Context[Any, Any]], str | None] | None = None
    token_trigger: str = "Annotation"  # noqa: S105 - a trigger name, not a secret
    # The spec attribute limiting a whole request (seconds after it was accepted; cancel-like when it runs out).
    timeout_field: str = "request_timeout_seconds"

    @property
    def timeout_name(self) -> str:
        """The spec field limiting a whole request, as users write it (e.g. requestTimeoutSeconds)."""
        return camel(self.timeout_field)

    @property
    def dry_run_annotation(self) -> str:
        """A dry run's token: the targets are resolved and reported, nothing is touched."""
        return dry_run_annotation(self.name)
