"""Helpers for CacheServer tests: stand-in pods, CacheServer objects, engine-side counters."""

from __future__ import annotations

from typing import Any

import redis
from kubernetes import client  # type: ignore[import-untyped]
from pymemcache.client.base import Client as Memcache

from harness import Cluster, deployment, pods, running_pods, wait_for

GROUP, VERSION, PLURAL = "rolecall.dev", "v1alpha1", "cacheservers"


def standin_pod(name: str, engine: str, labels: dict[str, str], options: str = "",
                replica_of: str | None = None) -> dict[str, Any]:
    ann = {"testbed.rolecall.dev/options": options} if options else {}
    if replica_of:
        ann["testbed.rolecall.dev/replica-of"] = replica_of
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"testbed.rolecall.dev/engine": engine, **labels},
                         "annotations": ann},
            "spec": {"containers": [{"name": engine, "image": f"{engine}:stand-in"}]}}


def create_pods(cluster: Cluster, ns: str, manifests: list[dict[str, Any]]) -> None:
    core = client.CoreV1Api(cluster.api_client)
    for m in manifests:
        core.create_namespaced_pod(ns, m)


def create_deployment(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> None:
    client.AppsV1Api(cluster.api_client).create_namespaced_deployment(ns, manifest)


def memcached_deployment(cluster: Cluster, ns: str, pods: int = 2) -> list[str]:
    """A Deployment `mc` of memcached stand-ins (label app=mc), running and answering: their pod IPs."""
    create_deployment(cluster, ns, deployment("mc", "memcached", pods))
    running_pods(cluster, ns, "app=mc", pods)
    ips = list(pod_ips(cluster, ns, "app=mc").values())
    wait_memcached(ips)
    return ips


def cacheserver(name: str, engine: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CacheServer", "metadata": {"name": name},
            "spec": {"engine": engine, "selector": {"matchLabels": selector}, **spec}}


def create_cs(cluster: Cluster, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body))


def patch_cs(cluster: Cluster, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, patch))


def annotate_clear(cluster: Cluster, ns: str, name: str, token: str) -> None:
    patch_cs(cluster, ns, name, {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}})


def get_cs(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name))


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get_cs(cluster, ns, name).get("status") or {})


def condition(st: dict[str, Any], type: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type), {})


def wait_handled(cluster: Cluster, ns: str, name: str, token: str, timeout: float = 60) -> dict[str, Any]:
    """Waits like `kubectl wait --for=jsonpath='{.status.lastHandledClearRequest}'=TOKEN`."""
    return wait_for(lambda: (s := status(cluster, ns, name)).get("lastHandledClearRequest") == token and s,
                    f"clear request {token!r} handled on {ns}/{name}", timeout)


def events(cluster: Cluster, ns: str, name: str) -> list[Any]:
    evs = client.CoreV1Api(cluster.api_client).list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name},involvedObject.kind=CacheServer")
    return list(evs.items)


def pod_ips(cluster: Cluster, ns: str, selector: str) -> dict[str, str]:
    return {p.metadata.name: p.status.pod_ip for p in pods(cluster, ns, selector) if p.status.pod_ip}


def memcached(ip: str) -> Memcache:
    return Memcache((ip, 11211), connect_timeout=3, timeout=10)


def wait_memcached(ips: list[str]) -> None:
    for ip in ips:
        wait_for(lambda ip=ip: memcached(ip).version(), f"memcached at {ip}", 30)


def pause_memcached(cluster: Cluster, ns: str, pod: str, ip: str) -> None:
    """Stops the pod's memcached (the bed's paused annotation) and waits until it refuses connections: a
    failure retrying may fix once it is unpaused."""
    client.CoreV1Api(cluster.api_client).patch_namespaced_pod(pod, ns, {"metadata": {"annotations": {
        "testbed.rolecall.dev/paused": "true"}}})

    def refused() -> bool:
        try:
            memcached(ip).version()
        except OSError:
            return True
        return False

    wait_for(refused, f"{pod}'s engine to stop")


def cmd_flush(ip: str) -> int:
    return int(memcached(ip).stats()[b"cmd_flush"])


def wait_redis(ips: list[str]) -> None:
    for ip in ips:
        wait_for(lambda ip=ip: redis.Redis(host=ip, socket_timeout=3).ping(), f"redis at {ip}", 30)
