"""What every role reconcile shares: building its context, the error boundary, stop/start, credentials.

Observes: a role resource's spec (workloadRef, stopped) and its workload's scale.
Triggers: scale-subresource patches, the remembered-replicas annotation, status writes, Events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pydantic

from rolecall import kube, metrics
from rolecall.api.kinds import Kind
from rolecall.api.types import Model, SecretKeyRef, parse_time
from rolecall.api.v1alpha1.common import OVERRIDE_RUNNING, OVERRIDE_STOPPED, HistoryEntry, ReplicasFight
from rolecall.engines import Credentials
from rolecall.leadership import NotLeader
from rolecall.runs import authz, events, ledger, request, windows
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.runs.packing import pack, unpack
from rolecall.runs.reasons import Stall, classify
from rolecall.runs.status import StaleStatus, StatusWriter
from rolecall.targets import pods, workload

log = logging.getLogger(__name__)
SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)
TRANSIENT_BACKOFF = (1.0, 30.0)  # first and longest wait after an error retrying may fix
START_HOLD_SECONDS = 600  # after a start, new requests wait this long at most for the pods to be ready


def context(kind: Kind, body: dict[str, Any], memory: Memory, runtime: Runtime,
            spec: SpecT, status_model: type[StatusT]) -> Context[SpecT, StatusT]:
    """The context of one reconcile. Status is what this process last wrote when it wrote since the body
    was read (a watch event may still carry an older copy), else the body's."""
    meta = body["metadata"]
    status = status_model.model_validate(body.get("status") or {})
    written, rv = status.dump(), meta.get("resourceVersion")
    if memory.written is not None and pack(written) != memory.written:
        # The watch has not caught up with our last write: that write is the truth, on its resourceVersion.
        # (When it has caught up, the body's resourceVersion is the newer one, perhaps after the user changed
        # metadata or spec since: writing on it saves a conflict.)
        written, rv = unpack(memory.written), memory.resource_version
        status = status_model.model_validate(written)
    out = StatusWriter(kind.group, kind.version, kind.plural, meta["namespace"], meta["name"], status,
                       written=written, resource_version=rv, foreign=kind.foreign_status)
    return Context(kind, body, spec, out, memory, runtime.clock, runtime.identity)


async def reconcile_with(kind: Kind, body: dict[str, Any], memory: Memory, runtime: Runtime,
                         spec_model: type[SpecT], status_model: type[StatusT],
                         work: Callable[[Context[SpecT, StatusT]], Awaitable[None]]) -> float | None:
    """Runs one reconcile inside the error boundary: any exception (an invalid spec included) lands in
    Stalled or Reconciling with a reason from runs/reasons.py and a Warning Event, and the reconcile is
    retried with backoff. Losing the lead or a stale status is the queue's business and passes through."""
    metrics.RECONCILES.labels(kind.kind).inc()
    try:
        spec = spec_model.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as e:
        return await _failed(context(kind, body, memory, runtime, spec_model.model_construct(), status_model), e)
    ctx = context(kind, body, memory, runtime, spec, status_model)
    try:
        await work(ctx)
    except (NotLeader, StaleStatus, asyncio.CancelledError):
        raise
    except Exception as e:
        return await _failed(ctx, e)
    memory.errors = 0
    return await finish(ctx)


async def _failed(ctx: Context[Any, Any], e: Exception) -> float | None:
    stalled, reason, message = classify(e)
    if reason == "InternalError":
        log.exception("reconcile of %s %s/%s failed", ctx.kind.kind, ctx.ns, ctx.name)
    else:
        log.warning("reconcile of %s %s/%s: %s: %s", ctx.kind.kind, ctx.ns, ctx.name, reason, message)
    ctx.memory.errors += 1
    first, longest = TRANSIENT_BACKOFF if not stalled else (10.0, 300.0)
    ctx.wake_in(min(longest, first * 2 ** (ctx.memory.errors - 1)))
    if stalled:
        ctx.mark_stalled(reason, message)
    else:
        ctx.mark_busy(reason, f"{message}; retrying")
    try:
        return await finish(ctx)
    except (kube.Unavailable, kube.ApiException):
        if stalled:
            raise
        return min(ctx.delays)  # the apiserver is away: nothing can be written; try again later


async def finish(ctx: Context[Any, Any]) -> float | None:
    """Posts the queued Events (an outcome's Event comes before the write that records it), writes status
    once, and returns the next wake-up."""
    if ctx.stalled and ctx.memory.warned != ctx.stalled:
        ctx.notify("Warning", ctx.stalled[0], ctx.stalled[1])
    ctx.memory.warned = ctx.stalled
    for type, reason, message in ctx.notices:
        await events.post(ctx.obj, type, reason, message)
    ctx.notices.clear()
    await ctx.write()
    return min(ctx.delays) if ctx.delays else None


