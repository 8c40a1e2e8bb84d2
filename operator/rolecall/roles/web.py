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
import time
from dataclasses import dataclass, field
from typing import Any

from rolecall import metrics
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.webserver import (
    MAX_WEB_PODS,
    REFRESH_ANNOTATION,
    Drain,
    UsersSource,
    WebPodStatus,
    WebServerSpec,
    WebServerStatus,
)
from rolecall.engines import Endpoint, EngineError
from rolecall.engines.web import WEB_ENGINES, WebEngine, app_users
from rolecall.roles.common import RoleReconcile, stop_start, writer_for
from rolecall.runs import fanout
from rolecall.runs.status import now
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable, Target
from rolecall.targets.workload import WorkloadState

PLURAL = "webservers"
DRAIN_CHECK_SECONDS = 1.0  # how often a draining stop re-reads the connection counts
SHORT_GRACE_SECONDS = 10  # a terminationGracePeriodSeconds below this leaves in-flight requests little time


@dataclass
class Reconcile(RoleReconcile[WebServerSpec, WebServerStatus]):
    engine: WebEngine = field(default=WEB_ENGINES["nginx"])
    refreshed: bool = False  # figures were read during this reconcile (e.g. by the drain check)


async def reconcile(body: dict[str, Any], memo: dict[str, Any]) -> float | None:
    out = writer_for(PLURAL, body, memo, WebServerStatus)
    spec = WebServerSpec.model_validate(body["spec"])
    r = Reconcile("WebServer", body, spec, out, engine=WEB_ENGINES[spec.engine])
    metrics.RECONCILES.labels("WebServer").inc()
    try:
        if not spec.stopped and r.status.drain is not None:
            r.status.drain = None
            r.notify("Normal", "DrainCancelled", "stopped is false again: the draining stop was cancelled.")
        w = await stop_start(r, before_stop=_drained)
        if w is not None and not w.controller:
            _graceful_stop_check(r, w)
        await _refresh(r)
    finally:
        delay = await r.finish(None, "web role")
    return delay


# --- figures ------------------------------------------------------------------------------------------

def _refresh_token(r: Reconcile) -> str | None:
    token = (r.obj["metadata"].get("annotations") or {}).get(REFRESH_ANNOTATION)
    return token if token is not None and token != r.status.last_handled_refresh_request else None


async def _refresh(r: Reconcile) -> None:
    token = _refresh_token(r)
    due = r.memo.get("refresh_at", 0.0)
    spec_changed = r.memo.get("refreshed_generation") != r.generation  # e.g. a new userCount: read at once
    if r.refreshed or (token is None and not spec_changed and time.monotonic() < due):
        r.delays.append(max(0.0, due - time.monotonic()))
        return
    await _read_figures(r)


async def _read_figures(r: Reconcile) -> list[WebPodStatus]:
    """Reads every target pod's status page (and user count), updates status; returns per-pod results."""
    token = _refresh_token(r)
    interval = float(r.spec.refresh_interval_seconds)
    r.memo["refresh_at"] = time.monotonic() + interval
    r.memo["refreshed_generation"] = r.generation
    r.delays.append(interval)
    r.refreshed = True
    targets = await pods.resolve(r.ns, r.spec.selector.to_label_selector(), r.spec.node_selector)
    results: dict[str, WebPodStatus] = {}

    async def read(t: Target) -> str:
        results[t.uid] = await _read_pod(r, t)
        return "read"

    async def ignore(_: fanout.Outcome[Target]) -> None:
        return None

    # One attempt: a failure is reported per pod in status; the next refresh is the retry.
    await fanout.fan_out(targets, read, fanout.limit_of(r.spec.concurrency, max(1, len(targets))), ignore,
                         attempts=1, timeout=float(r.spec.timeout_seconds) * 2 + 1)
    for t in targets:  # a pod whose read timed out as a whole still gets a line
        results.setdefault(t.uid, WebPodStatus(pod=t.name, node=t.node, healthy=False,
                                               error="no answer within the timeout"))
    per_pod = sorted(results.values(), key=lambda p: p.pod)
    _apply(r, per_pod, token)
    metrics.STATS_REFRESHES.labels("WebServer").inc()
    return per_pod


async def _read_pod(r: Reconcile, t: Target) -> WebPodStatus:
    spec = r.spec
    line = WebPodStatus(pod=t.name, node=t.node, healthy=False)
    try:
        ip = t.probe_address()
    except NotActionable as e:
        line.error = str(e)
        return line
    timeout = float(spec.timeout_seconds)
    path = spec.status_path or r.engine.default_status_path
    try:
        figures = await r.engine.figures(Endpoint(ip, spec.port, timeout), path)
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


def _apply(r: Reconcile, per_pod: list[WebPodStatus], token: str | None) -> None:
    s, spec = r.status, r.spec
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
    if token is not None:
        s.last_handled_refresh_request = token
    if before != after or token is not None:
        s.refreshed_at = now()  # written only when something changed, or a refresh was asked for
    live = (r.ns, r.name)
    metrics.WEB_ACTIVE_CONNECTIONS.labels(*live).set(active)
    if users is not None:
        metrics.WEB_CURRENT_USERS.labels(*live).set(users)
    _health(r, per_pod)


def _health(r: Reconcile, per_pod: list[WebPodStatus]) -> None:
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

async def _drained(r: RoleReconcile[Any, Any], w: WorkloadState) -> bool:
    """Before scaling to 0: True once connections fell to the threshold or the drain deadline passed."""
    assert isinstance(r, Reconcile)
    timeout = r.spec.drain_timeout_seconds
    if not timeout:
        return True
    s, ref = r.status, r.spec.workload_ref
    what = f"{ref.kind} {ref.name}" if ref else "the workload"
    started = dt.datetime.now(dt.UTC)
    if s.drain is None:
        deadline = (started + dt.timedelta(seconds=timeout)).isoformat(timespec="seconds").replace("+00:00", "Z")
        s.drain = Drain(started_at=now(), deadline=deadline)
        r.notify("Normal", "DrainStarted",
                 f"Waiting up to {timeout}s for connections to fall to {r.spec.drain_threshold} before scaling "
                 f"{what} to 0.")
    drain = s.drain
    per_pod = await _read_figures(r)
    unreadable = [p for p in per_pod if not p.healthy]
    active = sum(p.active_connections or 0 for p in per_pod if p.healthy)
    drain.active_connections, drain.unreadable_pods = active, len(unreadable) or None
    if active <= r.spec.drain_threshold and not unreadable:
        s.drain = None
        r.notify("Normal", "Drained", f"{active} connections left on {what} (threshold {r.spec.drain_threshold}); "
                                      "scaling to 0.")
        return True
    if dt.datetime.now(dt.UTC) >= parse_time(drain.deadline):
        s.drain = None
        left = f"{active} connections still open" + (f", {len(unreadable)} pods unreadable" if unreadable else "")
        r.notify("Warning", "DrainTimedOut", f"{left} after {timeout}s; scaling {what} to 0 anyway.")
        return True
    waiting = f"{active} connections open (threshold {r.spec.drain_threshold})" + (
        f"; {len(unreadable)} pods unreadable, waited for until the deadline" if unreadable else "")
    r.condition("Stopped", False, "Draining", f"Draining {what}: {waiting}; scaling to 0 by {drain.deadline}.")
    r.delays.append(DRAIN_CHECK_SECONDS)
    return False


def _graceful_stop_check(r: Reconcile, w: WorkloadState) -> None:
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
