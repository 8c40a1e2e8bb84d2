"""Entry point: `python -m rolecall` (or `rolecall-operator`) runs the operator under kopf.

Mode: `--namespace NS` (repeatable) watches only those namespaces (RoleBindings there suffice, plus the
few cluster-scoped reads named in the README); without it, all namespaces. A Lease in the operator's own
namespace keeps one process active; another one (with its own --metrics-address) watches as a standby
and takes over when the leader stops renewing. A leader that misses its renew deadline stops acting and
becomes a standby itself, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import logging
import os
import signal
import tempfile
import tracemalloc
import zoneinfo
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from rolecall import certs, handlers, health, kube, leadership, malloc, metrics, webhook
from rolecall.runs import authz
from rolecall.runs.context import Runtime
from rolecall.runs.queue import Gate
from rolecall.targets.podwatch import PodWatch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rolecall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--namespace", "-n", action="append", default=[],
                   help="watch only this namespace (repeat for several); default: all namespaces")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "rolecall-system"),
                   help="namespace of the leader Lease (default: $POD_NAMESPACE or rolecall-system)")
    p.add_argument("--lease-name", default=os.environ.get("ROLECALL_LEASE_NAME", "rolecall-operator"),
                   help="name of the leader Lease: one per shard (chart value shards), so each namespace set has "
                        "its own active operator (default: $ROLECALL_LEASE_NAME or rolecall-operator)")
    p.add_argument("--lease-seconds", type=int, default=int(os.environ.get("ROLECALL_LEASE_SECONDS", "15")),
                   help="leader lease duration: how long a standby waits after the leader stops renewing")
    p.add_argument("--metrics-address", default=os.environ.get("ROLECALL_METRICS_ADDRESS", f"{_own_ip()}:8080"),
                   help="host:port for Prometheus metrics (empty: off; default $POD_IP:8080, else 0.0.0.0:8080); "
                        "a standby on the same host needs its own")
    p.add_argument("--health-address", default=os.environ.get("ROLECALL_HEALTH_ADDRESS", f"{_own_ip()}:8081"),
                   help="host:port for the probes GET /healthz (liveness) and /readyz (readiness) "
                        "(empty: off; default $POD_IP:8081, else 0.0.0.0:8081)")
    p.add_argument("--allow-without-admission-policies", action="store_true",
                   default=os.environ.get("ROLECALL_ALLOW_WITHOUT_POLICIES") == "1",
                   help="act even when rolecall's admission policies are missing (requests then go unchecked at "
                        "admission; the operator still checks recorded requesters when there are any)")
    p.add_argument("--admission-mode", choices=["policy", "webhook"],
                   default=os.environ.get("ROLECALL_ADMISSION_MODE", "policy"),
                   help="who records requesters: 'policy' (MutatingAdmissionPolicy v1, Kubernetes 1.36+) or 'webhook' "
                        "(this operator serves a mutating webhook, for 1.34 and 1.35; every replica serves it)")
    p.add_argument("--webhook-address", default=os.environ.get("ROLECALL_WEBHOOK_ADDRESS", f"{_own_ip()}:9443"),
                   help="host:port the requester webhook listens on (webhook mode; default $POD_IP:9443)")
    p.add_argument("--webhook-secret", default=os.environ.get("ROLECALL_WEBHOOK_SECRET", "rolecall-webhook-tls"),
                   help="the Secret in --lease-namespace that holds the webhook's CA and serving certificate")
    p.add_argument("--webhook-certificates", choices=["self", "external"], default="self",
                   help="'self': the leader makes the CA and serving certificate, renews them and sets the webhook "
                        "configuration's caBundle; 'external': another tool fills the Secret and caBundle "
                        "(cert-manager)")
    p.add_argument("--webhook-dns-name", action="append", default=[],
                   help="a name (DNS or IP) the apiserver reaches the webhook by, for the certificate (repeat; default "
                        "the chart's Service: rolecall-operator-webhook.<namespace>.svc)")
    p.add_argument("--webhook-certificate-days", type=float, default=90.0,
                   help="lifetime of a serving certificate made here (renewed with a third of it left)")
    p.add_argument("--webhook-ca-days", type=float, default=5 * 365.0,
                   help="lifetime of a CA made here (renewed with a third of it left; the old one stays trusted)")
    p.add_argument("--webhook-check-seconds", type=float, default=60.0,
                   help="how often each replica reads the certificate Secret (and the leader renews what is due)")
    p.add_argument("--drain-seconds", type=float, default=float(os.environ.get("ROLECALL_DRAIN_SECONDS", "20")),
                   help="on SIGTERM (a rollout), how long the leader lets targets and batches in flight finish and "
                        "records them before it hands the Lease over; keep it under the pod's "
                        "terminationGracePeriodSeconds (default 20, of Kubernetes' default 30)")
    p.add_argument("--overdue-after-seconds", type=float,
                   default=float(os.environ.get("ROLECALL_OVERDUE_AFTER_SECONDS", "60")),
                   help="an object whose reconcile (an event, a schedule, a retry) fell due this long ago and has not "
                        "run counts in the rolecall_overdue_objects gauge (default 60)")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


def _own_ip() -> str:
    """The pod's own IP from the downward API: where pods share a network namespace (host network), binding
    0.0.0.0 would make two replicas collide."""
    return os.environ.get("POD_IP") or "0.0.0.0"  # noqa: S104 - outside a pod: every interface, as before


def _listen(what: str, flag: str, address: str, start: Callable[[], object]) -> None:
    try:
        start()
    except OSError as e:
        raise SystemExit(f"error: cannot listen for {what} on {flag} {address}: {e.strerror or e}; a second "
                         f"operator on this host (a standby) needs its own, e.g. {flag} 127.0.0.1:<port>, or '' "
                         "to turn it off") from e


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _cert_keeper(args: argparse.Namespace) -> webhook.CertKeeper:
    ns = args.lease_namespace
    names = args.webhook_dns_name or [f"rolecall-operator-webhook.{ns}.svc",
                                      f"rolecall-operator-webhook.{ns}.svc.cluster.local"]
    lifetimes = certs.Lifetimes(ca=dt.timedelta(days=args.webhook_ca_days),
                                serving=dt.timedelta(days=args.webhook_certificate_days),
                                settle=dt.timedelta(seconds=2 * args.webhook_check_seconds))
    return webhook.CertKeeper(webhook.Config(namespace=ns, secret=args.webhook_secret, names=names,
                                             manage=args.webhook_certificates == "self", lifetimes=lifetimes,
                                             check_seconds=args.webhook_check_seconds))


async def _serve_webhook(settings: kopf.OperatorSettings, certificates: webhook.CertKeeper, address: str) -> None:
    """kopf starts the webhook server after the startup handlers, with the first certificate loaded: on a
    fresh install that is once the first leader has filled the Secret (a few seconds)."""
    while True:
        try:
            await asyncio.wait_for(certificates.loaded.wait(), timeout=30)
            break
        except TimeoutError:
            logging.getLogger(__name__).warning(
                "webhook mode: still no certificate to serve in Secret %s/%s; the leader fills it (rights: get "
                "and update on that Secret)", certificates.config.namespace, certificates.config.secret)
    host, port = _split(address)
    settings.admission.server = webhook.Server(certificates, host, port)


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the object, minus noise) on every watch event, for on.create
    and on.update handlers. rolecall has only on.event handlers, so it is never used: building none saved
    ~9% of the operator's CPU per event (py-spy during benchmarks/latency.py), and every status write's
    echo is such an event."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


def configure(settings: kopf.OperatorSettings) -> None:
    # kopf's own bookkeeping under our prefix. Our role handlers keep their state in .status (the ledger),
    # so kopf writes nothing to the objects in normal operation.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rolecall.dev")
    settings.persistence.diffbase_storage = NoDiffBase(prefix="rolecall.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "rolecall.dev/finalizer"
    # No CRD scanning: it needs cluster-wide list on CRDs, a right the operator does not otherwise need.
    settings.scanning.disabled = True
    # Events are posted by rolecall itself, one per action start and end, not for every log line.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330  # a silently hung watch (a frozen apiserver) is dropped and re-made
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    # Watches outlive an apiserver outage of up to ~10 minutes before kopf gives up on them.
    settings.networking.error_backoffs = [1, 2, 4, 8] + [15] * 40


async def _trim_every(seconds: float) -> None:
    """Free heap pages go back to the system once a minute (rolecall/malloc.py): after a burst of requests
    RSS falls back to what the operator holds."""
    while True:
        await asyncio.sleep(seconds)
        malloc.trim()


def _memory_snapshots_on_sigusr1() -> None:
    """With ROLECALL_TRACEMALLOC=<frames> set, tracemalloc starts here, once the modules are imported, and
    SIGUSR1 writes a snapshot of what the operator has allocated since and still holds to
    $ROLECALL_SNAPSHOT_DIR (default: the temp directory), to be read with tracemalloc.Snapshot.load
    (benchmarks/scale.py --profile does). Tracing starts after the imports because importing the kubernetes
    client under tracemalloc took minutes (its CoreV1Api module had not finished after 600 s in scale.py);
    what the imports hold is measured apart, as RSS. Python's own PYTHONTRACEMALLOC (tracing from the first
    line) works too. Without either, nothing is traced and SIGUSR1 keeps its default."""
    frames = os.environ.get("ROLECALL_TRACEMALLOC")
    if frames and not tracemalloc.is_tracing():
        tracemalloc.start(int(frames))
    if not tracemalloc.is_tracing():
        return

    def dump(*_: object) -> None:
        log = logging.getLogger(__name__)
        try:
            where = os.environ.get("ROLECALL_SNAPSHOT_DIR") or tempfile.gettempdir()
            path = os.path.join(where, f"rolecall-{os.getpid()}.tracemalloc")
            gc.collect()
            tracemalloc.take_snapshot().dump(path)
        except Exception:  # a signal handler must not raise into whatever the main thread was doing
            log.exception("could not write a tracemalloc snapshot")
            return
        log.warning("tracemalloc snapshot written to %s", path)

    signal.signal(signal.SIGUSR1, dump)


def main(argv: list[str] | None = None) -> None:
    malloc.fewer_arenas()
    _memory_snapshots_on_sigusr1()
    # Time zones come from the tzdata package only, the same list admission accepts (api/schedule.py).
    zoneinfo.reset_tzpath(to=[])
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kube.load()
    authz.allow_without_policies = args.allow_without_admission_policies
    authz.admission_mode = args.admission_mode
    _listen("metrics", "--metrics-address", args.metrics_address, lambda: metrics.serve(args.metrics_address))
    # Per-event success lines from kopf would drown the log; failures are still logged.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # each retry is reported once by us
    lease = leadership.Leadership(namespace=args.lease_namespace, name=args.lease_name, duration=args.lease_seconds)
    watchdog = health.Watchdog()

    def alive() -> str | None:
        stalled = watchdog.stalled_for()
        return None if stalled is None else f"the event loop has not run for {stalled:.0f}s"

    def ready() -> str | None:
        # In webhook mode a pod takes webhook calls (the Service) only once its webhook server listens.
        return lease.unready_reason() or (webhook.unserved(args.webhook_address)
                                          if args.admission_mode == "webhook" else None)

    _listen("health probes", "--health-address", args.health_address,
            lambda: health.serve(args.health_address, alive=alive, ready=ready))
    kube.set_write_guard(lease.check, lease.until_acting)  # no write of any kind past the renew deadline
    gate = Gate(overdue_after=args.overdue_after_seconds)
    metrics.report_overdue(gate.overdue)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, gate, Runtime(identity=lease.identity))
    certificates = _cert_keeper(args) if args.admission_mode == "webhook" else None
    if certificates is not None:
        handlers.register_requester_webhooks(registry)
    keeper: list[asyncio.Task[None]] = []
    # Targets come from a watch-fed pod index: one watch per namespace, or one for all of them.
    pod_watches = [PodWatch(ns) for ns in args.namespace] or [PodWatch(None)]

    def lead() -> None:
        metrics.TAKEOVERS.inc()
        gate.open()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        # Fan-out runs blocking client calls (kubernetes, pymemcache) in threads: the default pool of
        # min(32, cores + 4) would cap concurrency at 6 on a 2-core node. As many threads as pooled API
        # connections (benchmarks/scale.py showed 64 threads over 32 connections discarding connections).
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=kube.POOL_SIZE))
        # The watches run on the standby too (a takeover starts from bodies already in memory); only the
        # leader reconciles.
        keeper.append(asyncio.get_running_loop().create_task(lease.run(lead, gate.close), name="leader-lease"))
        keeper.append(asyncio.get_running_loop().create_task(watchdog.run(), name="liveness-watchdog"))
        keeper.append(asyncio.get_running_loop().create_task(_trim_every(60.0), name="malloc-trim"))
        for w in pod_watches:
            w.start()
        if certificates is not None:
            keeper.append(asyncio.get_running_loop().create_task(certificates.run(), name="webhook-certificates"))
            await _serve_webhook(settings, certificates, args.webhook_address)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        # A planned stop: what is in flight finishes and is written while this process still leads (the Lease
        # renewed, the pod index watched), then the Lease is handed over: the next leader repeats nothing.
        try:
            await gate.drain(args.drain_seconds)
        finally:
            for task in keeper:
                task.cancel()
            for w in pod_watches:
                w.stop()
            await lease.release()  # whatever the drain met: a successor need not wait out the Lease

    kopf.run(registry=registry, standalone=True, clusterwide=not args.namespace,
             namespaces=args.namespace)


if __name__ == "__main__":
    main()
