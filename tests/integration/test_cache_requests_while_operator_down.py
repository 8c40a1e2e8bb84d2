"""Requests made while the operator is down are handled when it starts; it never writes what the user owns."""

from __future__ import annotations

from cachekit import annotate_clear, cacheserver, cmd_flush, create_cs, create_deployment, get_cs, pod_ips, wait_handled
from harness import Cluster, Operator, deployment, running_pods


def test_two_tokens_while_down_are_one_clear_for_the_latest(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    annotate_clear(local_bed, namespace, "mc", "while-down-1")
    annotate_clear(local_bed, namespace, "mc", "while-down-2")  # no operator is running yet

    operator.start()
    st = wait_handled(local_bed, namespace, "mc", "while-down-2")
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
    assert st["lastHandledClearRequest"] == "while-down-2"

    obj = get_cs(local_bed, namespace, "mc")
    meta = obj["metadata"]
    # Admission (not the operator) records who asked; everything else is exactly what the user wrote.
    user_owned = {k: v for k, v in meta["annotations"].items() if "-requested-by" not in k}
    assert user_owned == {"rolecall.dev/clear-requested-at": "while-down-2"}, "user's annotations edited"
    assert meta["annotations"]["rolecall.dev/clear-requested-by"], "admission records the clear's requester"
    assert not meta.get("finalizers")
    assert obj["spec"] == {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}}, "concurrency": 10,
                           "timeoutSeconds": 30, "stopped": False, "statsIntervalSeconds": 60, "historyLimit": 10,
                           "maxRetries": 5}
    # Everything the operator's account ever wrote to this object went through the status subresource.
    mine = [m for m in meta["managedFields"] if m["manager"] == "rolecall-operator"]
    assert mine and all(m.get("subresource") == "status" for m in mine), meta["managedFields"]
