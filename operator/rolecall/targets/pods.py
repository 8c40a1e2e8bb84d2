"""Target pods: listed by label selector in the resource's own namespace, optionally only on chosen nodes.

A target is a Pod object; its address is only ever that Pod's status.podIP, and the Pod is re-read by
name and UID just before acting, because pod IPs are reused and a pod may have gone since listing.
Read-only probes (status pages, stats) use the IP of the list they were just resolved from instead,
which saves one GET per pod per refresh; they change nothing on the pod.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rolecall import kube, metrics


@dataclass(frozen=True)
class Target:
    uid: str
    name: str
    node: str | None
    listed_ip: str | None = field(default=None, compare=False)  # status.podIP when listed: for read-only probes
    host_network: bool = field(default=False, compare=False)

    def probe_address(self) -> str:
        """The listed pod IP for a read-only probe, or NotActionable (host-networked, no IP yet)."""
        if self.host_network:
            raise NotActionable(HOST_NETWORK_REFUSED, permanent=True)
        if not self.listed_ip:
            raise NotActionable("pod has no IP yet", permanent=False)
        return self.listed_ip


HOST_NETWORK_REFUSED = "hostNetwork pods are refused: their IP is the node's, not the pod's"


class NotActionable(Exception):
    """The pod cannot be acted on (gone, replaced, not running, or host-networked); the message says why."""

    def __init__(self, message: str, permanent: bool, gone: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.gone = gone  # the pod (and the cache in it) no longer exists: nothing left to act on


async def resolve(namespace: str, label_selector: str, node_selector: dict[str, str] | None) -> list[Target]:
    """The running pods the selector picks now (one list call; one more for nodeSelector)."""
    metrics.api("list", "pods")
    pods = await asyncio.to_thread(kube.core().list_namespaced_pod, namespace, label_selector=label_selector)
    nodes: set[str] | None = None
    if node_selector:
        sel = ",".join(f"{k}={v}" for k, v in sorted(node_selector.items()))
        metrics.api("list", "nodes")
        listed = await asyncio.to_thread(kube.core().list_node, label_selector=sel)
        nodes = {n.metadata.name for n in listed.items}
    targets = []
    for p in pods.items:
        if p.metadata.deletion_timestamp or p.status.phase != "Running":
            continue
        if nodes is not None and p.spec.node_name not in nodes:
            continue
        targets.append(Target(uid=p.metadata.uid, name=p.metadata.name, node=p.spec.node_name,
                              listed_ip=p.status.pod_ip, host_network=bool(p.spec.host_network)))
    return sorted(targets, key=lambda t: t.name)


async def by_uid(namespace: str, label_selector: str) -> dict[str, Target]:
    """The selector's pods by UID, whatever their phase (to find a run's recorded targets after a restart)."""
    metrics.api("list", "pods")
    listed = await asyncio.to_thread(kube.core().list_namespaced_pod, namespace, label_selector=label_selector)
    return {p.metadata.uid: Target(p.metadata.uid, p.metadata.name, p.spec.node_name, listed_ip=p.status.pod_ip,
                                   host_network=bool(p.spec.host_network)) for p in listed.items}


async def listed_address(namespace: str, target: Target) -> str:
    """For read-only probes: the IP of the list the target was just resolved from (no extra GET)."""
    return target.probe_address()


async def address(namespace: str, target: Target) -> str:
    """Re-reads the pod and returns its IP, or raises NotActionable."""
    metrics.api("get", "pods")
    try:
        pod = await asyncio.to_thread(kube.core().read_namespaced_pod, target.name, namespace)
    except kube.ApiException as e:
        if e.status == 404:
            raise NotActionable("pod is gone", permanent=True, gone=True) from e
        raise
    if pod.metadata.uid != target.uid:
        raise NotActionable("pod was replaced by another with the same name", permanent=True, gone=True)
    if pod.spec.host_network:
        raise NotActionable(HOST_NETWORK_REFUSED, permanent=True)
    if pod.metadata.deletion_timestamp:
        raise NotActionable("pod is terminating", permanent=True, gone=True)
    if pod.status.phase != "Running" or not pod.status.pod_ip:
        raise NotActionable(f"pod is {pod.status.phase or 'not running'} and has no IP yet", permanent=False)
    return str(pod.status.pod_ip)
