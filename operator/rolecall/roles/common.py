"""What every role reconcile shares: the status writer, the reconcile context, stop/start, phase and Ready.

Observes: a role resource's spec (workloadRef, stopped) and its workload's scale.
Triggers: scale-subresource patches, the remembered-replicas annotation, status writes, Events.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rolecall import kube, metrics
from rolecall.api.types import Model, SecretKeyRef
from rolecall.api.v1alpha1.common import RoleStatus, StopSpec
from rolecall.engines import Credentials, EngineError
from rolecall.runs import authz, events
from rolecall.runs.status import merge_patch, patch_status, set_condition
from rolecall.targets import workload

GROUP, VERSION = "rolecall.dev", "v1alpha1"
PLURALS = {"CacheServer": "cacheservers", "WebServer": "webservers", "DatabaseServer": "databaseservers"}
SpecT = TypeVar("SpecT", bound=StopSpec)
StatusT = TypeVar("StatusT", bound=RoleStatus)
ModelT = TypeVar("ModelT", bound=Model)


@dataclass
class StatusWriter(Generic[ModelT]):
    """Holds the status as last written, and writes only the difference (nothing if unchanged)."""

    plural: str
    namespace: str
    name: str
    status: ModelT
    memo: dict[str, Any]
    written: dict[str, Any] = field(default_factory=dict)

    async def flush(self) -> None:
        new = self.status.dump()
        patch = merge_patch(self.written, new)
        if not patch:
            return
        await patch_status(GROUP, VERSION, self.plural, self.namespace, self.name, patch)
        self.written = new
        # Later reconciles trust this over a watch event's body, which may still carry an older status.
        self.memo["status"] = type(self.status).model_validate(new)


def writer_for(plural: str, body: dict[str, Any], memo: dict[str, Any], model: type[ModelT]) -> StatusWriter[ModelT]:
    meta = body["metadata"]
    known = memo.get("status")
    status = known if isinstance(known, model) else model.model_validate(body.get("status") or {})
    return StatusWriter(plural, meta["namespace"], meta["name"], status.model_copy(deep=True), memo,
                        written=status.dump())


@dataclass
class RoleReconcile(Generic[SpecT, StatusT]):
    kind: str
    obj: dict[str, Any]
    spec: SpecT
    out: StatusWriter[StatusT]
    delays: list[float] = field(default_factory=list)
    # Events that report an outcome are posted after the status write that records it, so a person
    # never reads an Event that status does not yet reflect (and the write is shared with phase/stats).
    notices: list[tuple[str, str, str]] = field(default_factory=list)
    starting: bool = False  # the workload was scaled up and its pods are not all ready yet
    stopping: bool = False  # a stop is under way (e.g. draining connections before scaling down)
    flush_seconds: float = 0.0  # how long the final status write of this reconcile took

    @property
    def ns(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def status(self) -> StatusT:
        return self.out.status

    @property
    def memo(self) -> dict[str, Any]:
        return self.out.memo

    @property
    def generation(self) -> int | None:
        gen = self.obj["metadata"].get("generation")
        return int(gen) if gen is not None else None

    def condition(self, type: str, status: bool | str, reason: str, message: str) -> None:
        value = status if isinstance(status, str) else ("True" if status else "False")
        self.status.conditions = set_condition(self.status.conditions, type, value, reason, message,
                                               self.generation)

    def condition_status(self, type: str) -> str | None:
        return next((c.status for c in self.status.conditions or [] if c.type == type), None)

    def notify(self, type: str, reason: str, message: str) -> None:
        self.notices.append((type, reason, message))

    async def refused(self, condition: str, *actions: str) -> bool:
        """Checks the recorded requester's rights (runs.authz); on refusal sets `condition` False with the
        reason, posts one Warning Event per distinct refusal, and returns True: the caller must not act."""
        refusal = await authz.refusal(self.plural, self.obj, *actions)
        if refusal is None:
            self.memo.pop("refusal", None)
            return False
        reason, message = refusal
        self.condition(condition, False, reason, message)
        if self.memo.get("refusal") != refusal:
            self.memo["refusal"] = refusal
            self.notify("Warning", reason, message)
        return True

    async def finish(self, busy_phase: str | None, noun: str) -> float | None:
        """Sets phase and Ready, writes status once, then posts the Events; returns the next wake-up."""
        _phase(self, busy_phase, noun)
        started = time.monotonic()
        await self.out.flush()
        self.flush_seconds = time.monotonic() - started
        for type, reason, message in self.notices:
            await events.post(self.obj, type, reason, message)
        self.notices.clear()
        return min(self.delays) if self.delays else None


async def read_credentials(namespace: str, ref: SecretKeyRef | None) -> Credentials | None:
    """The engine credentials a spec names, from a Secret in the resource's own namespace (never logged)."""
    if ref is None:
        return None
    metrics.api("get", "secrets")
    secret = await asyncio.to_thread(kube.core().read_namespaced_secret, ref.name, namespace)
    data = secret.data or {}
    if ref.password_key not in data:
        raise EngineError(f"Secret {ref.name} has no key {ref.password_key!r}")
    user = base64.b64decode(data[ref.username_key]).decode() if ref.username_key in data else None
    return Credentials(password=base64.b64decode(data[ref.password_key]).decode(), username=user)


