"""currentUsers from the application's own JSON endpoint on each pod (a real HTTP endpoint on the stand-in)."""

from __future__ import annotations

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import condition, create_pods, standin_pod
from harness import Cluster, Operator, running_pods, wait_for
from webkit import create_web, patch_web, request_refresh, web_events, web_status, webserver

USERS = "testbed.rolecall.dev/app-users"


def _pod(name: str, users: int) -> dict[str, object]:
    pod = standin_pod(name, "nginx", {"app": "shop"})
    pod["metadata"]["annotations"][USERS] = str(users)  # type: ignore[index]
    return pod


def test_current_users_follow_the_application_count(local_bed: Cluster, namespace: str,
                                                    operator: Operator) -> None:
    create_pods(local_bed, namespace, [_pod("shop-a", 7), _pod("shop-b", 5)])
    running_pods(local_bed, namespace, "app=shop", 2)
    operator.start()
    create_web(local_bed, namespace, webserver(
        "shop", "nginx", {"app": "shop"}, refreshIntervalSeconds=3600,
        userCount={"path": "/internal/stats", "field": "sessions.active"}))
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "shop")).get("currentUsers") == 12 and s,
                  "currentUsers = 7 + 5")
    assert st["currentUsersSource"] == "application"
    assert {p["pod"]: p["currentUsers"] for p in st["pods"]} == {"shop-a": 7, "shop-b": 5}
    assert st["activeConnections"] == 0  # the user count is the app's, not the connection count

    client.CoreV1Api(local_bed.api_client).patch_namespaced_pod(
        "shop-a", namespace, {"metadata": {"annotations": {USERS: "9"}}})
    tokens = iter(range(1000))
    wait_for(lambda: request_refresh(local_bed, namespace, "shop", f"t{next(tokens)}").get("currentUsers") == 14,
             "currentUsers to follow the application (9 + 5)")

    # Every pod reports a shared total: aggregate max.
    patch_web(local_bed, namespace, "shop", {"spec": {"userCount": {"aggregate": "max"}}})
    wait_for(lambda: web_status(local_bed, namespace, "shop").get("currentUsers") == 9, "max(9, 5)")

    # A field the JSON lacks: a readable condition naming the pods, not a crash.
    patch_web(local_bed, namespace, "shop", {"spec": {"userCount": {"field": "sessions.missing"}}})
    st = wait_for(lambda: (s := web_status(local_bed, namespace, "shop")).get("conditions") and
                  condition(s, "Degraded").get("reason") == "UserCountUnavailable" and s, "UserCountUnavailable")
    message = condition(st, "Degraded")["message"]
    assert "shop-a: user count: /internal/stats: the JSON has no field sessions.missing" in message, message
    assert st["phase"] == "Degraded" and st["healthyPods"] == 2
    wait_for(lambda: "UserCountUnavailable" in [e.reason for e in web_events(local_bed, namespace, "shop")],
             "the Warning Event")
    assert operator.procs[-1].poll() is None
