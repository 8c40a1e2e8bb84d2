"""A draining stop waits for connections to close before scaling to 0; stop/start round-trips the count.

KWOK runs no kubelet, so what a pod does on termination (preStop, SIGTERM, grace period) is not exercised
here: these tests show the operator side (drain, scale, remember, warn), not the pod side.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import condition, create_deployment, pod_ips
from harness import Cluster, Operator, deployment, pods, running_pods, wait_for
from webkit import create_web, held_connections, patch_web, request_refresh, web_events, web_status, webserver

REF = {"kind": "Deployment", "name": "web"}
USERS = "testbed.rolecall.dev/app-users"  # the stand-in's application reports this many users


def _replicas(cluster: Cluster, ns: str) -> int:
    return int(client.AppsV1Api(cluster.api_client).read_namespaced_deployment("web", ns).spec.replicas)


def test_drain_waits_for_connections_then_stops_and_start_restores(local_bed: Cluster, namespace: str,
                                                                   operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("web", "nginx", 2))
    running_pods(local_bed, namespace, "app=web", 2)
    ip = next(iter(pod_ips(local_bed, namespace, "app=web").values()))
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, workloadRef=REF,
                                               drainTimeoutSeconds=600))
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Running" and s, "Running")
    assert st["replicas"] == 2 and st["readyReplicas"] == 2
    graceful = condition(st, "GracefulStop")
    assert graceful["status"] == "False" and graceful["reason"] == "NoPreStopHook", graceful

    with held_connections(ip, idle=2, in_flight=0):
        patch_web(local_bed, namespace, "web", {"spec": {"stopped": True}})
        st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("drain", {})
                      .get("activeConnections") == 2 and s, "the drain to report 2 open connections")
        assert st["phase"] == "Stopping"
        assert condition(st, "Stopped")["reason"] == "WaitingForDrain"
        assert condition(st, "Reconciling")["reason"] == "WaitingForDrain"
        assert "activeConnections 2 (threshold 0)" in condition(st, "Stopped")["message"]
        assert _replicas(local_bed, namespace) == 2, "scaled down before the connections closed"
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Stopped" and s,
                  "Stopped once the connections closed")
    assert st["rememberedReplicas"] == 2 and st["replicas"] == 0 and "drain" not in st
    assert _replicas(local_bed, namespace) == 0
    wait_for(lambda: not pods(local_bed, namespace, "app=web"), "all pods gone")
    # Pods gone on purpose are no fault: a refresh read after the stop leaves the role not Degraded.
    refreshed = request_refresh(local_bed, namespace, "web", "after-the-stop")
    assert condition(refreshed, "Degraded").get("status") != "True", refreshed["conditions"]
    assert refreshed["phase"] == "Stopped"
    # Events follow the status write that records them: wait for the last one.
    reasons = wait_for(lambda: "Stopped" in (rs := [e.reason for e in web_events(local_bed, namespace, "web")])
                       and rs, "the Stopped Event")
    assert reasons.index("DrainStarted") < reasons.index("Drained") < reasons.index("Stopped"), reasons

    patch_web(local_bed, namespace, "web", {"spec": {"stopped": False}})
    running_pods(local_bed, namespace, "app=web", 2)
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Running" and
                  s.get("readyReplicas") == 2 and s, "Running again with 2 ready")
    assert st["replicas"] == 2 and "rememberedReplicas" not in st
    assert _replicas(local_bed, namespace) == 2
    scaled = [(h["action"], h["trigger"], h["replicas"], h["outcome"]) for h in st["history"]
              if h["action"] in ("stop", "start")]  # (the refresh asked above is in history too)
    assert scaled == [("start", "Spec", 2, "Succeeded"), ("stop", "Spec", 2, "Succeeded")], scaled


def _with_prestop(dep: dict[str, Any]) -> dict[str, Any]:
    pod_spec = dep["spec"]["template"]["spec"]
    pod_spec["terminationGracePeriodSeconds"] = 30
    pod_spec["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}
    return dep


def test_drain_timeout_scales_down_with_connections_still_open(local_bed: Cluster, namespace: str,
                                                               operator: Operator) -> None:
    create_deployment(local_bed, namespace, _with_prestop(deployment("web", "nginx", 1)))
    running_pods(local_bed, namespace, "app=web", 1)
    ip = next(iter(pod_ips(local_bed, namespace, "app=web").values()))
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, workloadRef=REF,
                                               drainTimeoutSeconds=2))
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Running" and s, "Running")
    assert condition(st, "GracefulStop")["status"] == "True"
    with held_connections(ip, idle=1, in_flight=1):
        patch_web(local_bed, namespace, "web", {"spec": {"stopped": True}})
        wait_for(lambda: web_status(local_bed, namespace, "web").get("phase") == "Stopped", "Stopped after timeout")
        assert _replicas(local_bed, namespace) == 0
    timed_out = [e for e in web_events(local_bed, namespace, "web") if e.reason == "DrainTimedOut"]
    assert timed_out and "activeConnections 2 (threshold 0) after 2s" in timed_out[0].message, timed_out


def test_drain_on_current_users_with_abort_keeps_running_until_the_spec_changes(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """drainOn currentUsers waits on the application's count (no connection is open here), and
    drainOnTimeout abort leaves the workload running, Stalled, until a spec change starts a new drain."""
    create_deployment(local_bed, namespace, deployment("web", "nginx", 1, annotations={USERS: "3"}))
    running_pods(local_bed, namespace, "app=web", 1)
    operator.start()
    create_web(local_bed, namespace, webserver(
        "web", "nginx", {"app": "web"}, workloadRef=REF, userCount={"path": "/internal/stats", "field":
                                                                    "sessions.active"},
        drainOn="currentUsers", drainThreshold=1, drainTimeoutSeconds=2, drainOnTimeout="abort"))
    wait_for(lambda: web_status(local_bed, namespace, "web").get("currentUsers") == 3, "currentUsers 3")
    patch_web(local_bed, namespace, "web", {"spec": {"stopped": True}})
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Stalled" and s,
                  "the drain to abort")
    assert condition(st, "Stalled")["reason"] == "DrainAborted", condition(st, "Stalled")
    assert st["drain"]["figure"] == "currentUsers" and st["drain"]["value"] == 3 and st["drain"]["abortedAt"]
    assert st["activeConnections"] == 0  # it was the users that held the stop, not connections
    wait_for(lambda: "DrainAborted" in [e.reason for e in web_events(local_bed, namespace, "web")],
             "the DrainAborted Event")
    # Still running after a later reconcile (a handled refresh request is one): the abort holds.
    request_refresh(local_bed, namespace, "web", "after-abort")
    wait_for(lambda: web_status(local_bed, namespace, "web").get("lastHandledRefreshRequest") == "after-abort",
             "the refresh after the abort")
    assert _replicas(local_bed, namespace) == 1
    assert condition(web_status(local_bed, namespace, "web"), "Stalled")["reason"] == "DrainAborted"

    # The users leave and the spec changes: a new drain, which passes, and the stop goes through.
    pod = pods(local_bed, namespace, "app=web")[0]
    client.CoreV1Api(local_bed.api_client).patch_namespaced_pod(
        pod.metadata.name, namespace, {"metadata": {"annotations": {USERS: "1"}}})
    patch_web(local_bed, namespace, "web", {"spec": {"drainTimeoutSeconds": 600}})
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Stopped" and s,
                  "Stopped after the spec change")
    assert st["rememberedReplicas"] == 1 and "drain" not in st
    assert _replicas(local_bed, namespace) == 0
    drained = wait_for(lambda: [e for e in web_events(local_bed, namespace, "web") if e.reason == "Drained"],
                       "the Drained Event")
    assert "currentUsers 1 (threshold 1)" in drained[0].message, drained[0].message