# Called before scaling a workload down; returns True when it may go now (e.g. connections drained).
BeforeStop = Callable[[RoleReconcile[Any, Any], workload.WorkloadState], Awaitable[bool]]


async def stop_start(r: RoleReconcile[Any, Any],
                     before_stop: BeforeStop | None = None) -> workload.WorkloadState | None:
    """Scales the workload to 0 (remembering the count) or back; returns the workload as read, if any."""
    ref = r.spec.workload_ref
    if ref is None:
        r.status.replicas = r.status.remembered_replicas = r.status.ready_replicas = None
        return None
    try:
        w = await workload.read(r.ns, ref)
    except workload.WorkloadError as e:
        r.condition("Stopped", "Unknown", e.reason, str(e))
        return None
    what = f"{ref.kind} {ref.name}"
    if w.controller:
        # Scaling a workload another controller owns would be undone by it (or fight it).
        r.condition("Stopped", "Unknown", "OwnedByController",
                    f"{what} is managed by {w.controller}; rolecall does not scale workloads another "
                    "controller owns")
        r.status.replicas = w.replicas
        return w
    remembered = r.status.remembered_replicas if r.status.remembered_replicas is not None else w.remembered
    if r.spec.stopped:
        if w.replicas > 0:
            if await r.refused("Stopped", "stop"):
                r.status.replicas = w.replicas
                return w
            if before_stop is not None and not await before_stop(r, w):
                r.stopping = True
                r.status.replicas = w.replicas
                return w
            r.status.remembered_replicas = w.replicas
            r.status.phase = "Stopping"
            r.condition("Stopped", False, "Stopping", f"Scaling {what} from {w.replicas} to 0 replicas.")
            await r.out.flush()  # intent first: the count survives a crash between the two patches
            await workload.annotate(r.ns, ref, w.replicas, by=r.name)
            await workload.scale(r.ns, ref, 0)
            r.notify("Normal", "Stopped", f"Scaled {what} from {w.replicas} to 0 replicas; {w.replicas} remembered.")
            metrics.REQUESTS.labels(r.kind, "stop", "succeeded").inc()
            remembered = w.replicas
        r.status.replicas = r.status.ready_replicas = 0
        r.status.remembered_replicas = remembered
        r.condition("Stopped", True, "Stopped",
                    f"{what} is scaled to 0" + (f"; {remembered} replicas will be restored on start."
                                                if remembered is not None else "."))
        return w
    replicas, ready = w.replicas, w.ready
    if remembered is not None:
        if w.replicas == 0:
            if await r.refused("Stopped", "stop"):
                r.status.replicas = 0
                return w
            r.status.phase = "Starting"
            await r.out.flush()
            await workload.scale(r.ns, ref, remembered)
            r.notify("Normal", "Started", f"Scaled {what} from 0 back to {remembered} replicas.")
            metrics.REQUESTS.labels(r.kind, "start", "succeeded").inc()
            replicas, ready = remembered, 0
        await workload.annotate(r.ns, ref, None, None)
        r.status.remembered_replicas = None
    r.status.replicas = replicas
    r.status.ready_replicas = ready
    if r.condition_status("Stopped") is not None:
        r.condition("Stopped", False, "Running", f"{what} runs {replicas} replicas.")
    if ready < replicas:
        r.starting = True
        r.delays.append(2.0)  # re-read the workload until its pods are ready (reads only; no writes)
    return w


def _phase(r: RoleReconcile[Any, Any], busy_phase: str | None, noun: str) -> None:
    s = r.status
    if busy_phase:
        s.phase = busy_phase
    elif r.stopping:
        s.phase = "Stopping"
    elif r.starting:
        s.phase = "Starting"
    elif r.spec.stopped and r.condition_status("Stopped") == "True":
        s.phase = "Stopped"
    elif r.condition_status("Degraded") == "True":
        s.phase = "Degraded"
    else:
        s.phase = "Running"
    s.observed_generation = r.generation
    ready = s.phase in ("Running", "Stopped")
    message = {"Running": f"The {noun} is running and nothing is pending.",
               "Stopped": f"The {noun} is stopped, as requested."}.get(
        s.phase or "", f"The {noun} is {str(s.phase).lower()}.")
    r.condition("Ready", ready, s.phase or "Unknown", message)
