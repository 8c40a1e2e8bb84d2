"""Pods whose engine refuses or is down are named in Degraded with the engine's error; the rest are cleared. A
refusal retrying cannot fix (memcached -F, a Redis ACL, wrong credentials) ends the request Stalled at once with
what to change; once it is changed, a new token clears."""

from __future__ import annotations

import redis
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    create_pods,
    events,
    memcached,
    pause_memcached,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
    wait_redis,
)
from harness import Cluster, Operator, running_pods, secret_b64, wait_for


def test_memcached_with_flush_disabled_is_named_and_others_cleared(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_pods(local_bed, namespace, [
        standin_pod("mc-a", "memcached", {"app": "mc"}),
        standin_pod("mc-b", "memcached", {"app": "mc"}),
        standin_pod("mc-noflush", "memcached", {"app": "mc"}, options="flush-disabled"),
    ])
    running_pods(local_bed, namespace, "app=mc", 3)
    ips = pod_ips(local_bed, namespace, "app=mc")
    wait_memcached(list(ips.values()))
    for ip in ips.values():
        memcached(ip).set("k", "v")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    annotate_clear(local_bed, namespace, "mc", "t1")
    st = wait_handled(local_bed, namespace, "mc", "t1", 60)

    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and "mc-noflush" in degraded["message"], degraded
    assert "flush_all not allowed" in degraded["message"]  # memcached's own answer
    assert [p["pod"] for p in st["failedPods"]] == ["mc-noflush"]
    assert st["phase"] == "Stalled" and st["done"] == 2 and st["failed"] == 1 and "run" not in st
    assert (condition(st, "Stalled")["status"], condition(st, "Stalled")["reason"]) == ("True", "TargetsRefused")
    assert (st["lastRequest"]["outcome"], st["lastRequest"]["reason"]) == ("Stalled", "TargetsRefused")
    assert "start it without -F" in st["lastRequest"]["message"], st["lastRequest"]
    assert condition(st, "Cleared")["status"] == "False"
    for name in ("mc-a", "mc-b"):
        assert memcached(ips[name]).get("k") is None and cmd_flush(ips[name]) == 1
    assert memcached(ips["mc-noflush"]).get("k") == b"v"
    warnings = [e for e in events(local_bed, namespace, "mc") if e.type == "Warning"]
    assert any(e.reason == "TargetsRefused" and "mc-noflush" in e.message for e in warnings)

    # The fix: memcached started without -F (the pod replaced); a new token clears every pod.
    core = client.CoreV1Api(local_bed.api_client)
    core.delete_namespaced_pod("mc-noflush", namespace, grace_period_seconds=0)
    wait_for(lambda: "mc-noflush" not in pod_ips(local_bed, namespace, "app=mc"), "the -F pod gone", 60)
    create_pods(local_bed, namespace, [standin_pod("mc-noflush", "memcached", {"app": "mc"})])
    running_pods(local_bed, namespace, "app=mc", 3)
    fixed = pod_ips(local_bed, namespace, "app=mc")["mc-noflush"]
    wait_memcached([fixed])
    annotate_clear(local_bed, namespace, "mc", "t2")
    st = wait_handled(local_bed, namespace, "mc", "t2", 60)
    assert condition(st, "Cleared")["status"] == "True" and cmd_flush(fixed) == 1, st
    assert condition(st, "Stalled")["status"] == "False", st["conditions"]


def test_redis_replica_skipped_denied_primary_named_auth_from_secret(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    core = client.CoreV1Api(local_bed.api_client)
    create_pods(local_bed, namespace, [
        standin_pod("redis-main", "redis", {"app": "rd"}),
        standin_pod("redis-denied", "redis", {"app": "rd"}, options="flushall-denied"),
    ])
    running_pods(local_bed, namespace, "app=rd", 2)
    create_pods(local_bed, namespace, [standin_pod("redis-replica", "redis", {"app": "rd"}, options="replica",
                                                   replica_of="redis-main")])
    running_pods(local_bed, namespace, "app=rd", 3)
    ips = pod_ips(local_bed, namespace, "app=rd")
    wait_redis(list(ips.values()))
    main, replica = redis.Redis(host=ips["redis-main"]), redis.Redis(host=ips["redis-replica"])
    main.set("session:1", "x")
    wait_for(lambda: replica.get("session:1") == b"x", "replication to the replica")
    redis.Redis(host=ips["redis-denied"]).set("session:2", "y")

    operator.start()
    create_cs(local_bed, namespace, cacheserver("rd", "redis", {"app": "rd"}))
    annotate_clear(local_bed, namespace, "rd", "t1")
    st = wait_handled(local_bed, namespace, "rd", "t1", 60)
    results = {r["pod"]: r for r in st["recentResults"]}
    assert results["redis-main"]["outcome"] == "Done"
    assert results["redis-replica"]["outcome"] == "Skipped" and "replica" in results["redis-replica"]["message"]
    assert results["redis-denied"]["outcome"] == "Failed"
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and "redis-denied" in degraded["message"]
    assert "flushall" in degraded["message"].lower() and "permission" in degraded["message"].lower()
    assert main.dbsize() == 0
    wait_for(lambda: replica.dbsize() == 0, "the replica follows its primary's flush")
    assert redis.Redis(host=ips["redis-denied"]).get("session:2") == b"y"
    assert (st["lastRequest"]["outcome"], st["lastRequest"]["reason"]) == ("Stalled", "TargetsRefused")
    assert "ACL SETUSER" in st["lastRequest"]["message"], st["lastRequest"]
    # The fix: the ACL grants FLUSHALL; a new token clears the pod that refused.
    redis.Redis(host=ips["redis-denied"]).execute_command("ACL", "SETUSER", "default", "+flushall", "+flushdb")
    annotate_clear(local_bed, namespace, "rd", "t2")
    st = wait_handled(local_bed, namespace, "rd", "t2", 60)
    assert condition(st, "Cleared")["status"] == "True", st
    assert redis.Redis(host=ips["redis-denied"]).dbsize() == 0

    # AUTH: a password-protected Redis fails without credentials and is cleared with them from a Secret.
    create_pods(local_bed, namespace, [standin_pod("redis-auth", "redis", {"app": "ra"}, options="auth")])
    running_pods(local_bed, namespace, "app=ra", 1)
    ip = pod_ips(local_bed, namespace, "app=ra")["redis-auth"]
    from testbed.servers import REDIS_PASSWORD

    authed = redis.Redis(host=ip, password=REDIS_PASSWORD)
    wait_for(authed.ping, "redis with AUTH")
    authed.set("k", "v")
    create_cs(local_bed, namespace, cacheserver("ra", "redis", {"app": "ra"}))
    annotate_clear(local_bed, namespace, "ra", "no-creds")
    st = wait_handled(local_bed, namespace, "ra", "no-creds", 60)
    assert "NOAUTH" in condition(st, "Degraded")["message"] or "auth" in condition(st, "Degraded")["message"].lower()
    core.create_namespaced_secret(namespace, {"metadata": {"name": "redis-auth"},
                                              "data": {"password": secret_b64(REDIS_PASSWORD)}})
    from cachekit import patch_cs

    patch_cs(local_bed, namespace, "ra", {"spec": {"credentialsSecretRef": {"name": "redis-auth"}}})
    annotate_clear(local_bed, namespace, "ra", "with-creds")
    st = wait_handled(local_bed, namespace, "ra", "with-creds", 60)
    assert condition(st, "Cleared")["status"] == "True", st
    assert authed.dbsize() == 0
    text = str(st) + "".join(e.message for e in events(local_bed, namespace, "ra"))
    assert REDIS_PASSWORD not in text, "a credential leaked into status or Events"
    assert REDIS_PASSWORD not in operator.logs(), "a credential leaked into the operator's log"


def test_engine_down_is_degraded_then_recovers_when_it_returns(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    core = client.CoreV1Api(local_bed.api_client)
    create_pods(local_bed, namespace, [standin_pod("mc-up", "memcached", {"app": "mc"}),
                                       standin_pod("mc-down", "memcached", {"app": "mc"})])
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = pod_ips(local_bed, namespace, "app=mc")
    wait_memcached(list(ips.values()))
    pause_memcached(local_bed, namespace, "mc-down", ips["mc-down"])
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, timeoutSeconds=2))
    annotate_clear(local_bed, namespace, "mc", "t1")
    st = wait_handled(local_bed, namespace, "mc", "t1", 60)
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and "mc-down" in degraded["message"] and "mc-up" not in degraded["message"]
    assert "unreachable" in degraded["message"] or "refused" in degraded["message"].lower()
    assert cmd_flush(ips["mc-up"]) == 1

    core.patch_namespaced_pod("mc-down", namespace, {"metadata": {"annotations": {
        "testbed.rolecall.dev/paused": None}}})
    wait_memcached([ips["mc-down"]])
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")) and
                  condition(s, "Cleared").get("status") == "True" and s, "retry clears the returned pod", 60)
    assert condition(st, "Degraded")["status"] == "False" and st["phase"] == "Running"
    assert cmd_flush(ips["mc-down"]) == 1 and cmd_flush(ips["mc-up"]) == 1
    assert any(e.reason == "ClearRecovered" for e in events(local_bed, namespace, "mc"))
