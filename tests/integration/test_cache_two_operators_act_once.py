"""Two operator processes at once: only the Lease holder acts, so each request flushes each pod once."""

from __future__ import annotations

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_deployment,
    pod_ips,
    status,
    wait_handled,
    wait_memcached,
)
from harness import Cluster, Operator, deployment, running_pods, wait_for


def test_two_operators_flush_each_pod_once_and_the_standby_takes_over(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 3))
    running_pods(local_bed, namespace, "app=mc", 3)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    wait_memcached(ips)
    first = operator.start()
    second = operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 1, "observed")

    annotate_clear(local_bed, namespace, "mc", "one")
    wait_handled(local_bed, namespace, "mc", "one")
    annotate_clear(local_bed, namespace, "mc", "two")
    wait_handled(local_bed, namespace, "mc", "two")
    assert [cmd_flush(ip) for ip in ips] == [2, 2, 2]

    # Whichever holds the Lease dies; the other takes over and handles the next request, once.
    leader = first if "acquired" in (operator.log_dir / "operator-0.log").read_text() else second
    operator.kill(leader)
    annotate_clear(local_bed, namespace, "mc", "three")
    wait_handled(local_bed, namespace, "mc", "three", 60)
    assert [cmd_flush(ip) for ip in ips] == [3, 3, 3]


def test_a_second_operator_on_a_taken_metrics_address_says_which_flag_to_set(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    from testbed.cluster import free_port

    address = f"127.0.0.1:{free_port()}"
    first = operator.start("--metrics-address", address)
    wait_for(lambda: "acquired as" in (operator.log_dir / "operator-0.log").read_text(), "the first to lead")
    second = operator.start("--metrics-address", address)
    second.wait(timeout=60)
    log = (operator.log_dir / "operator-1.log").read_text()
    assert second.returncode != 0 and "--metrics-address" in log and "standby" in log, log
    assert first.poll() is None