async def read_credentials(namespace: str, ref: SecretKeyRef | None) -> Credentials | None:
    """The engine credentials a spec names, from a Secret in the resource's own namespace (never logged)."""
    if ref is None:
        return None
    metrics.api("get", "secrets")
    try:
        secret = await asyncio.to_thread(kube.core().read_namespaced_secret, ref.name, namespace)
    except kube.ApiException as e:
        if e.status == 404:
            raise Stall("SecretNotFound", f"Secret {ref.name} (spec.credentialsSecretRef) not found in "
                                          f"{namespace}") from e
        raise
    data = secret.data or {}
    if ref.password_key not in data:
        raise Stall("SecretKeyMissing", f"Secret {ref.name} has no key {ref.password_key!r}")
    user = base64.b64decode(data[ref.username_key]).decode() if ref.username_key in data else None
    return Credentials(password=base64.b64decode(data[ref.password_key]).decode(), username=user)


def _stalled(ctx: Context[Any, Any], reason: str, message: str) -> None:
    """A stop or start that cannot go on: Stalled, looked at again with backoff (no watch on workloads)."""
    ctx.condition("Stopped", "Unknown", reason, message)
    ctx.mark_stalled(reason, message)
    ctx.memory.stall_checks += 1
    ctx.wake_in(ledger.retry_delay(ctx.memory.stall_checks))


# Called before scaling a workload down; returns True when it may go now (e.g. connections drained).
BeforeStop = Callable[[Context[Any, Any], workload.WorkloadState], Awaitable[bool]]


def figures_due(ctx: Context[Any, Any]) -> bool:
    """Whether the periodic figures (cache stats, web figures, database size) are due; if not, wake then."""
    left = ctx.memory.figures_due - ctx.clock.monotonic()
    if left > 0:
        ctx.wake_in(left)
    return left <= 0


@contextlib.contextmanager
def next_figures_in(ctx: Context[Any, Any], interval: float) -> Iterator[None]:
    """Schedules the next periodic read only when this one got through (a return is fine): an exception, e.g.
    the operator's pod listing refused (403), is looked at again with the error boundary's backoff, so its
    Stalled reason stays in status instead of being cleared by the next reconcile."""
    yield
    ctx.memory.figures_due = ctx.clock.monotonic() + interval
    ctx.wake_in(interval)


def pods_matched(ctx: Context[Any, Any], count: int) -> str | None:
    """What a periodic read makes of an empty target set: unless the workload is at 0 on purpose (stopped, or
    an HPA holding it there) or on its way up or down, Degraded NoTargetPods naming the selector, with one
    Warning; cleared when pods match again. Returns why there is nothing to read (None: pods match, or none
    are meant to now)."""
    s = ctx.role_status
    degraded = next((c for c in s.conditions or [] if c.type == "Degraded"), None)
    ours = degraded is not None and degraded.status == "True" and degraded.reason == "NoTargetPods"
    at_rest = s.replicas == 0 or ctx.starting or ctx.stopping or ctx.condition_status("Stopped") == "True"
    if count == 0 and not at_rest:
        why = pods.none_match(ctx.spec.selector, ctx.spec.node_selector)
        ctx.condition("Degraded", True, "NoTargetPods", f"{why}.")
        if not ours:
            ctx.notify("Warning", "NoTargetPods", f"{why} (is a label mistyped?).")
        return why
    if count and ours:
        ctx.condition("Degraded", False, "Recovered", f"{count} pods match spec.selector again.")
    return None


def not_degraded_while_stopped(ctx: Context[Any, Any]) -> None:
    """A role stopped on purpose (its workload at 0) has no pods to answer: a Degraded condition from the last
    reads (pods going away during the stop) is no fault, and would make the stopped role look broken."""
    if ctx.condition_status("Stopped") == "True" and ctx.condition_status("Degraded") == "True":
        ctx.condition("Degraded", False, "Stopped",
                      f"The {ctx.kind.kind} is stopped: its pods are not read until it runs again.")


