"""A target replaced while a clear is under way is never acted on, even when its replacement has the same name
and the same IP: the pod index looks the target up by UID just before acting.

The fan-out is held open deterministically: the first target's memcached is stopped (SIGSTOP; the kernel
still accepts the connection, so flush_all waits for an answer), the second target is deleted and created
again under the same name, its status is given the old pod's IP (KWOK does not always reuse it; the bed's
stand-in then serves the new memcached there), and only after the operator's pod watch has applied the
deletion is the first memcached let go. The replacement's own counter (cmd_flush) must stay 0.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_pods,
    memcached,
    standin_pod,
    status,
    wait_handled,
)
from harness import Cluster, Operator, pods, running_pods, wait_for

pytestmark = pytest.mark.localbed


def _memcached_pid(ip: str) -> int:
    """The memcached process serving `ip` on this machine (stand-ins run real servers on pod IPs)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"memcached") and b"-l" in argv and ip.encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no memcached process listens on {ip}")


def _server_pid(ip: str) -> int:
    """The pid memcached at `ip` reports (0 while nothing answers there)."""
    try:
        return int(memcached(ip).stats()[b"pid"])
    except Exception:  # refused, reset or closed mid-reply: nothing usable answers there yet
        return 0


def _replacement_at(cluster: Cluster, ns: str, pod: dict[str, Any], ip: str) -> None:
    """Creates `pod` and gives it `ip` (a pod's IP cannot be changed once set, and KWOK does not always hand a
    freed IP out again): KWOK's pod-ready stage leaves alone any pod labelled testbed.rolecall.dev/runtime, and
    the container stand-in takes only runtime=podman, so with runtime=manual the status is ours to write; the
    engine stand-in then serves memcached at that IP, as for any other pod."""
    pod = {**pod, "metadata": {**pod["metadata"],
                               "labels": {**pod["metadata"]["labels"], "testbed.rolecall.dev/runtime": "manual"}}}
    core = client.CoreV1Api(cluster.api_client)
    core.create_namespaced_pod(ns, pod)
    name = pod["metadata"]["name"]
    wait_for(lambda: core.read_namespaced_pod(name, ns).spec.node_name, f"{name} scheduled")
    ready = [{"type": t, "status": "True"} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                                           "hostIP": "127.0.0.1", "conditions": ready}})


def _ips(cluster: Cluster, ns: str) -> dict[str, tuple[str, str]]:
    return {p.metadata.name: (p.metadata.uid, p.status.pod_ip) for p in pods(cluster, ns, "app=mc")
            if p.status.pod_ip and not p.metadata.deletion_timestamp}


def test_a_target_replaced_under_the_same_name_and_ip_mid_clear_is_skipped(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    labels = {"app": "mc"}
    create_pods(local_bed, namespace, [standin_pod("a-held", "memcached", labels),
                                       standin_pod("b-replaced", "memcached", labels)])
    running_pods(local_bed, namespace, "app=mc", 2)
    before = _ips(local_bed, namespace)
    held_ip, (old_uid, b_ip) = before["a-held"][1], before["b-replaced"]
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1, timeoutSeconds=60))
    wait_for(lambda: status(local_bed, namespace, "mc").get("targets") == 2, "the CacheServer's first reconcile")

    held = _memcached_pid(held_ip)
    old_server = _server_pid(b_ip)
    os.kill(held, signal.SIGSTOP)
    try:
        annotate_clear(local_bed, namespace, "mc", "r1")
        run = wait_for(lambda: status(local_bed, namespace, "mc").get("run"), "the clear accepted (ledger written)")
        assert old_uid in run["pending"] and run["targets"] == 2, run
        deleted = operator.metric("rolecall_pod_index_events_total", {"type": "DELETED"})
        core = client.CoreV1Api(local_bed.api_client)
        core.delete_namespaced_pod("b-replaced", namespace, grace_period_seconds=0)
        wait_for(lambda: "b-replaced" not in {p.metadata.name for p in pods(local_bed, namespace, "app=mc")},
                 "the old b-replaced gone from the API")
        _replacement_at(local_bed, namespace, standin_pod("b-replaced", "memcached", labels), b_ip)
        running_pods(local_bed, namespace, "app=mc", 2)
        new_uid, new_ip = _ips(local_bed, namespace)["b-replaced"]
        assert new_uid != old_uid and new_ip == b_ip
        wait_for(lambda: _server_pid(b_ip) not in (old_server, 0), "the new pod's memcached there")
        assert cmd_flush(new_ip) == 0
        wait_for(lambda: operator.metric("rolecall_pod_index_events_total", {"type": "DELETED"}) > deleted,
                 "the operator's pod watch to apply the deletion")
    finally:
        os.kill(held, signal.SIGCONT)

    st = wait_handled(local_bed, namespace, "mc", "r1", timeout=90)
    assert cmd_flush(held_ip) == 1
    assert cmd_flush(new_ip) == 0, "the replacement pod (same name, same IP, new UID) was flushed"
    by_pod = {r["uid"]: r for r in st.get("recentResults") or []}
    assert by_pod[old_uid]["outcome"] == "Skipped" and "gone" in by_pod[old_uid]["message"], by_pod
    assert st["lastRequest"]["outcome"] == "Succeeded", st["lastRequest"]
