"""A planned handover (SIGTERM, as a rollout or `helm upgrade` stops the leader's pod) repeats nothing: the
leader starts no more pods, lets the flushes in flight finish, writes their outcomes and then hands the Lease
over; the standby goes on with the pods not started. memcached's own cmd_flush counts every pod flushed exactly
once, at concurrency 1 and 10. The handover time (SIGTERM to the standby acting) is printed, and, for
comparison, a SIGKILL's (the standby waits out the Lease; the crash bound applies there, not here)."""

from __future__ import annotations

import time

import pytest

from cachekit import annotate_clear, cacheserver, cmd_flush, create_cs, create_deployment, pod_ips, status
from harness import Cluster, Operator, deployment, running_pods, wait_for


def _leader(operator: Operator, first: int = 0) -> int:
    """The index of the operator process (from `first` on) that acquired the Lease."""
    def found() -> tuple[int] | None:
        for i in range(first, len(operator.procs)):
            if "acquired as" in (operator.log_dir / f"operator-{i}.log").read_text():
                return (i,)  # a tuple: index 0 is an answer too
        return None
    return wait_for(found, "a leader", 60)[0]


@pytest.mark.parametrize("concurrency", [1, 10])
def test_sigterm_mid_clear_flushes_every_pod_once(local_bed: Cluster, namespace: str, operator: Operator,
                                                  concurrency: int) -> None:
    pods = 4 if concurrency == 1 else 20  # each flush takes 1.5 s: the SIGTERM lands with flushes in flight
    create_deployment(local_bed, namespace, deployment("mc", "memcached", pods,
                                                       annotations={"testbed.rolecall.dev/options": "slow-flush"}))
    running_pods(local_bed, namespace, "app=mc", pods)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    operator.start()
    operator.start()
    lead = _leader(operator)
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=concurrency))
    wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 1, "observed", 60)
    annotate_clear(local_bed, namespace, "mc", "rollout")
    wait_for(lambda: sum(cmd_flush(ip) for ip in ips) >= 1, "the first flushes under way", 60)
    stopped_at = time.time()
    operator.terminate(operator.procs[lead])
    drained = time.time() - stopped_at
    last = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastHandledClearRequest") == "rollout"
                    and s.get("lastRequest"), "the standby to finish the request", 120)
    standby = operator.log_dir / f"operator-{1 - lead}.log"
    wait_for(lambda: "acquired as" in standby.read_text(), "the standby's takeover in its log", 30)
    flushes = [cmd_flush(ip) for ip in ips]
    print(f"concurrency {concurrency}: SIGTERM to exit {drained:.1f}s; flushes per pod {sorted(flushes)}; "
          f"outcome {last['outcome']}")
    assert flushes == [1] * pods, f"a pod flushed twice or never: {flushes}"
    assert last["outcome"] == "Succeeded" and last["done"] == pods, last
    assert "stopping: waiting up to" in (operator.log_dir / f"operator-{lead}.log").read_text()  # it drained


def test_handover_time_with_and_without_releasing_the_lease(local_bed: Cluster, namespace: str,
                                                            operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 1))
    running_pods(local_bed, namespace, "app=mc", 1)
    (ip,) = pod_ips(local_bed, namespace, "app=mc").values()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    times = {}
    for how, round_ in (("SIGTERM (Lease released)", "a"), ("SIGKILL (Lease expires)", "b")):
        before = len(operator.procs)
        operator.start()
        operator.start()
        lead = _leader(operator, before)
        wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 1, "observed", 60)
        stopped_at = time.monotonic()
        if round_ == "a":
            operator.terminate(operator.procs[lead])
        else:
            operator.kill(operator.procs[lead])
        annotate_clear(local_bed, namespace, "mc", f"after-{round_}")
        wait_for(lambda r=round_: status(local_bed, namespace, "mc").get("lastHandledClearRequest") == f"after-{r}",
                 "the standby to act", 60)
        times[how] = time.monotonic() - stopped_at
        operator.stop_all()
    print("handover (stop to the next request acknowledged): " + "; ".join(f"{k} {v:.1f}s" for k, v in times.items())
          + f"; Lease {operator.lease_seconds}s")
    assert cmd_flush(ip) == 2

