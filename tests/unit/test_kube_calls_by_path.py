"""kube's calls by path (the pod index's listing and watch, Events) against a local HTTP server standing in for
the apiserver: the method, path, query and body it receives, the JSON answers, ApiException with the status
on an error, the write guard on the Event, and that none of them loads the client's generated CoreV1Api
class (~22 MiB of RSS, the reason these calls go by path). The calls run in a fresh interpreter, so that
what other tests imported does not hide an import."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "status": {"podIP": "10.0.0.1"}}

CALLS = """
import json, sys
from kubernetes import client
from rolecall import kube

cfg = client.Configuration(host=sys.argv[1])
client.Configuration.set_default(cfg)
kube.load = lambda: cfg  # the kubeconfig, as load() would have read it
out = {"page": kube.pod_page("ns", 250, "tok"), "all": kube.pod_page(None, 250, None),
       "watch": list(kube.pod_events(None, "42", 5))}
kube.create_event("ns", {"reason": "Cleared"})
try:
    kube.pod_page("forbidden", 250, None)
except kube.ApiException as e:
    out["refused"] = e.status
def not_leading():
    raise RuntimeError("not leading")
kube.set_write_guard(not_leading)
try:
    kube.create_event("ns", {"reason": "Late"})
except RuntimeError as e:
    out["guarded"] = str(e)
out["core_v1_api_loaded"] = "kubernetes.client.api.core_v1_api" in sys.modules
print(json.dumps(out))
"""


class _Apiserver(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append({"method": "GET", "path": self.path, "accept": self.headers["Accept"]})
        if "/namespaces/forbidden/" in self.path:
            self._answer(403, b'{"kind":"Status","reason":"Forbidden","code":403}')
        elif "watch=true" in self.path:
            lines = [{"type": "ADDED", "object": POD}, {"type": "BOOKMARK", "object": {"metadata": {}}}]
            self._answer(200, "".join(json.dumps(e) + "\n" for e in lines).encode())
        else:
            self._answer(200, json.dumps({"kind": "PodList", "metadata": {"continue": ""}, "items": [POD]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"method": "POST", "path": self.path, "body": body,
                          "content_type": self.headers["Content-Type"]})
        self._answer(201, b"{}")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def apiserver() -> Iterator[str]:
    _Apiserver.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Apiserver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_listing_watch_and_events_by_path(apiserver: str) -> None:
    done = subprocess.run([sys.executable, "-c", CALLS, apiserver], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["page"]["items"] == [POD] and out["all"]["items"] == [POD]
    assert [e["type"] for e in out["watch"]] == ["ADDED", "BOOKMARK"] and out["watch"][0]["object"] == POD
    assert out["refused"] == 403
    assert out["guarded"] == "not leading"
    assert out["core_v1_api_loaded"] is False
    seen = _Apiserver.seen
    assert [(s["method"], s["path"]) for s in seen] == [
        ("GET", "/api/v1/namespaces/ns/pods?limit=250&continue=tok"),
        ("GET", "/api/v1/pods?limit=250"),
        ("GET", "/api/v1/pods?watch=true&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=5"),
        ("POST", "/api/v1/namespaces/ns/events"),
        ("GET", "/api/v1/namespaces/forbidden/pods?limit=250"),
    ], "the guarded Event must not reach the server"
    assert all(s["accept"] == "application/json" for s in seen if s["method"] == "GET")
    assert seen[3]["body"] == {"reason": "Cleared"} and seen[3]["content_type"] == "application/json"
