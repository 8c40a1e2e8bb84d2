"""The local bed itself: loopback pods spread over KWOK nodes, real stand-ins, real exec, real RBAC."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import create_deployment, memcached, pod_ips
from harness import REPO, Cluster, deployment, pods, running_pods, wait_for


def test_deployment_gets_loopback_pods_spread_over_nodes_and_scales_to_zero(local_bed: Cluster,
                                                                            namespace: str) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 3))
    ps = running_pods(local_bed, namespace, "app=mc", 3)
    cidr = ipaddress.ip_network(local_bed.bed.pod_cidr)
    assert cidr.subnet_of(ipaddress.ip_network("127.0.0.0/8"))
    for p in ps:
        assert ipaddress.ip_address(p.status.pod_ip) in cidr, p.status.pod_ip
    assert len({p.status.pod_ip for p in ps}) == 3
    # The default scheduler spreads a Deployment's pods over the fake nodes.
    assert len({p.spec.node_name for p in ps}) >= 2, [p.spec.node_name for p in ps]

    # A real memcached answers at every pod IP on its standard port.
    for ip in pod_ips(local_bed, namespace, "app=mc").values():
        m = memcached(ip)
        m.set("probe", ip)
        assert m.get("probe") == ip.encode()
        assert int(m.stats()[b"pid"]) > 0

    client.AppsV1Api(local_bed.api_client).patch_namespaced_deployment_scale(
        "mc", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not pods(local_bed, namespace, "app=mc"), "every pod removed after scaling to 0")

    def refused(ip: str) -> bool:
        try:
            memcached(ip).version()
        except OSError:
            return True
        return False

    wait_for(lambda: all(refused(p.status.pod_ip) for p in ps), "stand-ins stopped with their pods")


def test_exec_through_the_apiserver_runs_a_real_command_unprivileged(local_bed: Cluster, namespace: str) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 1))
    pod = running_pods(local_bed, namespace, "app=mc", 1)[0].metadata.name
    out = local_bed.kubectl("exec", "-n", namespace, pod, "--", "cat", "/proc/version").stdout
    assert out == Path("/proc/version").read_text()
    who = local_bed.kubectl("exec", "-n", namespace, pod, "--", "id", "-un").stdout.strip()
    assert who == ("rolecall-bed" if os.geteuid() == 0 else os.environ.get("USER", who))
    failed = local_bed.kubectl("exec", "-n", namespace, pod, "--", "false", check=False)
    assert failed.returncode != 0  # the command's exit status comes back through the API


def test_apiserver_is_the_pinned_version(local_bed: Cluster) -> None:
    pinned = re.search(r"^KUBE_VERSION=(\S+)", (REPO / "hack/versions.env").read_text(), re.M)
    assert pinned
    version = json.loads(local_bed.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned.group(1)


def test_view_user_is_forbidden_from_pod_exec(local_bed: Cluster, namespace: str) -> None:
    rbac = client.RbacAuthorizationV1Api(local_bed.api_client)
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "alice-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 1))
    pod = running_pods(local_bed, namespace, "app=mc", 1)[0].metadata.name
    alice = local_bed.user_kubeconfig("alice")

    def can_list() -> bool:
        return local_bed.kubectl("get", "pods", "-n", namespace, kubeconfig=alice, check=False).returncode == 0

    wait_for(can_list, "alice's view binding to take effect")
    denied = local_bed.kubectl("exec", "-n", namespace, pod, "--", "id", kubeconfig=alice, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower() and "pods/exec" in denied.stderr, denied.stderr
    review = client.AuthorizationV1Api(local_bed.user_client("alice")).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "pods",
                                         "subresource": "exec"}}})
    assert review.status.allowed is False
