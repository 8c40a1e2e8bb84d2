"""Hibernation on the bed: a WebServer with a run window of 10 s every 20 s stops (replicas remembered) and
starts (the same replicas restored) on its own, cycle after cycle; a keep-running-until override keeps it
running past a window and then expires; spec.stopped: true during a window keeps it stopped. Each state's
status (runState: desired, decidedBy, until) is asserted, and the Deployment's replicas are the evidence.
A window closing drains connections first, as a stop by spec does."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import condition, create_deployment, pod_ips
from harness import Cluster, Operator, deployment, running_pods, wait_for
from webkit import create_web, held_connections, patch_web, web_events, web_status, webserver

WINDOW = {"windows": [{"cron": "* * * * * */20", "duration": "10s"}]}  # open :00-:10, :20-:30, :40-:50


def _replicas(cluster: Cluster, ns: str) -> int:
    return int(client.AppsV1Api(cluster.api_client).read_namespaced_deployment("web", ns).spec.replicas)


def _state(cluster: Cluster, ns: str, desired: str, decided_by: str, replicas: int) -> dict[str, Any] | None:
    st = web_status(cluster, ns, "web")
    run = st.get("runState") or {}
    ok = run.get("desired") == desired and run.get("decidedBy") == decided_by and _replicas(cluster, ns) == replicas
    return st if ok else None


def test_windows_cycle_an_override_holds_and_stopped_wins(local_bed: Cluster, namespace: str,
                                                          operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("web", "nginx", 2))
    running_pods(local_bed, namespace, "app=web", 2)
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, refreshIntervalSeconds=3600,
                                               workloadRef={"kind": "Deployment", "name": "web"}, runWindows=WINDOW))
    for cycle in range(2):
        stopped = wait_for(lambda: (s := _state(local_bed, namespace, "Stopped", "Window", 0)) and
                           s.get("phase") == "Stopped" and s, f"cycle {cycle}: stopped outside the window", 40,
                           interval=0.2)
        assert stopped["rememberedReplicas"] == 2 and stopped["runState"]["until"], stopped
        assert "outside every run window" in stopped["runState"]["reason"]
        started = wait_for(lambda: _state(local_bed, namespace, "Running", "Window", 2),
                           f"cycle {cycle}: started inside the window", 40, interval=0.2)
        assert started["runState"]["reason"].startswith("inside a run window"), started
    # Every stop and start so far is in history (the windows go on cycling while we read: compare shapes only).
    scaled = [(h["action"], h["trigger"], h["replicas"]) for h in web_status(local_bed, namespace, "web")["history"]]
    assert len(scaled) >= 3 and all(t == "Window" and r == 2 for _, t, r in scaled), scaled
    assert all(a != b for (a, _, _), (b, _, _) in itertools.pairwise(scaled)), f"not alternating: {scaled}"

    # keep-running-until: runs through the next closed period, then the windows decide again.
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=35)).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch_web(local_bed, namespace, "web", {"metadata": {"annotations": {"rolecall.dev/keep-running-until": until}}})
    held = wait_for(lambda: _state(local_bed, namespace, "Running", "Override", 2), "the override in status", 30)
    assert held["runState"]["until"].startswith(until[:19]), held

    def closed_while_overridden() -> bool:
        now = dt.datetime.now(dt.UTC)
        return now.second % 20 >= 12 and now < dt.datetime.fromisoformat(until.replace("Z", "+00:00"))

    wait_for(closed_while_overridden, "a closed period while the override holds", 30, interval=0.2)
    assert _state(local_bed, namespace, "Running", "Override", 2), web_status(local_bed, namespace, "web")
    expired = wait_for(lambda: _state(local_bed, namespace, "Stopped", "Window", 0),
                       "stopped by the windows once the override expired", 60, interval=0.2)
    assert "expired" in expired["runState"]["reason"], expired

    # spec.stopped: true during a window: stays stopped while windows open and close.
    wait_for(lambda: _state(local_bed, namespace, "Running", "Window", 2), "a window open again", 40, interval=0.2)
    patch_web(local_bed, namespace, "web", {"spec": {"stopped": True}})
    spec = wait_for(lambda: _state(local_bed, namespace, "Stopped", "Spec", 0), "stopped by spec", 30, interval=0.2)
    assert spec["runState"].get("until") is None

    def window_opened_again() -> bool:
        return dt.datetime.now(dt.UTC).second % 20 < 8

    def well_inside_the_next_window() -> bool:
        return 3 <= dt.datetime.now(dt.UTC).second % 20 < 8

    wait_for(lambda: not window_opened_again(), "a closed period", 30, interval=0.2)
    wait_for(well_inside_the_next_window, "3 s into the next window", 30, interval=0.2)
    while well_inside_the_next_window():  # all through the open window: still stopped by spec
        assert _state(local_bed, namespace, "Stopped", "Spec", 0), web_status(local_bed, namespace, "web")


def test_a_window_closing_drains_connections_before_the_stop(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    """A stop by a window honours the drain like a stop by spec: a held connection keeps the workload up
    (WaitingForDrain) after the window closed, and the stop follows once it is closed."""
    create_deployment(local_bed, namespace, deployment("web", "nginx", 2))
    running_pods(local_bed, namespace, "app=web", 2)
    operator.start()
    window = {"windows": [{"cron": "* * * * * */30", "duration": "10s"}]}  # open :00-:10 and :30-:40
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, refreshIntervalSeconds=3600,
                                               workloadRef={"kind": "Deployment", "name": "web"}, runWindows=window,
                                               drainTimeoutSeconds=600))
    wait_for(lambda: _state(local_bed, namespace, "Running", "Window", 2), "running inside a window", 60, interval=0.2)
    running_pods(local_bed, namespace, "app=web", 2)
    ip = next(iter(pod_ips(local_bed, namespace, "app=web").values()))
    with held_connections(ip, idle=1, in_flight=0):
        st = wait_for(lambda: (s := _state(local_bed, namespace, "Stopped", "Window", 2)) and
                      (s.get("drain") or {}).get("value") == 1 and s, "the window closed, draining", 40, interval=0.2)
        assert condition(st, "Reconciling")["reason"] == "WaitingForDrain", condition(st, "Reconciling")
        assert st["phase"] == "Stopping" and "activeConnections 1 (threshold 0)" in condition(st, "Stopped")["message"]
        assert _replicas(local_bed, namespace) == 2, "scaled down with a connection still open"
    stopped = wait_for(lambda: _state(local_bed, namespace, "Stopped", "Window", 0), "stopped once drained", 15,
                       interval=0.2)
    assert stopped["rememberedReplicas"] == 2 and "drain" not in stopped
    reasons = wait_for(lambda: "Stopped" in (rs := [e.reason for e in web_events(local_bed, namespace, "web")])
                       and rs, "the Stopped Event")
    assert reasons.index("DrainStarted") < reasons.index("Drained") < reasons.index("Stopped"), reasons
