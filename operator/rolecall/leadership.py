"""One active operator: a coordination.k8s.io Lease that must be held before any handler acts.

A standby polls the Lease every `retry` seconds (the price of leader election; nothing else polls) and
takes it over once it has seen no renewal for `duration` seconds, measured on its own monotonic clock
(never by comparing clocks across machines). The leader renews every duration/3; if it cannot renew
within `duration`, it exits at once, since another process may already be acting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from rolecall import kube, metrics

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Lease:
    namespace: str
    name: str = "rolecall-operator"
    duration: int = 15
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    _seen: tuple[str | None, object] | None = None
    _seen_at: float = 0.0

    async def acquire(self) -> None:
        retry = max(1.0, self.duration / 5)
        while not await asyncio.to_thread(self._try_acquire):
            await asyncio.sleep(retry)
        log.info("leader lease %s/%s acquired as %s", self.namespace, self.name, self.identity)

    def _body(self, transitions: int) -> dict[str, object]:
        now = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration, "acquireTime": now,
                "renewTime": now, "leaseTransitions": transitions}

    def _try_acquire(self) -> bool:
        api = kube.coordination()
        metrics.api("get", "leases")
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
        except kube.ApiException as e:
            if e.status != 404:
                raise
            try:
                api.create_namespaced_lease(self.namespace, {
                    "metadata": {"name": self.name}, "spec": self._body(0)})
                return True
            except kube.ApiException as e2:
                if e2.status == 409:
                    return False
                raise
        spec = lease.spec
        observed = (spec.holder_identity, spec.renew_time)
        if observed != self._seen:
            self._seen, self._seen_at = observed, time.monotonic()
        free = not spec.holder_identity or spec.holder_identity == self.identity
        expired = time.monotonic() - self._seen_at > (spec.lease_duration_seconds or self.duration)
        if not (free or expired):
            return False
        body = {"metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
                "spec": self._body((spec.lease_transitions or 0) + 1)}
        metrics.api("update", "leases")
        try:
            api.replace_namespaced_lease(self.name, self.namespace, body)
        except kube.ApiException as e:
            if e.status == 409:  # someone else moved first
                return False
            raise
        return True

    async def keep(self) -> None:
        """Renews until cancelled; exits the process if the lease cannot be renewed in time."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                if await asyncio.to_thread(self._renew):
                    last_ok = time.monotonic()
                    continue
                log.critical("leader lease taken over by another operator; exiting so only one acts")
                os._exit(3)
            except Exception as e:
                log.warning("leader lease renewal failed: %s", e)
            if time.monotonic() - last_ok > self.duration:
                log.critical("leader lease not renewed for %ss; exiting so only one operator acts", self.duration)
                os._exit(3)

    async def release(self) -> None:
        """On a graceful stop, hand the Lease back so a successor need not wait for it to expire."""
        try:
            await asyncio.to_thread(self._release)
        except Exception as e:
            log.warning("could not release the leader lease: %s", e)

    def _release(self) -> None:
        api = kube.coordination()
        metrics.api("get", "leases")
        lease = api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec.holder_identity != self.identity:
            return
        metrics.api("patch", "leases")
        api.patch_namespaced_lease(self.name, self.namespace, {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {"holderIdentity": None, "renewTime": None, "acquireTime": None}})
        log.info("leader lease released")

    def _renew(self) -> bool:
        api = kube.coordination()
        metrics.api("get", "leases")
        lease = api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec.holder_identity != self.identity:
            return False
        now = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        metrics.api("patch", "leases")
        api.patch_namespaced_lease(self.name, self.namespace, {
            "metadata": {"resourceVersion": lease.metadata.resource_version}, "spec": {"renewTime": now}})
        return True
