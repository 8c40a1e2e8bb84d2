"""activeConnections against real nginx and Apache behind pod IPs: exactly the documented figure.

nginx counts every open client connection (idle keep-alive and in flight). Apache (event MPM) counts the
connections its workers hold, live, plus the connections parked in its listener as Apache last swept
them (rolecall.engines.web explains why idle keep-alive ones show up only then).
"""

from __future__ import annotations

import httpx
import pytest

from cachekit import create_pods, pod_ips, standin_pod
from harness import Cluster, Operator, running_pods, wait_for
from webkit import create_web, held_connections, request_refresh, web_status, webserver


def _apache_parked(ip: str) -> int:
    """Connections Apache's own page counts as parked in the listener (the async counters)."""
    text = httpx.get(f"http://{ip}/server-status?auto", headers={"Connection": "close"}, timeout=5).text
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return sum(int(fields[k]) for k in ("ConnsAsyncKeepAlive", "ConnsAsyncWriting", "ConnsAsyncClosing"))


@pytest.mark.parametrize("engine", ["nginx", "apache"])
def test_idle_and_in_flight_connections_are_counted_as_documented(
        local_bed: Cluster, namespace: str, operator: Operator, engine: str) -> None:
    create_pods(local_bed, namespace, [standin_pod("web-a", engine, {"app": "web"}),
                                       standin_pod("web-b", engine, {"app": "web"})])
    running_pods(local_bed, namespace, "app=web", 2)
    ips = pod_ips(local_bed, namespace, "app=web")
    operator.start()
    create_web(local_bed, namespace, webserver("web", engine, {"app": "web"}, refreshIntervalSeconds=3600))
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("healthyPods") == 2 and s,
                  "both status pages read")
    assert st["activeConnections"] == 0, st  # rolecall's own probe is never counted
    assert st["currentUsers"] == 0 and st["currentUsersSource"] == "activeConnections"

    with held_connections(ips["web-a"], idle=3, in_flight=2), held_connections(ips["web-b"], idle=1, in_flight=1):
        st = request_refresh(local_bed, namespace, "web", "with-clients")
        if engine == "nginx":
            expected = {"web-a": 3 + 2, "web-b": 1 + 1}
        else:
            expected = {"web-a": 2 + _apache_parked(ips["web-a"]), "web-b": 1 + _apache_parked(ips["web-b"])}
        per_pod = {p["pod"]: p for p in st["pods"]}
        assert {name: p["activeConnections"] for name, p in per_pod.items()} == expected, st
        assert st["activeConnections"] == sum(expected.values())
        assert st["currentUsers"] == st["activeConnections"] and st["currentUsersSource"] == "activeConnections"
        assert all(p["healthy"] and p["requests"] >= 1 for p in per_pod.values()), st
        table = local_bed.kubectl("get", "-n", namespace, "webserver", "web").stdout
        assert engine in table and str(st["activeConnections"]) in table, table

    tokens = iter(range(1000))
    st = wait_for(lambda: (s := request_refresh(local_bed, namespace, "web", f"closed-{next(tokens)}"))
                  .get("activeConnections") == 0 and s, "the closed connections to leave the count")
    assert st["currentUsers"] == 0
    # The same token again is a no-op: status keeps it and nothing fails.
    again = request_refresh(local_bed, namespace, "web", st["lastHandledRefreshRequest"])
    assert again["lastHandledRefreshRequest"] == st["lastHandledRefreshRequest"]
