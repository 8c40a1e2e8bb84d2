"""The requester webhook's TLS: keeps the shared certificate Secret current and serves what it holds.

Every replica serves the webhook (kopf's WebhookServer, on one SSLContext that outlives rotations: a
renewed certificate is loaded into it, and new connections get it without the listener ever closing).
Only the leader writes, through the write guard like every other write: it fills the Secret when it is
empty, renews what is due (rolecall/certs.py decides), and puts the CA bundle into the webhook
configuration's caBundle. A standby reads the Secret on the same period and loads what the leader wrote.
With certificates from elsewhere (cert-manager: `manage=False`) nothing is written; cert-manager's CA
injector fills caBundle.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from rolecall import certs, kube, metrics
from rolecall.api.admission import REQUESTER_WEBHOOKS
from rolecall.leadership import NotLeader

log = logging.getLogger(__name__)
PUBLISHED = "rolecall.dev/ca-bundle-published"  # Secret annotation: "<bundle digest> <RFC 3339 time>"


@dataclass(frozen=True)
class Config:
    namespace: str
    secret: str
    names: list[str]  # the serving certificate's DNS names and IP addresses
    manage: bool = True
    lifetimes: certs.Lifetimes = field(default_factory=certs.Lifetimes)
    check_seconds: float = 60.0
    configuration: str = REQUESTER_WEBHOOKS


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertKeeper:
    def __init__(self, config: Config, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        self.context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        self.loaded = asyncio.Event()
        self.first_files: tuple[str, str] | None = None
        self._serving: bytes = b""

    async def run(self) -> None:
        while True:
            busy = True
            try:
                busy = await self.sync()
            except Exception as e:  # the next pass tries again; the certificate in use stays valid meanwhile
                metrics.WEBHOOK_CERT_ERRORS.inc()
                log.error("webhook certificates: %s: %s", type(e).__name__, e)
            # Soon again while nothing is served yet or a change is under way (written, not yet published or
            # settled), so a fresh install serves within seconds; otherwise once per period.
            await asyncio.sleep(min(1.0, self.config.check_seconds) if busy else self.config.check_seconds)

    async def sync(self) -> bool:
        """One pass; True while something is still to happen (no certificate yet, or a change in progress)."""
        secret = await asyncio.to_thread(self._read_secret)
        data = {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}
        current = certs.Material.from_secret_data(data)
        busy = False
        if self.config.manage:
            current, busy = await self._renew(secret, current)
        if current is None:
            log.warning("webhook certificates: Secret %s/%s holds no certificate yet%s", self.config.namespace,
                        self.config.secret, "" if self.config.manage else " (cert-manager fills it)")
            return True
        self._load(current)
        return busy

    async def _renew(self, secret: dict[str, Any] | None,
                     current: certs.Material | None) -> tuple[certs.Material | None, bool]:
        now = self.clock()
        published_for = _published_for(secret, current, now)
        plan = await asyncio.to_thread(certs.plan, current, self.config.names, now, self.config.lifetimes,
                                       published_for)
        try:
            if plan.changes:
                await asyncio.to_thread(self._write_secret, secret, plan.material, None)
                log.info("webhook certificates: %s", "; ".join(plan.changes))
                metrics.WEBHOOK_CERT_CHANGES.inc()
                return plan.material, True  # published and marked by the next passes, from the Secret as written
            if current is None:
                return None, True
            if not await asyncio.to_thread(self._publish, current.ca_bundle):
                return current, True
            if published_for is None:  # in caBundle now: the settle time starts
                await asyncio.to_thread(self._write_secret, secret, current,
                                        f"{current.bundle_digest()} {now.isoformat()}")
                return current, True
            # A renewed CA waits for its settle time before the serving certificate moves to it.
            return current, published_for < self.config.lifetimes.settle and _issuer_behind(current)
        except NotLeader:
            return current, current is None  # a standby, or past the renew deadline: the leader writes
        except kube.ApiException as e:
            if e.status != 409:  # 409: another replica wrote first; the next pass reads what it wrote
                raise
            return current, True

    def _read_secret(self) -> dict[str, Any] | None:
        metrics.api("get", "secrets")
        try:
            raw = kube.core().read_namespaced_secret(self.config.secret, self.config.namespace,
                                                     _preload_content=False).data
        except kube.ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(json.loads(raw))

    def _write_secret(self, secret: dict[str, Any] | None, material: certs.Material, published: str | None) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": self.config.secret, "namespace": self.config.namespace,
                         "labels": {"app.kubernetes.io/part-of": "rolecall"}},
            "data": {k: base64.b64encode(v).decode() for k, v in material.secret_data().items()}}
        if secret is None:
            metrics.api("create", "secrets")
            _ = kube.core().create_namespaced_secret(self.config.namespace, body, _preload_content=False).data
            return
        meta = secret["metadata"]
        annotations = dict(meta.get("annotations") or {})
        if published:
            annotations[PUBLISHED] = published
        body["metadata"].update(resourceVersion=meta["resourceVersion"], annotations=annotations,
                                labels={**(meta.get("labels") or {}), **body["metadata"]["labels"]})
        body["type"] = secret.get("type", "Opaque")
        metrics.api("update", "secrets")
        _ = kube.core().replace_namespaced_secret(self.config.secret, self.config.namespace, body,
                                                  _preload_content=False).data

    def _publish(self, bundle: bytes) -> bool:
        """Puts `bundle` into every webhook's caBundle; True once all of them hold it."""
        encoded = base64.b64encode(bundle).decode()
        api = kube.admissionregistration()
        metrics.api("get", "mutatingwebhookconfigurations")
        try:
            raw = api.read_mutating_webhook_configuration(self.config.configuration, _preload_content=False).data
        except kube.ApiException as e:
            if e.status == 404:
                log.warning("webhook certificates: MutatingWebhookConfiguration %s is missing",
                            self.config.configuration)
                return False
            raise
        hooks = json.loads(raw).get("webhooks") or []
        stale = [i for i, h in enumerate(hooks) if (h.get("clientConfig") or {}).get("caBundle") != encoded]
        if not stale:
            return True
        patch: list[dict[str, Any]] = []
        for i in stale:  # the `test` keeps the index pointing at the webhook read, whatever changed meanwhile
            patch += [{"op": "test", "path": f"/webhooks/{i}/name", "value": hooks[i]["name"]},
                      {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": encoded}]
        metrics.api("patch", "mutatingwebhookconfigurations")
        _ = api.patch_mutating_webhook_configuration(self.config.configuration, patch, _preload_content=False).data
        log.info("webhook certificates: put the CA bundle into %d webhook(s) of %s", len(stale),
                 self.config.configuration)
        return False  # confirmed by the next pass's read

    def _load(self, material: certs.Material) -> None:
        if material.tls_crt == self._serving:
            return
        # OpenSSL reads certificates from paths only; memory files (memfd) give it paths on a read-only root
        # without the key ever touching a disk.
        crt, key = _memory_file("tls.crt", material.tls_crt), _memory_file("tls.key", material.tls_key)
        # New handshakes use the new certificate at once; connections already open keep theirs.
        self.context.load_cert_chain(f"/proc/self/fd/{crt}", f"/proc/self/fd/{key}")
        if self.first_files is None:  # kopf re-reads these to see a change: they stay open and unchanged
            self.first_files = (f"/proc/self/fd/{crt}", f"/proc/self/fd/{key}")
        else:
            os.close(crt)
            os.close(key)
        self._serving = material.tls_crt
        metrics.WEBHOOK_CERT_EXPIRY.set(certs.not_after(material.tls_crt).timestamp())
        log.info("webhook certificates: serving a certificate valid until %s",
                 certs.not_after(material.tls_crt).isoformat())
        self.loaded.set()


def _memory_file(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, content)
    return fd


def _issuer_behind(material: certs.Material) -> bool:
    """Whether the serving certificate is not yet signed by the newest CA."""
    return certs.certificates(material.tls_crt)[0].issuer != certs.certificates(material.ca_bundle)[0].subject


def _published_for(secret: dict[str, Any] | None, current: certs.Material | None,
                   now: dt.datetime) -> dt.timedelta | None:
    if secret is None or current is None:
        return None
    mark = ((secret.get("metadata") or {}).get("annotations") or {}).get(PUBLISHED, "")
    digest, _, when = mark.partition(" ")
    if digest != current.bundle_digest() or not when:
        return None
    try:
        return now - dt.datetime.fromisoformat(when)
    except ValueError:
        return None


def unserved(address: str) -> str | None:
    """None once something accepts connections at the webhook's address (its server has started). Where
    replicas share one address (the test bed's `url` mode) any replica's server answers."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return None
    except OSError as e:
        return f"the requester webhook is not listening on {address} yet ({e.strerror or e})"


class Server(kopf.WebhookServer):
    """kopf's webhook server on the keeper's SSLContext (kopf loads the first certificate files into it)."""

    def __init__(self, keeper: CertKeeper, addr: str, port: int) -> None:
        assert keeper.first_files is not None
        crt, key = keeper.first_files
        super().__init__(addr=addr, port=port, context=keeper.context, certfile=crt, pkeyfile=key,
                         file_check_interval=3600.0)
