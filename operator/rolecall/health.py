"""Health endpoints for the kubelet's probes, served from a thread so that they answer even when the event
loop does not (that is exactly what liveness must detect).

- GET /healthz (liveness): 200 while the event loop ticks the watchdog; 500 once it has not ticked for
  `stall_seconds`. An unreachable apiserver does not fail it: restarting the operator would not bring the
  apiserver back, and a restart loses the in-memory watch state a standby keeps warm.
- GET /readyz (readiness): 200 while this process leads, or is a standby that reached the leader Lease
  recently (so `helm install --wait` finishes with 2 replicas); 503 with the reason otherwise.

Bind it to the pod's own IP (--health-address "$(POD_IP):8081"), not 0.0.0.0: where pods share a network
namespace (the test bed's host network), two replicas would otherwise collide.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class Watchdog:
    """The event loop ticks it once a second; `stalled_for()` says how long it has been silent past the limit."""

    def __init__(self, stall_seconds: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.last_tick = clock()  # a loop that never starts ticking is stalled `stall_seconds` after start-up

    def tick(self) -> None:
        self.last_tick = self.clock()

    def stalled_for(self) -> float | None:
        """Seconds since the last tick if that is more than the limit, else None."""
        silent = self.clock() - self.last_tick
        return silent if silent > self.stall_seconds else None

    async def run(self, every: float = 1.0) -> None:
        while True:
            self.tick()
            await asyncio.sleep(every)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


Check = Callable[[], str | None]  # None when healthy, else the reason it is not


def serve(address: str, alive: Check, ready: Check) -> ThreadingHTTPServer | None:
    """Starts the probe server on host:port ('' disables it); raises OSError when the address is taken."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    checks = {"/healthz": (alive, 500), "/livez": (alive, 500), "/readyz": (ready, 503)}

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            found = checks.get(self.path.split("?", 1)[0])
            if found is None:
                self._answer(404, "not found: /healthz (liveness) and /readyz (readiness) are served here\n")
                return
            check, failing = found
            try:
                reason = check()
            except Exception as e:  # a probe answers; an exception must not drop the connection
                reason = f"health check failed: {type(e).__name__}: {e}"
            self._answer(200, "ok\n") if reason is None else self._answer(failing, reason + "\n")

        def _answer(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # silent: probes come every few seconds
            pass

    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - outside a pod; in one, the pod's own address
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer  # an IPv6 pod IP ($(POD_IP):8081)
    server = server_class((host, int(port)), Probe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health probes on http://%s/healthz and /readyz", address)
    return server
