"""A clear asked for while the cache is stopped is held, not run on no pods and not lost: the Cleared
condition says it waits (HeldWhileStopped), the token stays unhandled, and once the role is started again and
its pods are ready the clear runs on every one of them (memcached's own cmd_flush on the new pods)."""

from __future__ import annotations

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    create_deployment,
    patch_cs,
    pod_ips,
    status,
)
from harness import Cluster, Operator, deployment, running_pods, wait_for

PODS = 3


def test_a_clear_while_stopped_waits_and_runs_on_every_pod_once_started(local_bed: Cluster, namespace: str,
                                                                       operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", PODS))
    running_pods(local_bed, namespace, "app=mc", PODS)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, stopped=True,
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    wait_for(lambda: status(local_bed, namespace, "mc").get("phase") == "Stopped", "stopped")
    annotate_clear(local_bed, namespace, "mc", "held-1")
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("conditions") and
                  condition(s, "Cleared").get("reason") == "HeldWhileStopped" and s, "the clear held")
    assert "spec.stopped is true" in condition(st, "Cleared")["message"], condition(st, "Cleared")
    assert st.get("lastHandledClearRequest") != "held-1" and not st.get("run") and not st.get("lastRequest")
    assert condition(st, "Ready")["status"] == "True" and st["phase"] == "Stopped"

    patch_cs(local_bed, namespace, "mc", {"spec": {"stopped": False}})
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastHandledClearRequest") == "held-1" and s,
                  "the held clear handled after the start", 90)
    last = st["lastRequest"]
    assert (last["outcome"], last["done"], last["targets"]) == ("Succeeded", PODS, PODS), last
    ips = pod_ips(local_bed, namespace, "app=mc")
    assert len(ips) == PODS and sorted(cmd_flush(ip) for ip in ips.values()) == [1] * PODS
