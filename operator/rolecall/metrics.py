"""Prometheus metrics: live figures (cache stats) and what the operator costs (API calls, reconciles).

Served on --metrics-address (default 0.0.0.0:8080; empty disables). Status holds settled facts for
people; anything that changes by the second belongs here instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

API_REQUESTS = Counter("rolecall_api_requests", "Kubernetes API requests made by rolecall's own code.",
                       ["verb", "resource"])
RECONCILES = Counter("rolecall_reconciles", "Reconciles run, per kind.", ["kind"])
REQUESTS = Counter("rolecall_requests", "Requests (clear, stop, start) finished, by outcome.",
                   ["kind", "action", "outcome"])
REQUEST_OUTCOMES = Counter("rolecall_request_outcomes", "Requests acknowledged, by outcome (Succeeded, Failed, "
                           "Refused, Stalled).", ["kind", "action", "outcome"])
TAKEOVERS = Counter("rolecall_leader_terms", "Times this process became the leader.")
LEASE_RENEWALS_LATE = Counter(
    "rolecall_lease_renewals_late", "Lease renewals sent before the renew deadline whose answer was handled after "
    "it (a busy event loop): the term went on, acting paused until then (leadership.py).")
WORK_DEFERRED = Counter(
    "rolecall_work_deferred", "Waits for acting to resume: a reconcile, a target start, a status write or an "
    "Event refused in the renew-deadline gap while the term went on, waiting for the renewal to land instead of "
    "being dropped (runs/fence.py).", ["kind"])
POD_ACTIONS = Counter("rolecall_pod_actions", "Per-pod engine actions, by outcome.",
                      ["kind", "engine", "action", "outcome"])
ACTION_SECONDS = Histogram("rolecall_action_seconds", "Time from accepting a request to its last pod.",
                           ["kind", "action"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
EVENT_TO_RECONCILE = Histogram(
    "rolecall_event_to_reconcile_seconds", "From a watch event reaching the operator to the reconcile it starts.",
    ["kind"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
REQUEST_STEP = Histogram(
    "rolecall_request_step_seconds", "Each step of handling a request: ledger write, engine calls, final status write.",
    ["kind", "step"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60))
STATS_REFRESHES = Counter("rolecall_stats_refreshes", "Engine statistics reads (all targets of one resource).",
                          ["kind"])
CACHE_ITEMS = Gauge("rolecall_cache_items", "Items over the targets of a CacheServer.", ["namespace", "name"])
CACHE_BYTES = Gauge("rolecall_cache_bytes", "Bytes of cached data over the targets.", ["namespace", "name"])
CACHE_HIT_RATIO = Gauge("rolecall_cache_hit_ratio", "Hits / (hits + misses), 0..1.", ["namespace", "name"])
CACHE_EVICTIONS = Gauge("rolecall_cache_evictions", "Evictions summed over the targets.", ["namespace", "name"])

WEB_ACTIVE_CONNECTIONS = Gauge("rolecall_web_active_connections", "Client connections over a WebServer's pods.",
                               ["namespace", "name"])
WEB_CURRENT_USERS = Gauge("rolecall_web_current_users", "currentUsers of a WebServer.", ["namespace", "name"])
WEBHOOK_CERT_EXPIRY = Gauge("rolecall_webhook_certificate_expiry_timestamp_seconds",
                            "When the serving certificate this process's requester webhook presents expires.")
WEBHOOK_CERT_CHANGES = Counter("rolecall_webhook_certificate_changes", "Times this process made or renewed the "
                               "requester webhook's certificates (written to their Secret).")
WEBHOOK_CERT_ERRORS = Counter("rolecall_webhook_certificate_errors", "Passes of the webhook certificate keeper "
                              "that failed (reading or writing the Secret or the webhook configuration).")
POD_INDEX_SIZE = Gauge("rolecall_pod_index_pods", "Pods in the operator's watch-fed pod index (all phases).")
POD_INDEX_LISTINGS = Counter("rolecall_pod_index_listings", "Full pod listings that (re)filled the pod index.")
POD_INDEX_EVENTS = Counter("rolecall_pod_index_events", "Pod watch events applied to the pod index, by type.",
                           ["type"])
POD_WATCH_RESTARTS = Counter("rolecall_pod_watch_restarts", "Pod watch streams that ended: 'ended' (by the server, "
                             "resumed), 'expired' or 'broken' (the index waits for a new listing).", ["reason"])


class _Overdue(Collector):
    """`rolecall_overdue_objects`: read from the work queues at each scrape, so it is never stale."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "rolecall_overdue_objects", "Objects whose reconcile (an event, a timer: a schedule, a retry, a refresh) "
            "fell due more than --overdue-after-seconds ago and has not run; 0 while this process does not lead.",
            labels=["kind"])
        for kind, count in sorted(self.source().items()):
            family.add_metric([kind], count)
        yield family


_OVERDUE = _Overdue()
REGISTRY.register(_OVERDUE)


def report_overdue(source: Callable[[], dict[str, int]]) -> None:
    """`source()` -> {kind: objects overdue now}, read at every scrape (runs/queue.py's Gate.overdue)."""
    _OVERDUE.source = source


def api(verb: str, resource: str) -> None:
    API_REQUESTS.labels(verb, resource).inc()


def serve(address: str) -> None:
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104 - in-cluster scrape target
