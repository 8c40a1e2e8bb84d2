"""The apiserver goes away mid-fan-out (SIGKILL then a restart with the same command line, or SIGSTOP then
SIGCONT) for 5, 15 and 30 s: status never claims a pod that memcached did not flush, every pod ends
flushed, repeats stay within the bound, and the token is acknowledged with its outcome.

The bound (README, guarantees): pods acted on twice ≤ 2 * max(progress batch, concurrency) (started but not in a
progress write that landed); and a pod status had recorded done before the fault is never flushed again. The
operator runs with a progress batch of 5 here, so that with 20 pods the bound (10) says something.
"""

from __future__ import annotations

import time

import pytest

from cachekit import annotate_clear, cacheserver, condition, create_cs, status
from faultkit import Sampler, slow_memcached, wait_acknowledged
from harness import Cluster, Operator, wait_for
from testbed import cluster as bed

PODS, CONCURRENCY, PROGRESS_BATCH = 20, 2, 5
BOUND = 2 * max(PROGRESS_BATCH, CONCURRENCY)
pytestmark = pytest.mark.faults


@pytest.mark.parametrize("seconds", [5, 15, 30])
@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_apiserver_outage_mid_clear_tells_no_lie(fault_bed: Cluster, fault_namespace: str,
                                                 fault_operator: Operator, fault: str, seconds: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ns = fault_namespace
    monkeypatch.setenv("ROLECALL_PROGRESS_BATCH", str(PROGRESS_BATCH))  # the operator started below inherits it
    targets = slow_memcached(fault_bed, ns, "mc", PODS)
    baseline = targets.flushes()
    fault_operator.start()
    create_cs(fault_bed, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=CONCURRENCY))
    wait_for(lambda: status(fault_bed, ns, "mc").get("observedGeneration") == 1, "observed", 30)
    token = f"outage-{fault}-{seconds}"
    sampler = Sampler(fault_bed, ns, "mc", token, targets, baseline).start()
    annotate_clear(fault_bed, ns, "mc", token)
    # Mid-fan-out: some pods recorded done, most still pending (each flush takes 1.5 s, two at a time).
    wait_for(lambda: 4 <= len(sampler.recorded) < PODS - 6, "a fan-out partly recorded", 60, interval=0.05)
    recorded_before = set(sampler.recorded)

    apiserver = fault_bed.bed
    if fault == "kill":
        bed.kill(apiserver, "kube-apiserver")
    else:
        bed.freeze(apiserver, "kube-apiserver", True)
    time.sleep(seconds)  # the fault itself: the apiserver stays away this long
    back = time.monotonic()
    if fault == "kill":
        bed.restart(apiserver, "kube-apiserver")
    else:
        bed.freeze(apiserver, "kube-apiserver", False)

    st = wait_acknowledged(fault_bed, ns, "mc", token, 120)
    recovery = time.monotonic() - back
    sampler.stop()
    sampler.check_once()  # the final, acknowledged status too
    flushes = targets.flushes()
    extra = {targets.names[u]: flushes[u] - baseline[u] - 1 for u in flushes if flushes[u] - baseline[u] > 1}
    resumed = sampler.progress_after(back)
    print(f"fault={fault} {seconds}s: progress recorded again {resumed or 0:.1f}s and the request acknowledged "
          f"{recovery:.1f}s after the apiserver was back; "
          f"{sampler.samples} status samples, lies {len(sampler.lies)}, pods flushed twice {len(extra)} "
          f"(bound {BOUND}), recorded before the fault {len(recorded_before)}")

    assert sampler.lies == [], f"status claimed pods done that memcached never flushed: {sampler.lies}"
    assert st["lastRequest"]["outcome"] == "Succeeded", st["lastRequest"]
    assert st["lastHandledClearRequest"] == token and st["done"] == PODS and st["failed"] == 0, st
    assert condition(st, "Cleared")["status"] == "True" and condition(st, "Ready")["status"] == "True", st
    assert all(flushes[u] - baseline[u] >= 1 for u in flushes), "a pod was never flushed"
    assert all(flushes[u] - baseline[u] <= 2 for u in flushes), f"a pod was flushed more than twice: {flushes}"
    assert not any(flushes[u] - baseline[u] > 1 for u in recorded_before), \
        f"a pod recorded done before the fault was flushed again: {extra}"
    assert len(extra) <= BOUND
