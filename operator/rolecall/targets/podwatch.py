"""Keeps the pod index (targets/index.py) current: list in pages, then watch, in one thread per scope.

A scope is one namespace (namespaced mode: one watch each, which RoleBindings there allow) or all of them.
The thread blocks on the official client's streaming response, so the event loop never waits on it.

The chain: a paginated LIST (its first page's resourceVersion is the snapshot the rest continue), then a
watch from there. When the server ends a stream (every ~60 s) the next one resumes from the last
resourceVersion seen, events or bookmarks, and the index stays served. Anything else (an error, an expired
resourceVersion, an event that cannot be read) marks the scope lost and lists it again from scratch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rolecall import kube, malloc, metrics
from rolecall.targets.index import PODS, PodEntry, PodIndex

log = logging.getLogger(__name__)

PAGE = 250  # pods per LIST page: a few MB of JSON at a time, however many pods the cluster has
SERVER_TIMEOUT = 60  # the server ends each stream after this; resuming from the watch cache is cheap


class _Expired(Exception):
    """The resourceVersion to resume from is too old (410 Gone): only a new listing helps."""


class PodWatch:
    def __init__(self, scope: str | None, index: PodIndex = PODS, page: int = PAGE,
                 server_timeout: int = SERVER_TIMEOUT) -> None:
        self.scope, self.index, self.page, self.server_timeout = scope, index, page, server_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-watch-{scope or 'all'}", daemon=True)

    def start(self) -> None:
        self.index.watching(self.scope)
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread after its current stream (a daemon thread: it never delays the process's exit)."""
        self._stop.set()

    def _run(self) -> None:
        version: str | None = None
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                    backoff = 0.5
                began = time.monotonic()
                version = self._follow(version)
                self.index.heard(self.scope)  # the server ended the stream normally: the connection lived
                metrics.POD_WATCH_RESTARTS.labels("ended").inc()  # resumed from `version`: still served
                if time.monotonic() - began < 1:
                    self._stop.wait(1)  # a server that ends streams at once is not asked again in a tight loop
            except _Expired:
                metrics.POD_WATCH_RESTARTS.labels("expired").inc()
                self.index.lost(self.scope)
                version = None
            except Exception as e:  # any failure: stop serving, list again after a pause
                self.index.lost(self.scope, e)
                if self._stop.is_set():  # stopped, and the stream then ended under it: nothing to report
                    return
                metrics.POD_WATCH_RESTARTS.labels("broken").inc()
                version = None
                log.warning("pod watch for %s broken (%s: %s); listing again in %.1fs", self.scope or "all namespaces",
                            type(e).__name__, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> str:
        entries: list[PodEntry] = []
        token: str | None = None
        version = ""
        while True:
            metrics.api("list", "pods")
            try:
                page = kube.pod_page(self.scope, self.page, token)
            except kube.ApiException as e:
                if e.status == 410 and token:  # the continue token expired mid-listing: start over, new snapshot
                    entries, token, version = [], None, ""
                    continue
                raise
            version = version or page["metadata"]["resourceVersion"]
            entries.extend(self.index.entry(p) for p in page.get("items") or [])
            token = page["metadata"].get("continue") or None
            if not token:
                break
        self.index.replace(self.scope, entries)
        malloc.trim()  # the pages' parsed JSON is freed now: hand its heap pages back (rolecall/malloc.py)
        return version

    def _follow(self, version: str) -> str:
        metrics.api("watch", "pods")
        for event in kube.pod_events(self.scope, version, self.server_timeout):
            if self._stop.is_set():
                break
            version = self._apply(event) or version
            self.index.heard(self.scope)
        return version

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired(obj.get("message"))
            raise kube.Unavailable(f"pod watch error {obj.get('code')}: {obj.get('message')}")
        if kind in ("ADDED", "MODIFIED"):
            self.index.put(self.index.entry(obj))
        elif kind == "DELETED":
            self.index.drop(obj["metadata"]["namespace"], obj["metadata"]["uid"])
        elif kind != "BOOKMARK":
            raise kube.Unavailable(f"pod watch sent an event of unknown type {kind!r}")
        metrics.POD_INDEX_EVENTS.labels(kind).inc()
        return str(obj["metadata"]["resourceVersion"])
