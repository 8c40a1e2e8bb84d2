"""Target pods: picked by label selector in the resource's own namespace, optionally only on chosen nodes.

Pods come from the watch-fed pod index (targets/index.py), not from API reads. A target's address is only
ever that Pod's own status.podIP: just before acting, the pod is looked up again by UID in the index and
acted on only if it is still there, running and not being deleted, at the IP of the latest watch event
(pod IPs are reused; a pod deleted and replaced under the same name has a new UID, so it is never mistaken
for the old one). The index answers only while its watch chain is unbroken and was heard from within 75 s
(see index.py): "latest watch event" is the watch's delivery delay old (benchmarks/watch_delay.py measures
it) while the connection lives, and a connection that dies silently stops the index from answering within
75 s.
Read-only probes (status pages, stats) use the IP the target was resolved with: they change nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rolecall import kube, metrics
from rolecall.api.types import LabelSelector
from rolecall.targets.index import PODS, PodEntry


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


async def resolve(namespace: str, selector: LabelSelector, node_selector: dict[str, str] | None) -> list[Target]:
    """The running pods the selector picks now, by name (from the index; one node LIST with nodeSelector)."""
    await PODS.synced(namespace)
    picked = [p for p in PODS.select(namespace, selector) if p.running]
    if node_selector:
        sel = ",".join(f"{k}={v}" for k, v in sorted(node_selector.items()))
        metrics.api("list", "nodes")
        listed = await asyncio.to_thread(kube.core().list_node, label_selector=sel)
        nodes = {n.metadata.name for n in listed.items}
        picked = [p for p in picked if p.node in nodes]
    return [_target(p) for p in picked]


def none_match(selector: LabelSelector, node_selector: dict[str, str] | None) -> str:
    """Why a resolve found nothing, naming the selector as kubectl writes it (a typo shows)."""
    nodes = ",".join(f"{k}={v}" for k, v in sorted((node_selector or {}).items()))
    return (f"no running pod matches spec.selector {selector.to_label_selector() or '(empty)'}"
            + (f" on a node matching spec.nodeSelector {nodes}" if nodes else ""))


async def by_uid(namespace: str, selector: LabelSelector) -> dict[str, Target]:
    """The selector's pods by UID, whatever their phase (to find a run's recorded targets after a restart)."""
    await PODS.synced(namespace)
    return {p.uid: _target(p) for p in PODS.select(namespace, selector)}


def _target(p: PodEntry) -> Target:
    return Target(uid=p.uid, name=p.name, node=p.node, listed_ip=p.ip, host_network=p.host_network)


async def address(namespace: str, target: Target) -> str:
    """The pod's IP as of the latest watch event, if it is still the same running pod; else NotActionable.
    Does not wait: a watch out of step raises Unavailable, which stops the fan-out (it is retried later)."""
    PODS.check(namespace)
    pod = PODS.get(namespace, target.uid)
    if pod is None:
        raise NotActionable("pod is gone (deleted, or replaced by another with the same name)", permanent=True,
                            gone=True)
    if pod.host_network:
        raise NotActionable(HOST_NETWORK_REFUSED, permanent=True)
    if pod.deleting:
        raise NotActionable("pod is terminating", permanent=True, gone=True)
    if pod.phase != "Running" or not pod.ip:
        raise NotActionable(f"pod is {pod.phase} and has no IP yet" if not pod.ip else f"pod is {pod.phase}",
                            permanent=False)
    return pod.ip
