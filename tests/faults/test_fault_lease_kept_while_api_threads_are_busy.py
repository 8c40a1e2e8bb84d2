"""The leader keeps its Lease while every thread of the operator's shared pool is busy: engine calls and
API calls queue there (`asyncio.to_thread`), the Lease renews on a thread of its own (leadership.py).

The pool is made small (ROLECALL_API_POOL=2) and the targets slow (each flush_all answers after 1.5 s), so
16 flushes at concurrency 8 keep both threads busy for ≥ 12 s with six more calls queued behind them: four
times the renew deadline of the 3 s Lease (2 s). Through the shared pool a renewal waits ~4.5 s in that
queue; the leader would miss its deadline, cancel the fan-out, take the Lease again and repeat the flushes
in flight (benchmarks/shards.py saw 2,963 flushes for 1,000 that way before the fix). Here the process
must lead one term throughout, the Lease must have been renewed during the fan-out by the same holder, and
memcached's own counters must show each pod flushed exactly once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import annotate_clear, cacheserver, create_cs, status
from faultkit import Sampler, acknowledged, slow_memcached, wait_acknowledged
from harness import Cluster, Operator, wait_for

PODS, CONCURRENCY, POOL, FLUSH_SECONDS = 16, 8, 2, 1.5
pytestmark = pytest.mark.faults


def _lease(cluster: Cluster, op: Operator) -> dict[str, Any]:
    lease = client.CoordinationV1Api(cluster.api_client).read_namespaced_lease("rolecall-operator",
                                                                                op.lease_namespace)
    return {"holder": lease.spec.holder_identity, "renewed": lease.spec.renew_time,
            "transitions": lease.spec.lease_transitions}


def test_lease_renewed_while_the_shared_pool_is_saturated(fault_bed: Cluster, fault_namespace: str,
                                                           fault_operator: Operator,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ns, op = fault_namespace, fault_operator
    monkeypatch.setenv("ROLECALL_API_POOL", str(POOL))  # the operator started below inherits it
    targets = slow_memcached(fault_bed, ns, "mc", PODS)
    baseline = targets.flushes()
    op.start()
    wait_for(lambda: "acquired as" in op.logs(), "the operator to lead", 30)
    create_cs(fault_bed, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=CONCURRENCY))
    wait_for(lambda: status(fault_bed, ns, "mc").get("observedGeneration") == 1, "observed", 30)
    before = _lease(fault_bed, op)

    token = "busy-pool"
    sampler = Sampler(fault_bed, ns, "mc", token, targets, baseline).start()
    started = time.monotonic()
    annotate_clear(fault_bed, ns, "mc", token)
    # While the fan-out keeps both threads busy with calls queued, watch the Lease: the same holder renews it.
    seen: list[dict[str, Any]] = []

    def lease_seen_until_acknowledged() -> bool:
        seen.append(_lease(fault_bed, op))
        return acknowledged(status(fault_bed, ns, "mc"), token)

    wait_for(lease_seen_until_acknowledged, f"{token} acknowledged", 120, interval=0.3)
    took = time.monotonic() - started
    st = wait_acknowledged(fault_bed, ns, "mc", token, 30)
    sampler.stop()
    sampler.check_once()

    after = _lease(fault_bed, op)
    flushes = {uid: n - baseline[uid] for uid, n in targets.flushes().items()}
    renewed_during = {s["renewed"] for s in seen} - {before["renewed"]}
    print(f"pool {POOL}, concurrency {CONCURRENCY}: {PODS} slow flushes acknowledged in {took:.1f}s; "
          f"leader terms {op.metric('rolecall_leader_terms_total'):g}; "
          f"flushes per pod {sorted(set(flushes.values()))}; "
          f"{len(renewed_during)} Lease renewals seen during the fan-out")
    # The fault was in place: two threads at 1.5 s a flush cannot finish 16 flushes in less than 12 s.
    assert took >= PODS * FLUSH_SECONDS / POOL - 1, f"{took:.1f}s: the pool was not {POOL} threads"
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["done"] == PODS, st
    assert sampler.lies == []
    assert op.metric("rolecall_leader_terms_total") == 1, "the leader lost its Lease while its pool was busy"
    assert "returning to standby" not in op.logs()
    assert {s["holder"] for s in [before, *seen, after]} == {before["holder"]}, (before, seen, after)
    assert {s["transitions"] for s in [before, *seen, after]} == {before["transitions"]}, (before, seen, after)
    # Renewed every second by design; at least one in every 3 s of the fan-out was seen (polled every 0.3 s).
    assert len(renewed_during) >= took / 3, f"{len(renewed_during)} renewals in {took:.1f}s while the pool was busy"
    assert flushes == dict.fromkeys(flushes, 1), f"pods flushed other than once: {flushes}"
