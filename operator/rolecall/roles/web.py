"""WebServer reconcile: stop (after draining connections) and start the workload, refresh per-pod figures.

Observes: the WebServer (spec, the refresh annotation, our own status), its pods and workload.
Triggers: status-page and user-count GETs on each target pod, scale-subresource patches, status writes,
Events.

Figures are refreshed every refreshIntervalSeconds (an in-process timer) and whenever the annotation
rolecall.dev/refresh-requested-at holds a value not yet echoed in status.lastHandledRefreshRequest; status
is written only when a figure changed or a refresh request was handled. A draining stop keeps its
deadline in status.drain, so an operator restart continues the same drain instead of starting anew.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rolecall import metrics
from rolecall.api.kinds import WEB_SERVER
from rolecall.api.types import format_time, parse_time
from rolecall.api.v1alpha1.webserver import (
    MAX_WEB_PODS,
    REFRESH_ANNOTATION,
    Drain,
    UsersSource,
    WebPodStatus,
    WebServerSpec,
    WebServerStatus,
)
from rolecall.engines import WEB_ENGINES, Endpoint, EngineError, app_users
from rolecall.roles.common import (
    desired_stopped,
    next_figures_in,
    not_degraded_while_stopped,
    pods_matched,
    reconcile_with,
    stop_start,
)
from rolecall.runs import fanout, request, triggers
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable, Target
from rolecall.targets.workload import WorkloadState

PLURAL = "webservers"
DRAIN_CHECK_SECONDS = 1.0  # how often a draining stop re-reads the connection counts
SHORT_GRACE_SECONDS = 10  # a terminationGracePeriodSeconds below this leaves in-flight requests little time


Ctx = Context[WebServerSpec, WebServerStatus]
# A refresh has no side effects: the core only detects its token and acknowledges it with an outcome.
REFRESH: request.Action[None] = request.Action(
    name="refresh", condition="Refreshed", busy="Refreshing", done="Refreshed", noun="refresh",
    token_annotation=REFRESH_ANNOTATION, handled_field="last_handled_refresh_request", after_field=None,
    completed_field=None)


async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
    return await reconcile_with(WEB_SERVER, body, memory, runtime, WebServerSpec, WebServerStatus, _work)


async def _work(ctx: Ctx) -> None:
    if not desired_stopped(ctx) and ctx.status.drain is not None:
        if ctx.status.drain.aborted_at is None:
            ctx.notify("Normal", "DrainCancelled", "the role should run again (spec.stopped false, a run window or "
                                                   "an override): the draining stop was cancelled.")
        ctx.status.drain = None
    w = await stop_start(ctx, before_stop=_drained)
    if w is not None and not w.controller:
        _graceful_stop_check(ctx, w)
    await _refresh(ctx)
    not_degraded_while_stopped(ctx)


# --- figures ------------------------------------------------------------------------------------------

async def _refresh(ctx: Ctx) -> None:
    token = triggers.token_due(ctx, REFRESH)
    m, clock = ctx.memory, ctx.clock
    spec_changed = m.figures_generation != ctx.generation  # e.g. a new userCount: read at once
    if token is None and not spec_changed and clock.monotonic() < m.figures_due:
        ctx.wake_in(m.figures_due - clock.monotonic())
        return
    per_pod = await _read_figures(ctx)
    nothing = pods_matched(ctx, len(per_pod))
    if token is not None:
        failing = [p for p in per_pod if p.error]
        outcome, reason = ("Failed", "NoTargetPods") if nothing else ("Failed", "PodsUnreadable") if failing \
            else ("Succeeded", "Refreshed")
        request.acknowledge_read(ctx, REFRESH, token, outcome, reason,
                                 f"Read {len(per_pod) - len(failing)} of {len(per_pod)} pods for request {token!r}"
                                 + (f": {nothing}." if nothing else "."))


async def _read_figures(ctx: Ctx) -> list[WebPodStatus]:
    """Reads every target pod's status page (and user count), updates status; returns per-pod results."""
    ctx.memory.figures_generation = ctx.generation
    with next_figures_in(ctx, float(ctx.spec.refresh_interval_seconds)):
        targets = await pods.resolve(ctx.ns, ctx.spec.selector, ctx.spec.node_selector)
    results: dict[str, WebPodStatus] = {}

    async def read(t: Target) -> str:
        results[t.uid] = await _read_pod(ctx, t)
        return "read"

    async def ignore(_: fanout.Outcome[Target]) -> None:
        return None

    # One attempt: a failure is reported per pod in status; the next refresh is the retry.
    await fanout.fan_out(targets, read, fanout.limit_of(ctx.spec.concurrency, max(1, len(targets))), ignore,
                         attempts=1, timeout=float(ctx.spec.timeout_seconds) * 2 + 1)
    for t in targets:  # a pod whose read timed out as a whole still gets a line
        results.setdefault(t.uid, WebPodStatus(pod=t.name, node=t.node, healthy=False,
                                               error="no answer within the timeout"))
    per_pod = sorted(results.values(), key=lambda p: p.pod)
    _apply(ctx, per_pod)
    metrics.STATS_REFRESHES.labels("WebServer").inc()
    return per_pod