def desired_stopped(ctx: Context[Any, Any]) -> bool:
    """Whether the role should be stopped now: spec.stopped > an override annotation > runWindows > running.
    Records the decision in status.runState (with runWindows or an override) and wakes when it changes."""
    if ctx.stop_decision is not None:
        return ctx.stop_decision  # one decision per reconcile, whoever asks (drain, stop/start, compaction)
    s, now = ctx.role_status, ctx.clock.wall()
    if ctx.spec.workload_ref is None:  # nothing to stop or start: windows need a workloadRef (admission says)
        s.run_state = None
        ctx.stop_decision = bool(ctx.spec.stopped)
        return ctx.stop_decision
    state = windows.decide(ctx.spec.stopped, ctx.spec.run_windows, ctx.annotations, now)
    overridden = OVERRIDE_RUNNING in ctx.annotations or OVERRIDE_STOPPED in ctx.annotations
    s.run_state = state if ctx.spec.run_windows is not None or overridden else None
    if state.until:
        ctx.wake_in(max(0.05, (parse_time(state.until) - now).total_seconds()))
    ctx.stop_decision = state.desired == "Stopped"
    return ctx.stop_decision


def hibernated(ctx: Context[Any, Any]) -> str | None:
    """Why a new fan-out request waits (stop_start ran first in this reconcile): the role is stopped (by spec,
    an override or its windows), stopping, or starting with pods not all ready. It runs once the role runs."""
    s = ctx.role_status
    # Only a workload that is at 0 (or being scaled there): one kept running (a stop refused, fought by
    # GitOps, owned by another controller) has pods to act on.
    if ctx.stopping or (desired_stopped(ctx) and s.replicas == 0):
        why = s.run_state.reason if s.run_state is not None else "spec.stopped is true"
        return f"the role is stopped ({why}); it runs once the role runs again"
    if ctx.starting and _started_within(ctx, START_HOLD_SECONDS):
        return f"the role is starting ({s.ready_replicas} of {s.replicas} replicas ready)"
    return None


def _started_within(ctx: Context[Any, Any], seconds: float) -> bool:
    """Whether rolecall started the workload less than `seconds` ago (Stopped went to False then); pods that
    are still not ready after that are a rollout's or a crash loop's business, and requests no longer wait."""
    stopped = next((c for c in ctx.role_status.conditions or [] if c.type == "Stopped"), None)
    if stopped is None or stopped.status != "False" or not stopped.last_transition_time:
        return False
    return (ctx.clock.wall() - parse_time(stopped.last_transition_time)).total_seconds() < seconds


async def stop_start(ctx: Context[Any, Any], before_stop: BeforeStop | None = None) -> workload.WorkloadState | None:
    """Scales the workload to 0 (remembering the count) or back; returns the workload as read, if any."""
    s, ref = ctx.role_status, ctx.spec.workload_ref
    stopped = desired_stopped(ctx)
    if ref is None:
        s.replicas = s.remembered_replicas = s.ready_replicas = None
        return None
    wants_change = stopped or s.remembered_replicas is not None
    try:
        w = await workload.read(ctx.ns, ref)
    except workload.WorkloadError as e:
        if wants_change:
            verb = "stop" if stopped else "start"
            _stalled(ctx, e.reason, f"{e}: rolecall cannot {verb} it (spec.workloadRef)")
        else:
            ctx.condition("Stopped", "Unknown", e.reason, str(e))
        return None
    what = f"{ref.kind} {ref.name}"
    s.replicas = w.replicas
    if w.controller:
        message = (f"{what} is managed by {w.controller}; rolecall does not scale workloads another controller "
                   "owns (it would undo the change)")
        if stopped:
            _stalled(ctx, "OwnedByController", message)
        else:
            ctx.condition("Stopped", "Unknown", "OwnedByController", message)
        return w
    ctx.memory.stall_checks = 0
    remembered = s.remembered_replicas
    if remembered is None and w.remembered is not None:
        # Remembered on the workload: by this resource (or one of the same name, deleted and re-created), it
        # is ours to restore; by another rolecall resource, starting it would fight that resource's stop.
        if w.stopped_by in (None, ctx.name):
            remembered = w.remembered
        elif not stopped:
            ctx.condition("Stopped", "Unknown", "StoppedByAnother",
                          f"{what} was stopped by {w.stopped_by}, which starts it again; this resource leaves it "
                          "alone")
            s.replicas = w.replicas
            return w
    if stopped:
        if w.replicas > 0 and _fought(ctx, w, what):
            return w
        if w.replicas > 0:
            if await _refused(ctx):
                return w
            if before_stop is not None and not await before_stop(ctx, w):
                ctx.stopping = True
                return w
            s.remembered_replicas = w.replicas
            ctx.stopping = True
            ctx.mark_busy("Stopping", f"Scaling {what} from {w.replicas} to 0 replicas.")
            ctx.condition("Stopped", False, "Stopping", f"Scaling {what} from {w.replicas} to 0 replicas.")
            await ctx.write()  # intent first: the count survives a crash between the two patches
            await workload.annotate(ctx.ns, ref, w.replicas, by=ctx.name)
            await workload.scale(ctx.ns, ref, 0)
            ctx.stopping = False
            ctx.busy = None
            ctx.notify("Normal", "Stopped", f"Scaled {what} from {w.replicas} to 0 replicas; {w.replicas} remembered.")
            metrics.REQUESTS.labels(ctx.kind.kind, "stop", "succeeded").inc()
            _remember_scale(ctx, "stop", w.replicas)
            remembered = w.replicas
        s.replicas = s.ready_replicas = 0
        s.remembered_replicas = remembered
        s.replicas_fought = None
        why = f" ({s.run_state.reason})" if s.run_state is not None else ""
        ctx.condition("Stopped", True, "Stopped",
                      f"{what} is scaled to 0{why}" + (f"; {remembered} replicas will be restored on start."
                                                       if remembered is not None else "."))
        return w
    replicas, ready = w.replicas, w.ready
    if remembered is not None:
        if w.replicas == 0:
            if await _refused(ctx):
                s.replicas = 0
                return w
            ctx.busy_phase = "Starting"
            ctx.mark_busy("Starting", f"Scaling {what} from 0 back to {remembered} replicas.")
            await ctx.write()
            await workload.scale(ctx.ns, ref, remembered)
            ctx.notify("Normal", "Started", f"Scaled {what} from 0 back to {remembered} replicas.")
            metrics.REQUESTS.labels(ctx.kind.kind, "start", "succeeded").inc()
            _remember_scale(ctx, "start", remembered)
            replicas, ready = remembered, 0
            ctx.busy_phase = None
            ctx.busy = None
        await workload.annotate(ctx.ns, ref, None, None)
        s.remembered_replicas = None
    s.replicas_fought = None  # the role runs: a later stop is a new one
    s.replicas = replicas
    s.ready_replicas = ready
    if ctx.condition_status("Stopped") is not None:
        ctx.condition("Stopped", False, "Running", f"{what} runs {replicas} replicas.")
    if ready < replicas:
        ctx.starting = True
        ctx.mark_busy("Starting", f"{ready} of {replicas} replicas of {what} are ready.")
        ctx.wake_in(2.0)  # re-read the workload until its pods are ready (reads only; no writes)
    return w


