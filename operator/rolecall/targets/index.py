"""The operator's view of pods, fed by a watch: what targeting needs and nothing else.

Resolving a selector and checking a pod just before acting on it used to cost one LIST per request and one
GET per target; from the index they cost no API read, so a request's API cost no longer grows with its pods.

Per pod it keeps UID, name, namespace, labels, node, IP, phase, hostNetwork and whether the pod is being
deleted: a few hundred bytes, with a label set shared by every pod that carries the same one.

Freshness: an entry is the pod as of the latest watch event. Entries are served only while their watch
chain is unbroken (a full listing, then a watch from that listing's resourceVersion, resumed from the last
one seen when the server ends a stream, every ~60 s) and was heard from within STALE_SECONDS (an event, or
a stream the server ended normally): a connection that dies without a word stops being served within 75 s
(TCP keepalive usually finds it within ~25 s, kube.pod_events). When a stream breaks or its resourceVersion
has expired, readers wait until a new full listing has replaced every entry of that scope: a pod deleted
meanwhile is dropped, never served stale.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rolecall import kube, metrics

log = logging.getLogger(__name__)

# How long a reader waits for a broken watch chain to be listed again before it gives up (Unavailable), and
# for the first listing of a scope (a cluster-wide listing of tens of thousands of pods takes a while).
SYNC_WAIT_SECONDS = 10.0
FIRST_LISTING_WAIT_SECONDS = 300.0
# A scope not heard from for this long is not served (its stream ends and resumes every ~60 s when healthy).
STALE_SECONDS = 75.0


class Selector(Protocol):
    def matches(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class PodEntry:
    uid: str
    name: str
    namespace: str
    labels: Mapping[str, str]
    node: str | None
    ip: str | None
    phase: str
    host_network: bool
    deleting: bool

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.deleting


class _Labels(dict[str, str]):
    """A label set shared by the pods that carry it (weakly referenced, so it goes with its last pod)."""

    __slots__ = ("__weakref__",)


class PodIndex:
    """Pods by namespace and UID. Written by the watch threads, read by the event loop (under one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, PodEntry]] = {}
        self._labels: weakref.WeakValueDictionary[tuple[tuple[str, str], ...], _Labels] = (
            weakref.WeakValueDictionary())
        self._live: set[str | None] = set()  # scopes (a namespace, or None for all) whose chain is unbroken
        self._scopes: set[str | None] = set()  # scopes some watch feeds
        self._refused: dict[str | None, kube.ApiException] = {}  # the API's 401/403 while listing a scope
        self._heard: dict[str | None, float] = {}  # monotonic time each scope's watch was last heard from
        self._listed: set[str | None] = set()  # scopes listed at least once
        self._labels_lock = threading.Lock()  # several watch threads share the label sets

    # --- written by a watch -----------------------------------------------------------------------------

    def entry(self, pod: Mapping[str, Any]) -> PodEntry:
        """A pod object (as JSON) reduced to what targeting needs."""
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        key = tuple(sorted(labels.items()))
        with self._labels_lock:
            shared = self._labels.get(key)
            if shared is None:
                shared = _Labels({sys.intern(k): sys.intern(v) for k, v in key})
                self._labels[key] = shared
        node = spec.get("nodeName")
        return PodEntry(uid=meta["uid"], name=meta["name"], namespace=sys.intern(meta["namespace"]), labels=shared,
                        node=sys.intern(node) if node else None, ip=status.get("podIP") or None,
                        phase=sys.intern(status.get("phase") or "Unknown"),
                        host_network=bool(spec.get("hostNetwork")), deleting=bool(meta.get("deletionTimestamp")))

    def watching(self, scope: str | None) -> None:
        with self._lock:
            self._scopes.add(scope)

    def replace(self, scope: str | None, entries: Iterable[PodEntry]) -> None:
        """A full listing of `scope`: every entry it lacks is dropped; the scope is served again."""
        fresh: dict[str, dict[str, PodEntry]] = {}
        for e in entries:
            fresh.setdefault(e.namespace, {})[e.uid] = e
        with self._lock:
            if scope is None:
                self._pods = fresh
            else:
                self._pods[scope] = fresh.get(scope, {})
            self._live.add(scope)
            self._listed.add(scope)
            self._heard[scope] = time.monotonic()
            self._refused.pop(scope, None)
        metrics.POD_INDEX_LISTINGS.inc()

    def put(self, e: PodEntry) -> None:
        with self._lock:
            self._pods.setdefault(e.namespace, {})[e.uid] = e

    def drop(self, namespace: str, uid: str) -> None:
        with self._lock:
            self._pods.get(namespace, {}).pop(uid, None)

    def heard(self, scope: str | None) -> None:
        """The scope's watch is alive: an event arrived, or the server ended a stream normally."""
        with self._lock:
            self._heard[scope] = time.monotonic()

    def lost(self, scope: str | None, error: BaseException | None = None) -> None:
        """The watch chain broke: nothing of `scope` is served until it is listed again. A refusal by the API
        (401/403: the operator's own rights) is kept, so that readers fail with it at once, naming the right."""
        with self._lock:
            self._live.discard(scope)
            if isinstance(error, kube.ApiException) and error.status in (401, 403):
                self._refused[scope] = error

    # --- read by the reconciles -------------------------------------------------------------------------

    def size(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pods.values())

    def live(self, namespace: str) -> bool:
        """Whether `namespace` is served: listed, its chain unbroken, heard from within STALE_SECONDS."""
        now = time.monotonic()
        with self._lock:
            return any(scope in self._live and now - self._heard.get(scope, 0.0) < STALE_SECONDS
                       for scope in (None, namespace))

    def check(self, namespace: str) -> None:
        """Raises at once unless `namespace` is served: the API's refusal when it refused the listing (the
        operator's own rights), else Unavailable."""
        if self.live(namespace):
            return
        if not ({None, namespace} & self._scopes):
            raise kube.Unavailable(f"no pod watch covers namespace {namespace}")
        refused = self._refused.get(namespace) or self._refused.get(None)
        if refused is not None:  # a copy: the watch thread's exception object stays its own
            copy = kube.ApiException(status=refused.status, reason=refused.reason)
            copy.body = refused.body
            raise copy
        raise kube.Unavailable(f"the pod watch for {namespace} is not in step with the apiserver (it is listing "
                               "pods again, or has not been heard from): is the apiserver reachable?")

    async def synced(self, namespace: str, wait: float | None = None) -> None:
        """Returns once `namespace` is served; raises what check() raises after `wait` (default: 10 s, or 300 s
        while the scope has never been listed), or at once when the API refused the listing."""
        if wait is None:
            first = not ({None, namespace} & self._listed)
            wait = FIRST_LISTING_WAIT_SECONDS if first else SYNC_WAIT_SECONDS
        deadline, pause = time.monotonic() + wait, 0.005
        while True:
            try:
                self.check(namespace)
                return
            except kube.ApiException:
                raise
            except kube.Unavailable:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    def select(self, namespace: str, selector: Selector) -> list[PodEntry]:
        """The namespace's pods (any phase) that `selector` picks, by name."""
        with self._lock:
            pods = list(self._pods.get(namespace, {}).values())
        return sorted((p for p in pods if selector.matches(p.labels)), key=lambda p: p.name)

    def get(self, namespace: str, uid: str) -> PodEntry | None:
        with self._lock:
            return self._pods.get(namespace, {}).get(uid)


PODS = PodIndex()
metrics.POD_INDEX_SIZE.set_function(PODS.size)
