"""CacheServer: clear every target once per request, stop/start the workload, refresh stats.

Observes: the CacheServer (spec, the clear annotation, our own status), its pods and workload.
Triggers: FLUSHALL / flush_all on each target pod, scale-subresource patches, status writes and Events.

The clear is a declaration on the request core (runs/request.py), which carries the lifecycle: a clear
runs when the annotation holds a value not yet echoed in status.lastHandledClearRequest, or when
spec.clearedAfter is later than status.lastClearedAt.
"""

from __future__ import annotations

from typing import Any

from rolecall import metrics
from rolecall.api.kinds import CACHE_SERVER
from rolecall.api.v1alpha1.cacheserver import CLEAR_ANNOTATION, CacheServerSpec, CacheServerStatus, CacheStats
from rolecall.engines import CACHE_ENGINES, Credentials, Endpoint, EngineError
from rolecall.engines.base import CacheFigures
from rolecall.roles.common import (
    figures_due,
    hibernated,
    next_figures_in,
    pods_matched,
    read_credentials,
    reconcile_with,
    stop_start,
)
from rolecall.runs import fanout, request
from rolecall.runs.context import Context, Memory, Runtime
from rolecall.runs.reasons import Stall
from rolecall.targets import pods
from rolecall.targets.pods import Target

Ctx = Context[CacheServerSpec, CacheServerStatus]


async def _credentials(ctx: Ctx) -> Credentials | None:
    return await read_credentials(ctx.ns, ctx.spec.credentials_secret_ref)


async def _targets(ctx: Ctx) -> list[Target]:
    return await pods.resolve(ctx.ns, ctx.spec.selector, ctx.spec.node_selector)


def _endpoint(ctx: Ctx, ip: str, creds: Credentials | None) -> Endpoint:
    engine = CACHE_ENGINES[ctx.spec.engine]
    return Endpoint(ip=ip, port=ctx.spec.port or engine.default_port, timeout=float(ctx.spec.timeout_seconds),
                    credentials=creds)


async def _clear(ctx: Ctx, creds: Credentials | None, target: Target, ip: str) -> str:
    engine, ep = CACHE_ENGINES[ctx.spec.engine], _endpoint(ctx, ip, creds)
    if await engine.role(ep) == "replica":
        raise fanout.Skip("replica: skipped, it follows its primary's clear")
    return await engine.clear(ep)


CLEAR: request.Action[Credentials | None] = request.Action(
    name="clear", condition="Cleared", busy="Clearing", done="Cleared", noun="cache clear",
    token_annotation=CLEAR_ANNOTATION, handled_field="last_handled_clear_request", after_field="cleared_after",
    completed_field="last_cleared_at", schedule_field="clear_schedule", waves_field="clear_waves",
    resolve=_targets, act=_clear,
    prepare=_credentials, hold=hibernated,
    rights=lambda ctx: ("clear", "credentials") if ctx.spec.credentials_secret_ref else ("clear",))


async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
    return await reconcile_with(CACHE_SERVER, body, memory, runtime, CacheServerSpec, CacheServerStatus, _work)


async def _work(ctx: Ctx) -> None:
    await stop_start(ctx)
    await request.step(ctx, CLEAR)
    await _stats(ctx)


async def _stats(ctx: Ctx) -> None:
    """Aggregated engine figures every statsIntervalSeconds (read-only; written only when they change)."""
    if not figures_due(ctx):
        return
    with next_figures_in(ctx, float(ctx.spec.stats_interval_seconds)):
        targets = await _targets(ctx)
    try:
        creds = await _credentials(ctx)
    except Stall:
        return  # a clear names the missing Secret; stats simply wait for it
    figures: list[CacheFigures] = []
    engine = CACHE_ENGINES[ctx.spec.engine]

    async def read(t: Target) -> str:
        figures.append(await engine.figures(_endpoint(ctx, t.probe_address(), creds)))
        return "ok"

    async def ignore(_: fanout.Outcome[Target]) -> None:
        return None

    await fanout.fan_out(targets, read, fanout.limit_of(ctx.spec.concurrency, max(1, len(targets))), ignore,
                         attempts=1, timeout=float(ctx.spec.timeout_seconds))
    metrics.STATS_REFRESHES.labels("CacheServer").inc()
    pods_matched(ctx, len(targets))
    if ctx.status.run is None:
        ctx.status.targets = len(targets)  # the Pods column: how many pods the role has now
    if not figures:
        return
    _record_stats(ctx, figures)


def _record_stats(ctx: Ctx, figures: list[CacheFigures]) -> None:
    hits, misses = sum(f.hits for f in figures), sum(f.misses for f in figures)
    live = (ctx.ns, ctx.name)
    metrics.CACHE_ITEMS.labels(*live).set(sum(f.items for f in figures))
    metrics.CACHE_BYTES.labels(*live).set(sum(f.bytes for f in figures))
    metrics.CACHE_EVICTIONS.labels(*live).set(sum(f.evictions for f in figures))
    if hits + misses:
        metrics.CACHE_HIT_RATIO.labels(*live).set(hits / (hits + misses))
    new = CacheStats(items=sum(f.items for f in figures), bytes=sum(f.bytes for f in figures),
                     hit_ratio=f"{100 * hits / (hits + misses):.1f}%" if hits + misses else None,
                     evictions=sum(f.evictions for f in figures))
    old = ctx.status.stats
    if old is None or (old.items, old.bytes, old.hit_ratio, old.evictions) != (
            new.items, new.bytes, new.hit_ratio, new.evictions):
        new.updated_at = ctx.clock.now()
        ctx.status.stats = new  # written only when a figure changed


__all__ = ["CLEAR", "EngineError", "reconcile"]
