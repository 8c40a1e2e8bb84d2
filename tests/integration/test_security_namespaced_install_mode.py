"""Namespaced install mode: the operator's ServiceAccount holds rolecall-operator only through RoleBindings in
the namespaces it watches (plus rolecall-operator-cluster for the few cluster-scoped reads), and still
does its work there, while it has no rights in other namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client  # type: ignore[import-untyped]

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
from testbed.install import OPERATOR_NAMESPACE, operator_kubeconfig

SA = "rolecall-operator-ns-mode"


@pytest.fixture
def namespaced_operator(installed: Cluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    core, rbac = client.CoreV1Api(installed.api_client), client.RbacAuthorizationV1Api(installed.api_client)
    try:
        core.create_namespaced_service_account(OPERATOR_NAMESPACE, {"metadata": {"name": SA}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    subject = [{"kind": "ServiceAccount", "name": SA, "namespace": OPERATOR_NAMESPACE}]
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "rolecall-operator"}, "subjects": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rolecall-operator"}})
    binding = f"{SA}-{namespace}"[:63]
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding}, "subjects": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "rolecall-operator-cluster"}})
    kubeconfig = operator_kubeconfig(installed.kubeconfig, tmp_path / "ns-mode.kubeconfig", sa=SA)
    op = Operator(kubeconfig=kubeconfig, namespaces=[namespace], log_dir=tmp_path, lease_namespace=namespace)
    yield op
    op.stop_all()
    rbac.delete_cluster_role_binding(binding)
    print(op.logs()[-5000:])


def test_rolebindings_suffice_for_the_watched_namespace(local_bed: Cluster, namespace: str,
                                                        namespaced_operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    wait_memcached(ips)
    namespaced_operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    annotate_clear(local_bed, namespace, "mc", "ns-mode")
    wait_handled(local_bed, namespace, "mc", "ns-mode")
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
    wait_for(lambda: status(local_bed, namespace, "mc").get("replicas") == 2, "the workload read")
    review = client.AuthorizationV1Api(local_bed.api_client).create_subject_access_review({"spec": {
        "user": f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SA}",
        "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}})
    assert review.status.allowed is False, "namespaced mode must grant nothing outside the watched namespaces"
