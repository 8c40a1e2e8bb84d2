"""A Deployment scaled by a HorizontalPodAutoscaler stops and starts without a fight: the HPA controller (the
bed's kube-controller-manager runs it) does not scale a target at 0 replicas (ScalingActive=False,
ScalingDisabled), so the stop holds; the start restores the remembered replicas; the HPA's spec is exactly as
before (rolecall never edits it)."""

from __future__ import annotations

from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import cacheserver, create_cs, create_deployment, patch_cs, status
from harness import Cluster, Operator, deployment, running_pods, wait_for

HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "mc"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mc"},
                "minReplicas": 2, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": 50}}}]}}


def _replicas(cluster: Cluster, ns: str) -> int:
    return int(client.AppsV1Api(cluster.api_client).read_namespaced_deployment("mc", ns).spec.replicas)


def _hpa(cluster: Cluster, ns: str) -> dict[str, Any]:
    api = client.AutoscalingV2Api(cluster.api_client)
    return dict(cluster.api_client.sanitize_for_serialization(api.read_namespaced_horizontal_pod_autoscaler("mc", ns)))


def _condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (hpa.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def test_a_stop_holds_under_an_hpa_and_the_hpa_is_unchanged(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    client.AutoscalingV2Api(local_bed.api_client).create_namespaced_horizontal_pod_autoscaler(namespace, HPA)
    wait_for(lambda: _condition(_hpa(local_bed, namespace), "AbleToScale").get("status") == "True",
             "the HPA controller to look at the Deployment", 60, interval=0.5)
    before = _hpa(local_bed, namespace)["spec"]
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, stopped=True,
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    wait_for(lambda: status(local_bed, namespace, "mc").get("rememberedReplicas") == 2 and
             _replicas(local_bed, namespace) == 0, "stopped", 60)
    disabled = wait_for(lambda: (c := _condition(_hpa(local_bed, namespace), "ScalingActive")).get("reason")
                        == "ScalingDisabled" and c, "the HPA to see 0 replicas and stand down", 60, interval=0.5)
    assert disabled["status"] == "False", disabled
    assert _replicas(local_bed, namespace) == 0  # after the HPA looked at it: not undone

    patch_cs(local_bed, namespace, "mc", {"spec": {"stopped": False}})
    wait_for(lambda: _replicas(local_bed, namespace) == 2 and status(local_bed, namespace, "mc").get(
        "rememberedReplicas") is None, "started with the remembered replicas", 60)
    assert _hpa(local_bed, namespace)["spec"] == before
