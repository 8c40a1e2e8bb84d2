"""A server whose status page is disabled gives a readable Degraded condition and Event, not a crash."""

from __future__ import annotations

import pytest

from cachekit import condition, create_pods, standin_pod
from harness import Cluster, Operator, running_pods, wait_for
from webkit import create_web, web_events, web_status, webserver

# What each engine answers at its status path when the page is off, as rolecall reports it.
WHY = {
    # The stand-in's catch-all location answers 200 "ok": not a stub_status page.
    "nginx": "status page: /nginx_status is not an nginx stub_status page (is `stub_status;` enabled in that "
             "location?); it began 'ok\\n'",
    "apache": "status page: /server-status?auto answered HTTP 404 Not Found",
}


@pytest.mark.parametrize("engine", ["nginx", "apache"])
def test_disabled_status_page_is_named_in_degraded(local_bed: Cluster, namespace: str, operator: Operator,
                                                   engine: str) -> None:
    create_pods(local_bed, namespace, [standin_pod("on", engine, {"app": "web"}),
                                       standin_pod("off", engine, {"app": "web"}, options="status-disabled")])
    running_pods(local_bed, namespace, "app=web", 2)
    operator.start()
    create_web(local_bed, namespace, webserver("web", engine, {"app": "web"}))
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "web")).get("phase") == "Degraded" and s,
                  "Degraded")
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "StatusPageUnavailable"
    assert f"1 of 2 pods could not be read: off: {WHY[engine]}" == degraded["message"], degraded
    assert st["healthyPods"] == 1 and condition(st, "Ready")["status"] == "False"
    off = next(p for p in st["pods"] if p["pod"] == "off")
    assert off["healthy"] is False and off["error"] == WHY[engine]
    wait_for(lambda: "StatusPageUnavailable" in [e.reason for e in web_events(local_bed, namespace, "web")],
             "the Warning Event (posted right after the status write)")
    assert operator.procs[-1].poll() is None, "the operator must not crash"
