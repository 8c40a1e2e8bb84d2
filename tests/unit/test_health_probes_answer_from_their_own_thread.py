"""The probe endpoints: liveness follows the event-loop watchdog (fake clock), readiness follows the Lease, and
the server answers from its own thread with the reason in the body."""

from __future__ import annotations

import socket

import httpx
import pytest

from rolecall.health import Watchdog, serve
from rolecall.leadership import Leadership


def test_the_watchdog_reports_a_stall_only_past_its_limit() -> None:
    now = [0.0]
    dog = Watchdog(stall_seconds=20, clock=lambda: now[0])
    now[0] = 20.0
    assert dog.stalled_for() is None
    now[0] = 20.5
    assert dog.stalled_for() == pytest.approx(20.5)
    dog.tick()
    assert dog.stalled_for() is None


def test_readiness_is_leading_or_a_standby_that_reaches_the_lease() -> None:
    now = [100.0]
    lease = Leadership(namespace="ns", duration=15, clock=lambda: now[0])
    assert "has not reached the leader Lease ns/rolecall-operator" in (lease.unready_reason() or "")
    lease._contact_at = 100.0  # a standby read the Lease
    now[0] = 115.0
    assert lease.unready_reason() is None
    now[0] = 116.0
    assert "unreachable for 16s" in (lease.unready_reason() or "")
    lease._renewed_at = 116.0  # it took over
    assert lease.unready_reason() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_server_answers_each_probe_with_its_reason() -> None:
    reasons: dict[str, str | None] = {"alive": None, "ready": "standby: has not reached the leader Lease"}
    address = f"127.0.0.1:{_free_port()}"
    server = serve(address, alive=lambda: reasons["alive"], ready=lambda: reasons["ready"])
    assert server is not None
    try:
        base = f"http://{address}"
        assert (httpx.get(f"{base}/healthz").status_code, httpx.get(f"{base}/healthz").text) == (200, "ok\n")
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.text) == (503, "standby: has not reached the leader Lease\n")
        reasons["alive"] = "the event loop has not run for 31s"
        alive = httpx.get(f"{base}/healthz")
        assert (alive.status_code, alive.text) == (500, "the event loop has not run for 31s\n")
        assert httpx.get(f"{base}/metrics").status_code == 404
        with pytest.raises(OSError):
            serve(address, alive=lambda: None, ready=lambda: None)  # taken: main.py turns this into a message
    finally:
        server.shutdown()
        server.server_close()
    assert serve("", alive=lambda: None, ready=lambda: None) is None


def test_an_ipv6_pod_ip_is_served_too() -> None:
    server = serve("::1:0", alive=lambda: None, ready=lambda: None)  # $(POD_IP):PORT with an IPv6 POD_IP
    assert server is not None
    try:
        port = server.server_address[1]
        assert httpx.get(f"http://[::1]:{port}/healthz").text == "ok\n"
    finally:
        server.shutdown()
        server.server_close()
