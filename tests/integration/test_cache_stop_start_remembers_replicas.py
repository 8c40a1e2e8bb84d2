"""stopped: true scales the workload to 0 and remembers the count; stopped: false restores exactly that."""

from __future__ import annotations

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import cacheserver, condition, create_cs, create_deployment, events, get_cs, patch_cs, status
from harness import Cluster, Operator, deployment, pods, running_pods, wait_for


def test_stop_then_start_round_trips_the_replica_count(local_bed: Cluster, namespace: str,
                                                        operator: Operator) -> None:
    apps = client.AppsV1Api(local_bed.api_client)
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 3))
    running_pods(local_bed, namespace, "app=mc", 3)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    wait_for(lambda: status(local_bed, namespace, "mc").get("phase") == "Running", "Running")

    patch_cs(local_bed, namespace, "mc", {"spec": {"stopped": True}})
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("phase") == "Stopped" and s, "Stopped")
    assert st["rememberedReplicas"] == 3 and st["replicas"] == 0
    assert condition(st, "Stopped")["status"] == "True"
    dep = apps.read_namespaced_deployment("mc", namespace)
    assert dep.spec.replicas == 0
    assert dep.metadata.annotations["rolecall.dev/remembered-replicas"] == "3"
    wait_for(lambda: not pods(local_bed, namespace, "app=mc"), "all pods gone")
    # `kubectl get` shows it; kubectl wait can wait on it.
    assert local_bed.kubectl("wait", "-n", namespace, "cacheserver/mc", "--for=condition=Stopped",
                             "--timeout=5s").returncode == 0

    patch_cs(local_bed, namespace, "mc", {"spec": {"stopped": False}})
    running_pods(local_bed, namespace, "app=mc", 3)
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("phase") == "Running" and s, "Running again")
    assert st["replicas"] == 3 and "rememberedReplicas" not in st
    assert condition(st, "Stopped")["status"] == "False"
    dep = apps.read_namespaced_deployment("mc", namespace)
    assert dep.spec.replicas == 3
    assert "rolecall.dev/remembered-replicas" not in (dep.metadata.annotations or {})
    reasons = [e.reason for e in events(local_bed, namespace, "mc")]
    assert "Stopped" in reasons and "Started" in reasons
    table = local_bed.kubectl("get", "-n", namespace, "cacheserver", "mc").stdout
    assert "Running" in table and "memcached" in table


def test_workload_owned_by_another_controller_is_not_scaled(local_bed: Cluster, namespace: str,
                                                            operator: Operator) -> None:
    core, apps = client.CoreV1Api(local_bed.api_client), client.AppsV1Api(local_bed.api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "some-controller"}})
    dep = deployment("mc", "memcached", 2)
    dep["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "some-controller",
                                           "uid": owner.metadata.uid, "controller": True}]
    create_deployment(local_bed, namespace, dep)
    running_pods(local_bed, namespace, "app=mc", 2)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, stopped=True,
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("conditions") and
                  condition(s, "Stopped").get("reason") == "OwnedByController" and s, "OwnedByController")
    assert "ConfigMap/some-controller" in condition(st, "Stopped")["message"]
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 2
    assert get_cs(local_bed, namespace, "mc")["status"].get("phase") != "Stopped"
    assert condition(st, "Stalled")["reason"] == "OwnedByController"  # a person has to resolve it


def test_two_resources_on_one_workload_do_not_fight(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """The one that stopped the workload starts it; another resource naming the same workload with
    stopped: false leaves it alone instead of undoing the stop (and the two flapping it up and down)."""
    apps = client.AppsV1Api(local_bed.api_client)
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    operator.start()
    ref = {"kind": "Deployment", "name": "mc"}
    create_cs(local_bed, namespace, cacheserver("stopper", "memcached", {"app": "mc"}, workloadRef=ref,
                                                stopped=True))
    wait_for(lambda: status(local_bed, namespace, "stopper").get("phase") == "Stopped", "stopped by 'stopper'")
    create_cs(local_bed, namespace, cacheserver("other", "memcached", {"app": "mc"}, workloadRef=ref))
    st = wait_for(lambda: (s := status(local_bed, namespace, "other")).get("conditions") and
                  condition(s, "Stopped").get("reason") == "StoppedByAnother" and s, "the other leaves it alone")
    assert "stopper" in condition(st, "Stopped")["message"]
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 0
    patch_cs(local_bed, namespace, "stopper", {"spec": {"stopped": False}})
    running_pods(local_bed, namespace, "app=mc", 2)
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 2