async def _read_pod(ctx: Ctx, t: Target) -> WebPodStatus:
    spec, engine = ctx.spec, WEB_ENGINES[ctx.spec.engine]
    line = WebPodStatus(pod=t.name, node=t.node, healthy=False)
    try:
        ip = t.probe_address()
    except NotActionable as e:
        line.error = str(e)
        return line
    timeout = float(spec.timeout_seconds)
    path = spec.status_path or engine.default_status_path
    try:
        figures = await engine.figures(Endpoint(ip, spec.port, timeout), path)
    except EngineError as e:
        line.error = f"status page: {e}"[:512]
        return line
    line.healthy, line.active_connections, line.requests = True, figures.active_connections, figures.requests
    if spec.user_count is not None:
        uc = spec.user_count
        try:
            line.current_users = await app_users(Endpoint(ip, uc.port or spec.port, timeout), uc.path, uc.field)
        except EngineError as e:
            line.error = f"user count: {e}"[:512]
    return line


def _apply(ctx: Ctx, per_pod: list[WebPodStatus]) -> None:
    s, spec = ctx.status, ctx.spec
    healthy = [p for p in per_pod if p.healthy]
    active = sum(p.active_connections or 0 for p in healthy)
    source: UsersSource = "activeConnections"
    users: int | None = active
    if spec.user_count is not None:
        counts = [p.current_users for p in healthy if p.current_users is not None]
        users = (sum(counts) if spec.user_count.aggregate == "sum" else max(counts)) if counts else None
        source = "application"
    before = (s.active_connections, s.current_users, s.current_users_source, s.requests_served, s.healthy_pods,
              s.targets, [p.dump() for p in s.pods or []])
    s.active_connections, s.current_users, s.current_users_source = active, users, source
    s.requests_served = sum(p.requests or 0 for p in healthy)
    s.healthy_pods, s.targets = len(healthy), len(per_pod)
    s.pods = per_pod[:MAX_WEB_PODS] or None
    after = (s.active_connections, s.current_users, s.current_users_source, s.requests_served, s.healthy_pods,
             s.targets, [p.dump() for p in s.pods or []])
    if before != after or triggers.token_due(ctx, REFRESH) is not None:
        s.refreshed_at = ctx.clock.now()  # written only when something changed, or a refresh was asked for
    live = (ctx.ns, ctx.name)
    metrics.WEB_ACTIVE_CONNECTIONS.labels(*live).set(active)
    if users is not None:
        metrics.WEB_CURRENT_USERS.labels(*live).set(users)
    _health(ctx, per_pod)


def _health(r: Ctx, per_pod: list[WebPodStatus]) -> None:
    if not per_pod:
        return  # no pod to read: pods_matched says whether that is a fault
    failing = [p for p in per_pod if p.error]
    was = r.condition_status("Degraded")
    if failing:
        names = "; ".join(f"{p.pod}: {p.error}" for p in failing[:5])
        more = f" (and {len(failing) - 5} more)" if len(failing) > 5 else ""
        reason = "StatusPageUnavailable" if any(not p.healthy for p in failing) else "UserCountUnavailable"
        message = f"{len(failing)} of {len(per_pod)} pods could not be read: {names}{more}"
        r.condition("Degraded", True, reason, message)
        if was != "True":
            r.notify("Warning", reason, message)
    elif was == "True":
        r.condition("Degraded", False, "Recovered", f"All {len(per_pod)} pods answered.")
        r.notify("Normal", "StatusRecovered", f"All {len(per_pod)} pods answered again.")
    elif was is None:
        r.condition("Degraded", False, "AllPodsAnswered", f"All {len(per_pod)} pods answered.")


# --- draining stop ------------------------------------------------------------------------------------

