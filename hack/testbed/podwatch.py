"""The watch loop both stand-ins share (engine servers: standins.py; containers: containers.py): list, then
watch from that resourceVersion, relisting after any interruption. It outlives apiserver outages (the fault
tests cause them): while the apiserver is unreachable the stand-ins' servers and containers keep running."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import watch  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

log = logging.getLogger("podwatch")


class StandIn(Protocol):
    def run(self) -> None: ...

    def stop_all(self) -> None: ...


def watch_pods(api: Any, selector: str, resync: Callable[[], str], observe: Callable[[Any, bool], None]) -> None:
    """Forever: `resync()` (a list that returns its resourceVersion), then `observe(pod, deleted)` per event."""
    rv = _until_it_works(resync)
    while True:
        try:
            # A read timeout too: a frozen apiserver (SIGSTOP in the fault tests) must not hang the watch.
            for ev in watch.Watch().stream(api.list_pod_for_all_namespaces, label_selector=selector,
                                           resource_version=rv, timeout_seconds=300, allow_watch_bookmarks=True,
                                           _request_timeout=(5, 330)):
                if isinstance(ev["object"], dict):  # an ERROR event (e.g. 410 Gone): start from a relist
                    raise RuntimeError(f"watch error: {ev['object'].get('message', ev['object'])}")
                rv = ev["object"].metadata.resource_version
                if ev["type"] != "BOOKMARK":
                    observe(ev["object"], ev["type"] == "DELETED")
        except ApiException as e:
            if e.status != 410:
                log.warning("watch failed: %s; relisting", e.reason)
                time.sleep(1)
            rv = _until_it_works(resync)
        except Exception as e:  # a dropped connection, an apiserver outage
            log.warning("watch interrupted: %s; relisting", e)
            time.sleep(1)
            rv = _until_it_works(resync)


def _until_it_works(resync: Callable[[], str]) -> str:
    while True:
        try:
            return resync()
        except Exception as e:
            log.warning("relist failed (%s); trying again in 1s", e)
            time.sleep(1)


def run_until_signalled(stand_in: StandIn) -> None:
    """SIGTERM or SIGINT (the bed going down) stops what the stand-in runs, then the process."""

    def stop(*_: object) -> None:
        stand_in.stop_all()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stand_in.run()
