"""Cancel (rolecall.dev/cancel naming the request) and requestTimeoutSeconds on a slow clear (each memcached
flush takes 1.5 s behind a delaying proxy, one pod at a time): acknowledged with outcome Cancelled / TimedOut,
the counts are the truth (memcached's own cmd_flush: every pod counted done was flushed once, no pod counted
not started was flushed), and nothing starts after the cancel."""

from __future__ import annotations

from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import annotate_clear, cacheserver, cmd_flush, create_cs, create_deployment, pod_ips, status
from harness import Cluster, Operator, deployment, running_pods, wait_for
from pluginkit import rolecall, said

PODS = 5


def _slow_cache(cluster: Cluster, ns: str, **spec: Any) -> dict[str, str]:
    create_deployment(cluster, ns, deployment("mc", "memcached", PODS,
                                              annotations={"testbed.rolecall.dev/options": "slow-flush"}))
    running_pods(cluster, ns, "app=mc", PODS)
    ips = pod_ips(cluster, ns, "app=mc")
    create_cs(cluster, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1, **spec))
    return ips


def _ended(cluster: Cluster, ns: str, token: str) -> dict[str, Any] | None:
    last = status(cluster, ns, "mc").get("lastRequest") or {}
    return last if last.get("token") == token else None


def test_a_cancel_mid_clear_starts_nothing_more_and_counts_truthfully(local_bed: Cluster, namespace: str,
                                                                       operator: Operator) -> None:
    operator.start()
    ips = _slow_cache(local_bed, namespace)
    annotate_clear(local_bed, namespace, "mc", "slow-1")
    wait_for(lambda: (status(local_bed, namespace, "mc").get("done") or 0) >= 1, "the first pod done", 60)
    client.CustomObjectsApi(local_bed.api_client).patch_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, "cacheservers", "mc",
        {"metadata": {"annotations": {"rolecall.dev/cancel": "slow-1"}}})
    last = wait_for(lambda: _ended(local_bed, namespace, "slow-1"), "the clear acknowledged", 60)
    assert last["outcome"] == "Cancelled" and last["notStarted"] >= 1, last
    assert last["done"] + last["failed"] + last["notStarted"] == PODS, last
    flushes = [cmd_flush(ip) for ip in ips.values()]
    assert sorted(flushes) == [0] * last["notStarted"] + [1] * last["done"], (flushes, last)
    st = status(local_bed, namespace, "mc")
    assert st["lastHandledClearRequest"] == "slow-1" and not st.get("run")
    assert st["history"][0]["outcome"] == "Cancelled"


def test_request_timeout_ends_a_slow_clear_timed_out(local_bed: Cluster, namespace: str,
                                                     operator: Operator) -> None:
    operator.start()
    ips = _slow_cache(local_bed, namespace, requestTimeoutSeconds=3)
    annotate_clear(local_bed, namespace, "mc", "slow-2")
    last = wait_for(lambda: _ended(local_bed, namespace, "slow-2"), "the clear acknowledged", 60)
    assert last["outcome"] == "TimedOut" and last["notStarted"] >= 1 and last["done"] >= 1, last
    flushes = [cmd_flush(ip) for ip in ips.values()]
    assert sorted(flushes) == [0] * last["notStarted"] + [1] * last["done"], (flushes, last)
    assert "requestTimeoutSeconds" in last["message"]


def test_the_plugin_tells_its_own_wait_running_out_from_the_request_timing_out(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """`kubectl rolecall clear`: exit 8 when the request itself timed out (requestTimeoutSeconds), exit 3 when
    only the plugin's --timeout passed and the request goes on."""
    operator.start()
    _slow_cache(local_bed, namespace, requestTimeoutSeconds=3)
    timed_out = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "60s")
    assert timed_out.returncode == 8 and "TimedOut" in timed_out.stderr, said(timed_out)
    client.CustomObjectsApi(local_bed.api_client).patch_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, "cacheservers", "mc", {"spec": {"requestTimeoutSeconds": None}})
    waited = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "2s")
    assert waited.returncode == 3 and "the operator goes on with it" in waited.stderr, said(waited)
    wait_for(lambda: (status(local_bed, namespace, "mc").get("lastRequest") or {}).get("outcome") == "Succeeded",
             "the request it left running to succeed", 60)