async def _drained(r: Ctx, w: WorkloadState) -> bool:
    """Before scaling to 0: True once the drain figure fell to the threshold, or the deadline passed with
    drainOnTimeout proceed. With abort, a timed-out drain holds the workload running (Stalled, DrainAborted)
    until the spec changes; a role that should run again clears the drain (see _work)."""
    spec, s, ref = r.spec, r.status, r.spec.workload_ref
    timeout = spec.drain_timeout_seconds
    if not timeout:
        return True
    what = f"{ref.kind} {ref.name}" if ref else "the workload"
    if s.drain is not None and s.drain.aborted_at is not None:
        if s.drain.generation == r.generation:
            _drain_aborted(r, s.drain, what)
            return False
        s.drain = None  # the spec changed since: a new stop, a new drain
    started = r.clock.wall()
    if s.drain is None:
        s.drain = Drain(started_at=format_time(started), deadline=format_time(started + dt.timedelta(seconds=timeout)),
                        figure=spec.drain_on, generation=r.generation)
        r.notify("Normal", "DrainStarted",
                 f"Waiting up to {timeout}s for {spec.drain_on} to fall to {spec.drain_threshold} before scaling "
                 f"{what} to 0.")
    drain = s.drain
    per_pod = await _read_figures(r)
    if drain.figure == "currentUsers":
        unreadable = [p for p in per_pod if not p.healthy or p.current_users is None]
        value = s.current_users or 0
    else:
        unreadable = [p for p in per_pod if not p.healthy]
        value = sum(p.active_connections or 0 for p in per_pod if p.healthy)
    drain.value, drain.unreadable_pods = value, len(unreadable) or None
    drain.active_connections = s.active_connections
    left = f"{drain.figure} {value} (threshold {spec.drain_threshold})"
    if value <= spec.drain_threshold and not unreadable:
        s.drain = None
        r.notify("Normal", "Drained", f"{left} on {what}; scaling to 0.")
        return True
    unread = f", {len(unreadable)} pods unreadable" if unreadable else ""
    if r.clock.wall() >= parse_time(drain.deadline):
        if spec.drain_on_timeout == "abort":
            # Held under the generation it aborted in (the spec may have changed while it drained); the Stalled
            # condition's Warning Event says so once.
            drain.aborted_at, drain.generation = r.clock.now(), r.generation
            _drain_aborted(r, drain, what)
            return False
        s.drain = None
        r.notify("Warning", "DrainTimedOut", f"{left}{unread} after {timeout}s; scaling {what} to 0 anyway.")
        return True
    waiting = f"{left}" + (f"; {len(unreadable)} pods unreadable, waited for until the deadline" if unreadable else "")
    message = f"Draining {what}: {waiting}; scaling to 0 by {drain.deadline}."
    r.condition("Stopped", False, "WaitingForDrain", message)
    r.mark_busy("WaitingForDrain", message)
    r.wake_in(DRAIN_CHECK_SECONDS)
    return False


def _drain_aborted(r: Ctx, drain: Drain, what: str) -> None:
    unread = f" ({drain.unreadable_pods} pods unreadable)" if drain.unreadable_pods else ""
    message = (f"The drain before stopping {what} timed out at {drain.aborted_at} with {drain.figure} {drain.value} "
               f"(threshold {r.spec.drain_threshold}){unread} and drainOnTimeout abort: it keeps running. Change the "
               "spec (e.g. raise drainTimeoutSeconds) to try again, or set drainOnTimeout: proceed.")
    r.condition("Stopped", False, "DrainAborted", message)
    r.mark_stalled("DrainAborted", message)


def _graceful_stop_check(r: Ctx, w: WorkloadState) -> None:
    """Warns in status when the pods would drop in-flight requests on termination."""
    ref = r.spec.workload_ref
    what = f"{ref.kind} {ref.name}" if ref else "the workload"
    if not w.pre_stop:
        r.condition("GracefulStop", False, "NoPreStopHook",
                    f"Containers of {what} have no preStop hook: on SIGTERM nginx and Apache stop at once and cut "
                    "in-flight requests. Add one that stops the server gracefully (nginx -s quit; apachectl -k "
                    "graceful-stop).")
    elif w.grace_seconds < SHORT_GRACE_SECONDS:
        r.condition("GracefulStop", False, "ShortGracePeriod",
                    f"{what} allows only {w.grace_seconds}s for termination (terminationGracePeriodSeconds): "
                    f"in-flight requests may be cut; {SHORT_GRACE_SECONDS}s or more is advised.")
    else:
        r.condition("GracefulStop", True, "PreStopHookSet",
                    f"{what} has a preStop hook and a {w.grace_seconds}s termination grace period.")
