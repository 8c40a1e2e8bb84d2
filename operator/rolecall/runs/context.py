"""What one reconcile of one object works with: its body, spec, status writer, typed memory and clock.

`Memory` lives as long as the object is watched and is keyed by the object's UID (a deleted and
re-created object is a new object with a fresh memory). The reconcile's outcome for people is gathered
here while it runs (conditions, Events to post, why it is busy or stalled, when to wake up) and written
once at its end by `roles.common.finish`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from rolecall import metrics
from rolecall.api.kinds import Kind
from rolecall.api.types import Model, format_time
from rolecall.api.v1alpha1.common import RequestStatus, RoleStatus
from rolecall.runs import conditions, fence
from rolecall.runs.packing import pack
from rolecall.runs.status import StatusWriter, set_condition
from rolecall.targets.pods import Target

SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)


@dataclass
class Clock:
    """Wall time for status and schedules, monotonic time for waits; tests pass a fake one."""

    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic

    def now(self) -> str:
        return format_time(self.wall())


@dataclass
class Runtime:
    """What every reconcile of this process shares: who it is (recorded as a run's holder) and its clock."""

    identity: str = "rolecall"
    clock: Clock = field(default_factory=Clock)


@dataclass
class Memory:
    """Per-object memory of this process (typed; see the module docstring)."""

    written: bytes | None = None  # the status as last written, packed (trusted over a watch event's older copy)
    resource_version: str | None = None  # of the object as last written or read by this process
    figures_due: float = 0.0  # monotonic time of the next periodic read (cache stats, web figures, db size)
    figures_generation: int | None = None  # the spec generation the figures were last read for
    targets: dict[str, Target] = field(default_factory=dict)  # the accepted run's targets by UID
    warned: tuple[str, str] | None = None  # the last (reason, message) posted as a Warning for a stall
    refusal: tuple[str, str] | None = None  # the last refusal posted (one Warning per distinct refusal)
    resumed_note: str | None = None  # the run (token/time) whose resumption was already reported
    progress_at: float = 0.0  # monotonic time of the last progress write of a long run
    errors: int = 0  # reconciles that failed in a row (for backoff)
    stall_checks: int = 0  # looks at a stalled cause in a row (for backoff)
    # The newest annotations seen by the watch, also while a reconcile runs (a cancel must reach a fan-out).
    annotations: dict[str, str] | None = None
    started_event: asyncio.Task[None] | None = None  # a run's start Event, still on its way


@dataclass
class Context(Generic[SpecT, StatusT]):
    kind: Kind
    obj: dict[str, Any]
    spec: SpecT
    out: StatusWriter[StatusT]
    memory: Memory
    clock: Clock
    identity: str = "rolecall"
    delays: list[float] = field(default_factory=list)
    # Outcome Events queued for after a status write that still has to happen (phase, stop/start).
    notices: list[tuple[str, str, str]] = field(default_factory=list)
    busy: tuple[str, str] | None = None  # Reconciling: (reason, message)
    stalled: tuple[str, str] | None = None  # Stalled: (reason, message)
    busy_phase: str | None = None
    stop_decision: bool | None = None  # stopped now (spec, override, windows): decided once per reconcile
    starting: bool = False  # the workload was scaled up and its pods are not all ready yet
    stopping: bool = False  # a stop is under way (e.g. draining connections before scaling down)

    @property
    def ns(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def plural(self) -> str:
        return self.kind.plural

    @property
    def status(self) -> StatusT:
        return self.out.status

    @property
    def role_status(self) -> RoleStatus:
        assert isinstance(self.out.status, RoleStatus)
        return self.out.status

    @property
    def request_status(self) -> RequestStatus:
        """The request core's part of the status (every kind with actions has it)."""
        assert isinstance(self.out.status, RequestStatus)
        return self.out.status

    @property
    def generation(self) -> int | None:
        gen = self.obj["metadata"].get("generation")
        return int(gen) if gen is not None else None

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})

    def condition(self, type: str, status: bool | str, reason: str, message: str) -> None:
        value = status if isinstance(status, str) else ("True" if status else "False")
        s = self.out.status
        s.conditions = set_condition(s.conditions, type, value, reason, message,  # type: ignore[attr-defined]
                                     self.generation, self.clock.now())

    def condition_status(self, type: str) -> str | None:
        conditions = self.out.status.conditions or []  # type: ignore[attr-defined]
        return next((c.status for c in conditions if c.type == type), None)

    def notify(self, type: str, reason: str, message: str) -> None:
        self.notices.append((type, reason, message))

    def wake_in(self, seconds: float) -> None:
        self.delays.append(max(0.0, seconds))

    def mark_busy(self, reason: str, message: str) -> None:
        if self.busy is None:
            self.busy = (reason, message)

    def mark_stalled(self, reason: str, message: str) -> None:
        if self.stalled is None:
            self.stalled = (reason, message)

    async def write(self) -> bool:
        """Sets phase and conditions from what this reconcile found, then writes what changed."""
        conditions.summarize(self)
        started = time.monotonic()
        wrote = await fence.when_allowed(self.kind.kind, self.out.flush)  # waits out a late Lease renewal
        if wrote:
            metrics.REQUEST_STEP.labels(self.kind.kind, "status-write").observe(time.monotonic() - started)
        if wrote:  # later reconciles trust this over a watch event's body, which may still be older
            self.memory.written = pack(self.out.written)
            self.memory.resource_version = self.out.resource_version
        return wrote
