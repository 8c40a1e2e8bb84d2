"""Status for generic tools (kstatus: Flux `wait: true`, Argo CD, `kubectl wait`): Reconciling, Stalled, Ready
and observedGeneration tell the truth, and every request ends acknowledged with its outcome."""

from __future__ import annotations

import datetime as dt
import time

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    create_pods,
    events,
    patch_cs,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
)
from harness import Cluster, Operator, running_pods, wait_for


def _kstatus(st: dict, generation: int) -> str:
    """kstatus' verdict for a custom resource with these conditions (sigs.k8s.io/cli-utils/pkg/kstatus)."""
    if st.get("observedGeneration") != generation:
        return "InProgress"
    if condition(st, "Reconciling").get("status") == "True":
        return "InProgress"
    if condition(st, "Stalled").get("status") == "True":
        return "Failed"
    return "Current"


def test_stop_of_a_missing_workload_is_stalled_not_ready(local_bed: Cluster, namespace: str,
                                                          operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod("mc-0", "memcached", {"app": "mc"})])
    running_pods(local_bed, namespace, "app=mc", 1)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, stopped=True,
                                                workloadRef={"kind": "Deployment", "name": "not-there"}))
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")) and
                  condition(s, "Stalled").get("status") == "True" and s, "Stalled", 30)
    stalled = condition(st, "Stalled")
    assert stalled["reason"] == "WorkloadNotFound" and "not-there" in stalled["message"], stalled
    assert condition(st, "Ready")["status"] == "False" and st["phase"] == "Stalled", st
    assert condition(st, "Reconciling")["status"] == "False"
    assert _kstatus(st, 1) == "Failed"
    warnings = wait_for(lambda: [e for e in events(local_bed, namespace, "mc")
                                 if e.type == "Warning" and e.reason == "WorkloadNotFound"], "a Warning Event", 10)
    assert "not-there" in warnings[0].message


def test_a_clear_with_a_missing_secret_is_acknowledged_as_stalled(local_bed: Cluster, namespace: str,
                                                                 operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod("rd-0", "redis", {"app": "rd"})])
    running_pods(local_bed, namespace, "app=rd", 1)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("rd", "redis", {"app": "rd"},
                                                credentialsSecretRef={"name": "no-such-secret"}))
    annotate_clear(local_bed, namespace, "rd", "t1")
    st = wait_handled(local_bed, namespace, "rd", "t1", 30)  # the wait a user runs ends
    last = st["lastRequest"]
    assert last["token"] == "t1" and last["outcome"] == "Stalled" and last["reason"] == "SecretNotFound", last
    assert "no-such-secret" in last["message"]
    assert condition(st, "Stalled")["status"] == "True" and condition(st, "Ready")["status"] == "False"
    assert _kstatus(st, 1) == "Failed"
    # The Event is posted before the status write that acknowledges the request: no waiting needed.
    assert any(e.type == "Warning" and e.reason == "SecretNotFound" and "no-such-secret" in e.message
               for e in events(local_bed, namespace, "rd"))


def test_fractional_cleared_after_clears_each_pod_once(local_bed: Cluster, namespace: str,
                                                       operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod(f"mc-{i}", "memcached", {"app": "mc"}) for i in range(2)])
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    wait_memcached(ips)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    wait_for(lambda: _kstatus(status(local_bed, namespace, "mc"), 1) == "Current", "Current", 30)
    soon = dt.datetime.now(dt.UTC).replace(microsecond=600000) + dt.timedelta(seconds=2)
    after = soon.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # e.g. ...T04:37:29.600Z
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearedAfter": after}})
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastClearedAt") and s, "cleared", 30)
    assert st["lastClearedAt"] >= after.replace("Z", ""), st  # accepted at or after the time asked for
    assert st["lastRequest"]["requestedAfter"] == after and st["lastRequest"]["outcome"] == "Succeeded"
    time.sleep(2.5)  # a bounded window: a clear that stays "due" would flush again within it
    assert [cmd_flush(ip) for ip in ips] == [1, 1]


def test_an_idle_resource_is_current_and_a_spec_change_in_progress_until_observed(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod("mc-0", "memcached", {"app": "mc"})])
    running_pods(local_bed, namespace, "app=mc", 1)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")) and _kstatus(s, 1) == "Current" and s,
                  "Current", 30)
    assert condition(st, "Ready")["status"] == "True" and condition(st, "Stalled")["status"] == "False"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearedAfter": future}})
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")) and s.get("observedGeneration") == 2 and s,
                  "generation 2 observed", 30)
    # A future clearedAfter waits on its timer: idle, Ready, Current.
    assert _kstatus(st, 2) == "Current" and condition(st, "Ready")["status"] == "True", st
    annotate_clear(local_bed, namespace, "mc", "now")
    st = wait_handled(local_bed, namespace, "mc", "now", 30)
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["lastRequest"]["done"] == 1
