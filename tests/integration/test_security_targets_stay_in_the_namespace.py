"""A CacheServer acts only on pods in its own namespace, however its selector is written."""

from __future__ import annotations

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_pods,
    pod_ips,
    standin_pod,
    wait_handled,
    wait_memcached,
)
from harness import Cluster, Operator, delete_namespace, new_namespace, running_pods


def test_pods_with_matching_labels_in_another_namespace_are_never_touched(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    other = new_namespace(local_bed, "someone-elses")
    try:
        create_pods(local_bed, namespace, [standin_pod("mine", "memcached", {"app": "shared-label"})])
        create_pods(local_bed, other, [standin_pod("theirs", "memcached", {"app": "shared-label"})])
        running_pods(local_bed, namespace, "app=shared-label", 1)
        running_pods(local_bed, other, "app=shared-label", 1)
        mine, theirs = pod_ips(local_bed, namespace, "app=shared-label")["mine"], \
            pod_ips(local_bed, other, "app=shared-label")["theirs"]
        wait_memcached([mine, theirs])
        operator.start()
        create_cs(local_bed, namespace, cacheserver("c", "memcached", {"app": "shared-label"}))
        annotate_clear(local_bed, namespace, "c", "t1")
        st = wait_handled(local_bed, namespace, "c", "t1")
        assert st["targets"] == 1 and [r["pod"] for r in st["recentResults"]] == ["mine"]
        assert (cmd_flush(mine), cmd_flush(theirs)) == (1, 0)
    finally:
        delete_namespace(local_bed, other)
