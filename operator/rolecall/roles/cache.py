"""CacheServer reconcile: stop/start the workload, clear every target once per request, refresh stats.

Observes: the CacheServer (spec, the clear annotation, our own status), its pods and workload.
Triggers: FLUSHALL / flush_all on each target pod, scale-subresource patches, status writes and Events.

Idempotency comes from status alone: a clear runs when the annotation holds a value not yet echoed in
status.lastHandledClearRequest, or when spec.clearedAfter is later than status.lastClearedAt. Before any
pod is touched, the request and its target pod UIDs are written to status.run (the ledger); progress is
written in batches; after a crash only pods still pending are redone (at most one batch repeats).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from rolecall import kube, metrics
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.cacheserver import (
    CLEAR_ANNOTATION,
    CacheServerSpec,
    CacheServerStatus,
    CacheStats,
)
from rolecall.api.v1alpha1.common import MAX_FAILED_PODS, MAX_POD_RESULTS, NodeSummary, PodResult, RunLedger
from rolecall.engines import CACHE_ENGINES, CacheEngine, Endpoint, EngineError
from rolecall.engines.base import CacheFigures
from rolecall.roles.common import RoleReconcile, read_credentials, stop_start, writer_for
from rolecall.runs import events, fanout
from rolecall.runs.status import now
from rolecall.targets import pods
from rolecall.targets.pods import NotActionable, Target

GROUP, VERSION, PLURAL = "rolecall.dev", "v1alpha1", "cacheservers"
# Progress is written after this many pod outcomes, or after PROGRESS_SECONDS with at least one new one.
PROGRESS_BATCH = int(os.environ.get("ROLECALL_PROGRESS_BATCH", "20"))
PROGRESS_SECONDS = float(os.environ.get("ROLECALL_PROGRESS_SECONDS", "2"))
RETRY_FAILED_AFTER = (10.0, 300.0)  # first and longest wait before failed pods are tried again
log = logging.getLogger(__name__)


@dataclass
class Reconcile(RoleReconcile[CacheServerSpec, CacheServerStatus]):
    engine: CacheEngine = field(default=CACHE_ENGINES["memcached"])


async def reconcile(body: dict[str, Any], memo: dict[str, Any]) -> float | None:
    out = writer_for(PLURAL, body, memo, CacheServerStatus)
    spec = CacheServerSpec.model_validate(body["spec"])
    r = Reconcile("CacheServer", body, spec, out, engine=CACHE_ENGINES[spec.engine])
    metrics.RECONCILES.labels("CacheServer").inc()
    busy = None
    try:
        await stop_start(r)
        await _clear(r)
        await _stats(r)
    finally:
        run = r.status.run
        busy = "Clearing" if run is not None and len(run.pending) > len(run.failed) else None
        delay = await r.finish(busy, "cache role")
        if r.memo.pop("request_done", False):
            metrics.REQUEST_STEP.labels("CacheServer", "status-write").observe(r.flush_seconds)
    return delay


# --- clear --------------------------------------------------------------------------------------------

def _wanted(r: Reconcile, now_: dt.datetime) -> tuple[str | None, str | None]:
    """(token, clearedAfter) a new clear must satisfy; both None when nothing is due."""
    token = (r.obj["metadata"].get("annotations") or {}).get(CLEAR_ANNOTATION)
    new_token = token if token is not None and token != r.status.last_handled_clear_request else None
    due_after = None
    if r.spec.cleared_after:
        t = parse_time(r.spec.cleared_after)
        last = parse_time(r.status.last_cleared_at) if r.status.last_cleared_at else None
        if last is None or last < t:
            if t <= now_:
                due_after = r.spec.cleared_after
            else:
                r.delays.append((t - now_).total_seconds())  # an in-process timer, rebuilt on restart
    return new_token, due_after


async def _clear(r: Reconcile) -> None:
    run = r.status.run
    token, after = _wanted(r, dt.datetime.now(dt.UTC))
    retrying = run is not None and run.targets > 0 and len(run.pending) <= len(run.failed) and bool(run.failed)
    if run is not None and retrying and (token or after):
        run = None  # a new request supersedes retries of an earlier one: it covers every pod again
    if run is None and not (token or after):
        return
    if run is not None and retrying and not _retry_due(r):
        return
    rights = ("clear", "credentials") if r.spec.credentials_secret_ref else ("clear",)
    if await r.refused("Cleared", *rights):
        return  # not accepted (or not resumed): the requester may not clear now; the condition says why
    if run is None:
        run = await _accept(r, token, after)
    await _carry_out(r, run)


def _retry_due(r: Reconcile) -> bool:
    memo = r.memo
    due = memo.get("retry_at", 0.0)
    if time.monotonic() >= due:
        return True
    r.delays.append(due - time.monotonic())
    return False


async def _accept(r: Reconcile, token: str | None, after: str | None) -> RunLedger:
    targets = await pods.resolve(r.ns, r.spec.selector.to_label_selector(), r.spec.node_selector)
    run = RunLedger(action="clear", token=token, cleared_after=after, accepted_at=now(), targets=len(targets),
                    pending=[t.uid for t in targets])
    r.memo["targets"] = {t.uid: t for t in targets}
    r.memo.pop("retry_at", None)
    r.memo["retries"] = 0
    s = r.status
    s.run, s.targets, s.done, s.failed = run, len(targets), 0, 0
    s.failed_pods, s.nodes = None, _node_summary(targets)
    request = f"request {token!r}" if token else f"clearedAfter {after}"
    r.condition("Cleared", False, "ClearRequested", f"Clearing {len(targets)} pods for {request}.")
    s.phase = "Clearing"
    with metrics.REQUEST_STEP.labels("CacheServer", "ledger-write").time():
        await r.out.flush()  # the ledger: request and target UIDs are recorded before any pod is touched
    await events.post(r.obj, "Normal", "ClearStarted", f"Clearing {len(targets)} {r.spec.engine} pods for {request}.")
    return run


def _node_summary(targets: list[Target]) -> list[NodeSummary] | None:
    per: dict[str, NodeSummary] = {}
    for t in targets:
        per.setdefault(t.node or "", NodeSummary(node=t.node or "(none)")).targets += 1
    return sorted(per.values(), key=lambda n: n.node)[:100] or None


async def _targets_by_uid(r: Reconcile, uids: list[str]) -> dict[str, Target]:
    known: dict[str, Target] = r.memo.get("targets", {})
    if all(u in known for u in uids):
        return known
    # After a restart: find the recorded UIDs among the namespace's pods (never by a stored IP).
    metrics.api("list", "pods")
    listed = await asyncio.to_thread(kube.core().list_namespaced_pod, r.ns,
                                     label_selector=r.spec.selector.to_label_selector())
    found = {p.metadata.uid: Target(p.metadata.uid, p.metadata.name, p.spec.node_name) for p in listed.items}
    r.memo["targets"] = found
    return found


async def _carry_out(r: Reconcile, run: RunLedger) -> None:
    s = r.status
    port = r.spec.port or r.engine.default_port
    try:
        creds = await read_credentials(r.ns, r.spec.credentials_secret_ref)
    except (EngineError, kube.ApiException) as e:
        message = f"credentials Secret unusable: {getattr(e, 'reason', None) or e}"
        r.condition("Degraded", True, "CredentialsUnavailable", message)
        r.condition("Cleared", False, "CredentialsUnavailable", message)
        r.delays.append(RETRY_FAILED_AFTER[0])
        return
    by_uid = await _targets_by_uid(r, run.pending)
    todo = [by_uid[u] for u in run.pending if u in by_uid]
    gone = [u for u in run.pending if u not in by_uid]
    first_pass = not run.failed
    failed_now: dict[str, PodResult] = {}
    retry_failed: list[str] = []
    last_flush = time.monotonic()
    unflushed = 0

    async def act(t: Target) -> str:
        try:
            ip = await pods.address(r.ns, t)
        except NotActionable as e:
            if e.gone:
                raise fanout.Skip(f"{e}; its cache went with it") from e
            raise (fanout.Permanent(str(e)) if e.permanent else EngineError(str(e))) from e
        ep = Endpoint(ip=ip, port=port, timeout=float(r.spec.timeout_seconds), credentials=creds)
        if await r.engine.role(ep) == "replica":
            raise fanout.Skip("replica: skipped, it follows its primary's clear")
        return await r.engine.clear(ep)

    async def record(o: fanout.Outcome[Target]) -> None:
        nonlocal last_flush, unflushed
        t = o.target
        metrics.POD_ACTIONS.labels("CacheServer", r.spec.engine, "clear", o.status).inc()
        result = PodResult(pod=t.name, node=t.node, outcome=o.status, message=o.message[:1024], at=now())
        if t.uid in run.pending:
            run.pending.remove(t.uid)
        if o.status == "Failed":
            failed_now[t.uid] = result
            if not o.permanent:
                retry_failed.append(t.uid)
        elif t.uid in run.failed:
            run.failed.remove(t.uid)
        s.recent_results = ([*(s.recent_results or []), result])[-MAX_POD_RESULTS:]
        if s.nodes:
            for n in s.nodes:
                if n.node == (t.node or "(none)"):
                    n.done += o.status != "Failed"
                    n.failed += o.status == "Failed"
        _counts(r, run, failed_now)
        unflushed += 1
        if unflushed >= PROGRESS_BATCH or time.monotonic() - last_flush >= PROGRESS_SECONDS:
            unflushed, last_flush = 0, time.monotonic()
            await r.out.flush()

    for u in gone:
        run.pending.remove(u)
    with metrics.REQUEST_STEP.labels("CacheServer", "engine-calls").time():
        await fanout.fan_out(todo, act, fanout.limit_of(r.spec.concurrency, max(1, run.targets)), record,
                             timeout=float(r.spec.timeout_seconds) * 2 + 5)
    run.failed = sorted(set(run.failed) | set(failed_now))
    _counts(r, run, failed_now)
    request = f"request {run.token!r}" if run.token else f"clearedAfter {run.cleared_after}"
    if first_pass and run.token:
        s.last_handled_clear_request = run.token  # handled, even if some pods failed: Degraded says which
    if not failed_now:
        s.run = None
        s.last_cleared_at = run.accepted_at
        s.failed_pods = None
        done = s.done or 0
        r.condition("Cleared", True, "Cleared", f"Cleared {done} of {run.targets} pods for {request}.")
        if r.condition_status("Degraded") == "True":
            r.condition("Degraded", False, "Recovered", "Every target pod was cleared.")
        elif r.condition_status("Degraded") is None:
            r.condition("Degraded", False, "AllPodsHealthy", "No target pod failed.")
        r.memo["request_done"] = True
        r.notify("Normal", "Cleared" if first_pass else "ClearRecovered",
                 f"Cleared {done} of {run.targets} {r.spec.engine} pods for {request}.")
        metrics.REQUESTS.labels("CacheServer", "clear", "succeeded").inc()
        metrics.ACTION_SECONDS.labels("CacheServer", "clear").observe(
            (dt.datetime.now(dt.UTC) - parse_time(run.accepted_at)).total_seconds())
        return
    names = ", ".join(f"{p.pod} ({p.message})" for p in list(failed_now.values())[:5])
    s.failed_pods = sorted(failed_now.values(), key=lambda p: p.pod)[:MAX_FAILED_PODS]
    run.pending = sorted(retry_failed)
    r.condition("Degraded", True, "PodsFailed", f"{len(failed_now)} of {run.targets} pods failed: {names}")
    r.condition("Cleared", False, "PartiallyCleared",
                f"{len(failed_now)} of {run.targets} pods could not be cleared for {request}; retrying.")
    if not run.pending:
        # Only permanent refusals remain (e.g. hostNetwork pods): nothing to retry. The clear is complete
        # for every pod it may act on; Degraded keeps naming the refused ones.
        s.run = None
        s.last_cleared_at = run.accepted_at
    else:
        retries = r.memo.get("retries", 0)
        wait = min(RETRY_FAILED_AFTER[1], RETRY_FAILED_AFTER[0] * 2 ** retries)
        r.memo["retries"] = retries + 1
        r.memo["retry_at"] = time.monotonic() + wait
        r.delays.append(wait)
    if first_pass:
        r.notify("Warning", "ClearFailed", f"{len(failed_now)} of {run.targets} pods failed for {request}: {names}")
        metrics.REQUESTS.labels("CacheServer", "clear", "failed").inc()


def _counts(r: Reconcile, run: RunLedger, failed_now: dict[str, PodResult]) -> None:
    r.status.failed = len(failed_now)
    r.status.done = run.targets - len(run.pending) - len(failed_now)


# --- stats --------------------------------------------------------------------------------------------

async def _stats(r: Reconcile) -> None:
    memo = r.memo
    interval = float(r.spec.stats_interval_seconds)
    due = memo.get("stats_at", 0.0)
    if time.monotonic() < due:
        r.delays.append(due - time.monotonic())
        return
    memo["stats_at"] = time.monotonic() + interval
    r.delays.append(interval)
    targets = await pods.resolve(r.ns, r.spec.selector.to_label_selector(), r.spec.node_selector)
    port = r.spec.port or r.engine.default_port
    try:
        creds = await read_credentials(r.ns, r.spec.credentials_secret_ref)
    except (EngineError, kube.ApiException):
        return
    figures: list[CacheFigures] = []

    async def read(t: Target) -> str:
        ip = await pods.address(r.ns, t)
        figures.append(await r.engine.figures(Endpoint(ip, port, float(r.spec.timeout_seconds), creds)))
        return "ok"

    async def ignore(_: fanout.Outcome[Target]) -> None:
        return None

    await fanout.fan_out(targets, read, fanout.limit_of(r.spec.concurrency, max(1, len(targets))), ignore,
                         attempts=1, timeout=float(r.spec.timeout_seconds))
    metrics.STATS_REFRESHES.labels("CacheServer").inc()
    if r.status.run is None:
        r.status.targets = len(targets)  # the Pods column: how many pods the role has now
    if not figures:
        return
    hits, misses = sum(f.hits for f in figures), sum(f.misses for f in figures)
    live = (r.ns, r.name)
    metrics.CACHE_ITEMS.labels(*live).set(sum(f.items for f in figures))
    metrics.CACHE_BYTES.labels(*live).set(sum(f.bytes for f in figures))
    metrics.CACHE_EVICTIONS.labels(*live).set(sum(f.evictions for f in figures))
    if hits + misses:
        metrics.CACHE_HIT_RATIO.labels(*live).set(hits / (hits + misses))
    new = CacheStats(items=sum(f.items for f in figures), bytes=sum(f.bytes for f in figures),
                     hit_ratio=f"{100 * hits / (hits + misses):.1f}%" if hits + misses else None,
                     evictions=sum(f.evictions for f in figures))
    old = r.status.stats
    if old is None or (old.items, old.bytes, old.hit_ratio, old.evictions) != (
            new.items, new.bytes, new.hit_ratio, new.evictions):
        new.updated_at = now()
        r.status.stats = new  # written only when a figure changed


