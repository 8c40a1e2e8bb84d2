"""A stop that GitOps undoes is reported, not fought: a server-side apply of the Deployment by another field
manager (as Argo CD's self-heal does) puts replicas back while the WebServer should be stopped. rolecall sets
Stalled (ReplicasFought) naming that manager, leaves the replicas alone under that spec, and stops again once
the spec changes. The Deployment's replicas and its managedFields are the evidence."""

from __future__ import annotations

import json

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import condition, create_deployment
from harness import Cluster, Operator, deployment, running_pods, wait_for
from webkit import create_web, patch_web, request_refresh, web_events, web_status, webserver

GITOPS = "argocd-controller"


def _replicas(cluster: Cluster, ns: str) -> int:
    return int(client.AppsV1Api(cluster.api_client).read_namespaced_deployment("web", ns).spec.replicas)


def _replicas_managers(cluster: Cluster, ns: str) -> set[str]:
    d = client.AppsV1Api(cluster.api_client).read_namespaced_deployment("web", ns)
    return {e.manager for e in d.metadata.managed_fields or [] if "f:replicas" in (e.fields_v1 or {}).get("f:spec", {})}


def test_a_stop_undone_by_another_field_manager_is_stalled_not_fought(local_bed: Cluster, namespace: str,
                                                                     operator: Operator) -> None:
    git = deployment("web", "nginx", 2)  # what "Git" holds, replicas included
    create_deployment(local_bed, namespace, git)
    running_pods(local_bed, namespace, "app=web", 2)
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, refreshIntervalSeconds=3600,
                                               workloadRef={"kind": "Deployment", "name": "web"}, stopped=True))
    wait_for(lambda: web_status(local_bed, namespace, "web").get("phase") == "Stopped", "stopped")
    assert _replicas(local_bed, namespace) == 0

    # "Self-heal": the GitOps tool applies Git's Deployment again, replicas 2 included.
    local_bed.kubectl("apply", "-n", namespace, "--server-side", f"--field-manager={GITOPS}", "--force-conflicts",
                      "-f", "-", input=json.dumps(git))
    assert _replicas(local_bed, namespace) == 2 and _replicas_managers(local_bed, namespace) == {GITOPS}
    request_refresh(local_bed, namespace, "web", "look-again")  # any reconcile sees it; a refresh is one
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Stalled" and s,
                  "Stalled after the stop was undone")
    stalled = condition(st, "Stalled")
    assert stalled["reason"] == "ReplicasFought" and GITOPS in stalled["message"], stalled
    assert st["replicasFought"]["manager"] == GITOPS and st["replicasFought"]["replicas"] == 2, st
    assert condition(st, "Ready")["status"] == "False"
    wait_for(lambda: [e for e in web_events(local_bed, namespace, "web") if e.reason == "ReplicasFought"],
             "the ReplicasFought Event")

    # Reconciles after that leave the replicas to the other manager: no ping-pong.
    request_refresh(local_bed, namespace, "web", "and-again")
    wait_for(lambda: web_status(local_bed, namespace, "web").get("lastHandledRefreshRequest") == "and-again",
             "another reconcile")
    assert _replicas(local_bed, namespace) == 2
    assert condition(web_status(local_bed, namespace, "web"), "Stalled")["reason"] == "ReplicasFought"

    # A spec change (here a new drain setting) is a new stop: rolecall scales to 0 again.
    patch_web(local_bed, namespace, "web", {"spec": {"drainThreshold": 1}})
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Stopped" and s,
                  "stopped again after the spec changed")
    assert "replicasFought" not in st and condition(st, "Stalled")["status"] == "False"
    assert _replicas(local_bed, namespace) == 0
