"""Helpers for WebServer tests: WebServer objects, and client connections held open against real servers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from harness import Cluster, wait_for

GROUP, VERSION, PLURAL = "rolecall.dev", "v1alpha1", "webservers"


def webserver(name: str, engine: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WebServer", "metadata": {"name": name},
            "spec": {"engine": engine, "selector": {"matchLabels": selector}, **spec}}


def _api(cluster: Cluster) -> Any:
    return client.CustomObjectsApi(cluster.api_client)


def create_web(cluster: Cluster, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(_api(cluster).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body))


def patch_web(cluster: Cluster, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return dict(_api(cluster).patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch))


def web_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj = _api(cluster).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return dict(obj.get("status") or {})


def request_refresh(cluster: Cluster, ns: str, name: str, token: str) -> dict[str, Any]:
    """Like `kubectl annotate webserver NAME rolecall.dev/refresh-requested-at=TOKEN`, then waits for the echo."""
    patch_web(cluster, ns, name, {"metadata": {"annotations": {"rolecall.dev/refresh-requested-at": token}}})
    return wait_for(lambda: (s := web_status(cluster, ns, name)).get("lastHandledRefreshRequest") == token and s,
                    f"refresh {token!r} handled on {ns}/{name}", 30)


def web_events(cluster: Cluster, ns: str, name: str) -> list[Any]:
    evs = client.CoreV1Api(cluster.api_client).list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name},involvedObject.kind=WebServer")
    return sorted(evs.items, key=lambda e: int(e.metadata.resource_version))  # the order they were posted


def _connect(ip: str) -> socket.socket:
    return socket.create_connection((ip, 80), timeout=10)


@contextlib.contextmanager
def held_connections(ip: str, idle: int, in_flight: int) -> Iterator[list[socket.socket]]:
    """Holds `idle` keep-alive connections that finished one request, and `in_flight` requests whose headers
    are still arriving (the server is reading them), open against ip:80 until the block ends."""
    socks: list[socket.socket] = []
    try:
        for _ in range(idle):
            s = _connect(ip)
            socks.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: client\r\n\r\n")
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 "), answer[:80]
            assert b"connection: close" not in answer.lower(), "the server refused keep-alive"
        for _ in range(in_flight):
            s = _connect(ip)
            socks.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: client\r\n")  # no blank line yet: the request is in flight
        yield socks
    finally:
        for s in socks:
            s.close()
