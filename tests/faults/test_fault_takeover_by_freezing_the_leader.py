"""A takeover: the leader is frozen (SIGSTOP) mid-clear for three lease durations, the standby takes over
and finishes, then the old leader is thawed. It must not write a stale status (done never goes back), it
returns to standby in the same process (no exit), and the only repeats are the flushes it had in flight or
done but not yet written when it froze. The resumption is reported (Event RunResumed)."""

from __future__ import annotations

import time

import pytest

from cachekit import annotate_clear, cacheserver, create_cs, events, status
from faultkit import Sampler, slow_memcached, wait_acknowledged
from harness import Cluster, Operator, wait_for

PODS = 12
pytestmark = pytest.mark.faults


def _leader(op: Operator) -> int:
    """Index of the operator process that holds the Lease (its log says so last)."""
    def holder() -> int | None:
        for i in range(len(op.procs)):
            text = (op.log_dir / f"operator-{i}.log").read_text(errors="replace")
            if text.rfind("acquired as") > text.rfind("returning to standby"):
                return i
        return None

    return wait_for(lambda: (h := holder()) is not None and h + 1, "a leader", 30) - 1


@pytest.mark.parametrize("concurrency", [1, 2])
def test_frozen_leader_is_replaced_and_thaws_into_a_standby(fault_bed: Cluster, fault_namespace: str,
                                                            fault_operator: Operator, concurrency: int) -> None:
    ns, op = fault_namespace, fault_operator
    targets = slow_memcached(fault_bed, ns, "mc", PODS)
    baseline = targets.flushes()
    op.start()
    op.start()  # a standby beside it, with its own metrics address, as the README shows
    first = _leader(op)
    create_cs(fault_bed, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=concurrency))
    wait_for(lambda: status(fault_bed, ns, "mc").get("observedGeneration") == 1, "observed", 30)
    token = f"takeover-{concurrency}"
    sampler = Sampler(fault_bed, ns, "mc", token, targets, baseline).start()
    annotate_clear(fault_bed, ns, "mc", token)
    wait_for(lambda: 2 <= len(sampler.recorded) <= PODS - 6, "a fan-out partly recorded", 60, interval=0.05)

    op.freeze(op.procs[first], True)
    frozen_at = time.monotonic()
    flushed_at_freeze = {u for u, n in targets.flushes().items() if n > baseline[u]}
    recorded_at_freeze = set(sampler.recorded)
    time.sleep(3 * op.lease_seconds)  # three lease durations: the standby must have taken over
    st = wait_acknowledged(fault_bed, ns, "mc", token, 90)
    op.freeze(op.procs[first], False)
    thawed = time.monotonic()

    # The old leader must notice and step down, alive, without writing anything.
    log = op.log_dir / f"operator-{first}.log"
    wait_for(lambda: "returning to standby" in log.read_text(errors="replace"), "the old leader to step down", 30)
    sampler.check_once()
    time.sleep(2)  # a bounded window in which a stale write would show up in the samples
    sampler.stop()
    sampler.check_once()
    assert op.procs[first].poll() is None, "the old leader exited instead of becoming a standby"

    flushes = targets.flushes()
    twice = {u for u in flushes if flushes[u] - baseline[u] > 1}
    unrecorded = flushed_at_freeze - recorded_at_freeze
    print(f"concurrency {concurrency}: took over and finished {thawed - frozen_at:.1f}s after the freeze; "
          f"flushed twice {len(twice)} (done but unwritten at the freeze {len(unrecorded)}, in flight ≤ "
          f"{concurrency}); lies {len(sampler.lies)}; done values {sampler.done_seen}")
    assert sampler.lies == []
    assert sampler.done_seen == sorted(sampler.done_seen), f"a stale writer moved done back: {sampler.done_seen}"
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["done"] == PODS, st
    assert all(flushes[u] - baseline[u] >= 1 for u in flushes)
    assert not twice & recorded_at_freeze, "a pod recorded done before the freeze was flushed again"
    assert len(twice) <= concurrency + len(unrecorded), (twice, unrecorded)
    resumed = [e for e in events(fault_bed, ns, "mc") if e.reason == "RunResumed"]
    assert resumed and "interrupted after" in resumed[0].message, [e.reason for e in events(fault_bed, ns, "mc")]

    # The thawed process is a working standby: when the new leader dies, it takes over again.
    op.kill(op.procs[1 - first])
    annotate_clear(fault_bed, ns, "mc", f"{token}-after")
    st = wait_acknowledged(fault_bed, ns, "mc", f"{token}-after", 90)
    assert st["lastRequest"]["outcome"] == "Succeeded"