def _remember_scale(ctx: Context[Any, Any], action: str, replicas: int) -> None:
    """A stop or start in status.history, with the rule that decided it and who set that rule."""
    state, now = ctx.role_status.run_state, ctx.clock.now()
    trigger: Any = "Spec" if state is None or state.decided_by in ("Spec", "Default") else state.decided_by
    requester = authz.requester_of(ctx.obj, ctx.plural, "stop")
    request.remember(ctx, HistoryEntry(action=action, trigger=trigger, requester=requester.user if requester else None,
                                       accepted_at=now, finished_at=now, replicas=replicas, outcome="Succeeded"))


def _fought(ctx: Context[Any, Any], w: workload.WorkloadState, what: str) -> bool:
    """Whether a stop this resource had carried out was undone by another client: then Stalled
    (ReplicasFought) and no scale under this spec generation (scaling back would start a ping-pong with, e.g.,
    Argo CD's self-heal). A stop never seen through (Stopped not True yet) is no fight: it simply goes on."""
    s = ctx.role_status
    fight = s.replicas_fought
    if fight is not None and fight.generation != ctx.generation:
        s.replicas_fought = fight = None  # the spec changed since: stop again
    if fight is None:
        if ctx.condition_status("Stopped") != "True" or w.replicas_manager == workload.FIELD_MANAGER:
            return False
        fight = s.replicas_fought = ReplicasFight(manager=w.replicas_manager or "an unknown client",
                                                  replicas=w.replicas, detected_at=ctx.clock.now(),
                                                  generation=ctx.generation)  # the Stalled Warning says so once
    message = (f"{fight.manager} scaled {what} back to {fight.replicas} replicas at {fight.detected_at} while it "
               "should be stopped, and rolecall does not scale it again under this spec (no ping-pong). If Git "
               "owns replicas, make Argo CD / Flux ignore spec.replicas (see the README); then change the spec or "
               "set stopped: false and true again.")
    s.replicas = w.replicas
    ctx.condition("Stopped", False, "ReplicasFought", message)
    ctx.mark_stalled("ReplicasFought", message)
    return True


async def _refused(ctx: Context[Any, Any]) -> bool:
    """The recorded requester must still hold the stop right; otherwise Stalled (RequesterNotAllowed)."""
    refused = await authz.refusal(ctx.plural, ctx.obj, authz.requester_of(ctx.obj, ctx.plural, "stop"), "stop")
    if refused is None:
        return False
    ctx.condition("Stopped", False, *refused)
    ctx.mark_stalled(*refused)
    return True
