"""The local bed: loopback pods spread over KWOK nodes, real memcached stand-ins, exec, pinned version."""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
from pathlib import Path

from kubernetes import client  # type: ignore[import-untyped]
from pymemcache.client.base import Client as Memcache

from harness import REPO, Cluster, deployment, pods, running_pods, wait_for

NODES = {"kwok-node-0", "kwok-node-1", "kwok-node-2"}


def _create_deployment(cluster: Cluster, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(cluster.api_client).create_namespaced_deployment(
        namespace, deployment(name, "memcached", replicas))


def _memcached(ip: str) -> Memcache:
    return Memcache((ip, 11211), connect_timeout=3, timeout=10)


def _refuses(ip: str) -> bool:
    try:
        _memcached(ip).version()
    except ConnectionRefusedError:
        return True
    return False


def test_deployment_pods_get_loopback_ips_on_several_nodes_and_scale_to_zero(local_bed: Cluster,
                                                                            namespace: str) -> None:
    _create_deployment(local_bed, namespace, "mc", 3)
    ps = running_pods(local_bed, namespace, "app=mc", 3)

    # Each bed has its own loopback /16 (127.10.0.0/16 .. 127.209.0.0/16, picked from its state dir).
    cidr = ipaddress.ip_network(local_bed.bed.pod_cidr)
    assert cidr.prefixlen == 16 and cidr.subnet_of(ipaddress.ip_network("127.0.0.0/8")), cidr
    ips = [p.status.pod_ip for p in ps]
    assert all(ipaddress.ip_address(ip) in cidr for ip in ips), (ips, cidr)
    assert len(set(ips)) == 3, ips

    nodes = [p.spec.node_name for p in ps]
    assert set(nodes) <= NODES, nodes
    assert len(set(nodes)) >= 2, f"the scheduler put all 3 replicas on one node: {nodes}"

    client.AppsV1Api(local_bed.api_client).patch_namespaced_deployment_scale(
        "mc", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not pods(local_bed, namespace, "app=mc"), "no pods left after scaling to 0")


def test_memcached_stand_in_answers_at_each_pod_ip_until_the_pod_is_deleted(local_bed: Cluster,
                                                                            namespace: str) -> None:
    _create_deployment(local_bed, namespace, "mc", 3)
    ps = running_pods(local_bed, namespace, "app=mc", 3)

    for p in ps:
        ip = p.status.pod_ip
        m = _memcached(ip)
        assert m.set("probe", p.metadata.name, noreply=False)
        assert m.get("probe") == p.metadata.name.encode()
        stats = m.stats()
        assert stats[b"version"], stats
        assert int(stats[b"pid"]) > 0, stats

    core = client.CoreV1Api(local_bed.api_client)
    gone = ps[0]
    core.delete_namespaced_pod(gone.metadata.name, namespace, grace_period_seconds=0)
    wait_for(lambda: _refuses(gone.status.pod_ip), f"memcached at {gone.status.pod_ip} to refuse connections")


def test_exec_through_the_apiserver_runs_a_real_command_on_this_machine(local_bed: Cluster,
                                                                        namespace: str) -> None:
    _create_deployment(local_bed, namespace, "mc", 1)
    pod = running_pods(local_bed, namespace, "app=mc", 1)[0].metadata.name

    version = local_bed.kubectl("exec", "-n", namespace, pod, "--", "cat", "/proc/version").stdout
    assert version == Path("/proc/version").read_text()

    who = local_bed.kubectl("exec", "-n", namespace, pod, "--", "id", "-un").stdout.strip()
    if os.geteuid() == 0:
        assert who == "rolecall-bed"  # never root, even when the bed runs as root
    else:
        assert who == pwd.getpwuid(os.geteuid()).pw_name

    failed = local_bed.kubectl("exec", "-n", namespace, pod, "--", "false", check=False)
    assert failed.returncode != 0, "the command's exit status must come back through the API"


def test_apiserver_reports_the_pinned_kube_version(local_bed: Cluster) -> None:
    pinned = re.search(r"^KUBE_VERSION=(\S+)$", (REPO / "hack/versions.env").read_text(), re.MULTILINE)
    assert pinned, "hack/versions.env has no KUBE_VERSION"
    version = json.loads(local_bed.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned.group(1)
