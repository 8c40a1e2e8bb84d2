"""CacheServer clears on real memcached pods: exactly once per request, tokens and clearedAfter alike."""

from __future__ import annotations

import datetime as dt

import pytest

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    events,
    memcached,
    memcached_deployment,
    patch_cs,
    status,
    wait_handled,
)
from harness import Cluster, Operator, wait_for

pytestmark = pytest.mark.localbed



def test_annotation_clears_every_pod_once(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace, 3)
    for ip in ips:
        memcached(ip).set("greeting", "hello")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    wait_for(lambda: status(local_bed, namespace, "mc").get("phase") == "Running", "CacheServer Running")

    annotate_clear(local_bed, namespace, "mc", "first")
    st = wait_handled(local_bed, namespace, "mc", "first")
    assert condition(st, "Cleared")["status"] == "True", st
    assert st["done"] == 3 and st["failed"] == 0 and st["targets"] == 3
    for ip in ips:
        assert memcached(ip).get("greeting") is None, f"key survived the clear on {ip}"
        assert cmd_flush(ip) == 1
    reasons = [e.reason for e in events(local_bed, namespace, "mc")]
    assert "ClearStarted" in reasons and "Cleared" in reasons

    # The same value again (e.g. a GitOps re-apply): no second flush.
    annotate_clear(local_bed, namespace, "mc", "first")
    patch_cs(local_bed, namespace, "mc", {"spec": {"statsIntervalSeconds": 30}})  # a reconcile happens anyway
    wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 2, "generation 2 observed")
    assert [cmd_flush(ip) for ip in ips] == [1, 1, 1]

    # A new value: exactly one more, and waiting for it is not confused with the first request.
    for ip in ips:
        memcached(ip).set("greeting", "again")
    annotate_clear(local_bed, namespace, "mc", "second")
    st = wait_handled(local_bed, namespace, "mc", "second")
    assert condition(st, "Cleared")["status"] == "True"
    for ip in ips:
        assert memcached(ip).get("greeting") is None
        assert cmd_flush(ip) == 2


def test_cleared_after_in_the_past_clears_once(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace, 2)
    operator.start()
    past = "2026-01-01T00:00:00Z"
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, clearedAfter=past))
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastClearedAt") and s, "first clear")
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
    # Re-applying the same manifest (and any other spec change) never clears again.
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearedAfter": past, "timeoutSeconds": 20}})
    wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 2, "generation 2 observed")
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
    assert status(local_bed, namespace, "mc")["lastClearedAt"] == st["lastClearedAt"]


def test_future_cleared_after_waits_for_its_time(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace, 2)
    operator.start()
    # T is far enough ahead that the operator observes the object well before it.
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)).replace(microsecond=0)
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                clearedAfter=at.isoformat().replace("+00:00", "Z")))
    wait_for(lambda: status(local_bed, namespace, "mc").get("observedGeneration") == 1, "CacheServer observed")
    assert "lastClearedAt" not in status(local_bed, namespace, "mc")
    assert [cmd_flush(ip) for ip in ips] == [0, 0], "cleared before its time"
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastClearedAt") and s, "clear at T", 40)
    assert dt.datetime.fromisoformat(st["lastClearedAt"].replace("Z", "+00:00")) >= at
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
