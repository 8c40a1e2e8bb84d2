"""What a request costs in API writes, that an idle resource costs none, stats, nodes, hostNetwork refusal."""

from __future__ import annotations

import math

from cachekit import (
    annotate_clear,
    cacheserver,
    condition,
    create_cs,
    create_deployment,
    create_pods,
    memcached,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
)
from harness import Cluster, Operator, deployment, running_pods, wait_for
from rolecall.runs.pod_executor import PROGRESS_BATCH  # the operator inherits this environment


def _writes(op: Operator) -> dict[str, float]:
    return {"status": op.metric("rolecall_api_requests_total", {"verb": "patch", "resource": "cacheservers/status"}),
            "events": op.metric("rolecall_api_requests_total", {"verb": "create", "resource": "events"})}


def _pod_reads(op: Operator) -> dict[str, float]:
    """Pod reads by rolecall's own code: LIST pages of the pod index's listings, and any GET."""
    return {verb: op.metric("rolecall_api_requests_total", {"verb": verb, "resource": "pods"})
            for verb in ("get", "list", "watch")}


def test_a_clear_costs_the_budgeted_writes_and_idle_costs_none(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    pods = 30
    create_deployment(local_bed, namespace, deployment("mc", "memcached", pods))
    running_pods(local_bed, namespace, "app=mc", pods, timeout=120)
    wait_memcached(list(pod_ips(local_bed, namespace, "app=mc").values()))
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=10,
                                                statsIntervalSeconds=10))
    wait_for(lambda: status(local_bed, namespace, "mc").get("phase") == "Running", "Running")
    refreshes = operator.metric("rolecall_stats_refreshes_total")
    wait_for(lambda: operator.metric("rolecall_stats_refreshes_total") >= refreshes + 1, "a settled stats refresh",
             30)

    before, reads_before = _writes(operator), _pod_reads(operator)
    annotate_clear(local_bed, namespace, "mc", "budget")
    wait_handled(local_bed, namespace, "mc", "budget")
    wait_for(lambda: operator.metric("rolecall_requests_total", {"action": "clear"}) >= 1, "request counted")
    after = _writes(operator)
    budget = math.ceil(pods / PROGRESS_BATCH) + 2
    assert after["status"] - before["status"] <= budget, (before, after, budget)
    assert after["events"] - before["events"] == 2  # ClearStarted + Cleared
    # Targets come from the pod index: the request read no pod (no LIST by selector, no GET per target). The
    # index's own watch may resume meanwhile (its streams end every ~60 s): that is not a read of the request.
    reads_after = _pod_reads(operator)
    assert (reads_after["get"], reads_after["list"]) == (0, reads_before["list"]), (reads_before, reads_after)
    assert reads_before["list"] >= 1 and reads_before["watch"] >= 1, reads_before

    # Idle: two more stats refreshes (the engines are read) but nothing changed, so nothing is written.
    idle_from = _writes(operator)
    refreshes = operator.metric("rolecall_stats_refreshes_total")
    wait_for(lambda: operator.metric("rolecall_stats_refreshes_total") >= refreshes + 2, "two idle refreshes", 40)
    assert _writes(operator) == idle_from


def test_stats_items_and_hit_ratio_reach_status(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    wait_memcached(ips)
    for ip in ips:
        m = memcached(ip)
        for i in range(5):
            m.set(f"k{i}", "x" * 100)
        m.get("k0")  # hit
        m.get("absent")  # miss
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, statsIntervalSeconds=10))
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("stats", {}).get("items") == 10 and s,
                  "stats in status")
    assert st["stats"]["hitRatio"] == "50.0%" and st["stats"]["bytes"] > 1000
    assert operator.metric("rolecall_cache_items", {"namespace": namespace, "name": "mc"}) == 10
    row = local_bed.kubectl("get", "-n", namespace, "cacheserver", "mc", "--no-headers").stdout.split()
    assert row[:6] == ["mc", "memcached", "Running", "2", "10", "50.0%"], row  # kubectl get columns


def test_node_selector_targets_only_pods_on_matching_nodes_and_groups_per_node(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    placed = []
    for i, node in enumerate(["kwok-node-0", "kwok-node-0", "kwok-node-1", "kwok-node-2"]):
        pod = standin_pod(f"mc-{i}", "memcached", {"app": "mc"})
        pod["spec"]["nodeName"] = node
        placed.append(pod)
    create_pods(local_bed, namespace, placed)
    running_pods(local_bed, namespace, "app=mc", 4)
    ips = pod_ips(local_bed, namespace, "app=mc")
    wait_memcached(list(ips.values()))
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                nodeSelector={"topology.kubernetes.io/zone": "zone-a"}))
    annotate_clear(local_bed, namespace, "mc", "zone-a")
    st = wait_handled(local_bed, namespace, "mc", "zone-a")
    assert st["targets"] == 2
    assert st["nodes"] == [{"node": "kwok-node-0", "targets": 2, "done": 2, "failed": 0}], st
    flushed = {n: int(memcached(ip).stats()[b"cmd_flush"]) for n, ip in ips.items()}
    assert flushed == {"mc-0": 1, "mc-1": 1, "mc-2": 0, "mc-3": 0}


def test_host_network_pod_is_refused_not_dialled(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    host = standin_pod("mc-host", "memcached", {"app": "mc"})
    host["spec"]["hostNetwork"] = True  # its IP is the node's (127.0.0.1 here): never a target
    create_pods(local_bed, namespace, [standin_pod("mc-pod", "memcached", {"app": "mc"}), host])
    running_pods(local_bed, namespace, "app=mc", 2)
    wait_memcached([pod_ips(local_bed, namespace, "app=mc")["mc-pod"]])
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    annotate_clear(local_bed, namespace, "mc", "t")
    st = wait_handled(local_bed, namespace, "mc", "t")
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and "mc-host" in degraded["message"] and "hostNetwork" in degraded["message"]
    assert [p["pod"] for p in st["failedPods"]] == ["mc-host"]
    assert "run" not in st, "a refusal is final: nothing is left to retry"
