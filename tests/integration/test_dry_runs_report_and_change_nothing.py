"""Dry runs (`<action>-dry-run-requested-at`): a cache clear's and a compaction's dry run report the pods a real
run would touch and change nothing (memcached cmd_flush, PostgreSQL's vacuum counters); the real run that
follows touches exactly those pods; a user without the action's right is refused the dry run at admission."""

from __future__ import annotations

import pytest
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from cachekit import annotate_clear, cacheserver, cmd_flush, create_cs, create_deployment, pod_ips, wait_handled
from cachekit import status as cache_status
from dbkit import SERVERS, create, patch, pg, pg_pods, pg_scalar, pg_server, status_of
from harness import Cluster, Operator, bind, client_as, deployment, running_pods, wait_for

CLEAR_DRY_RUN = "rolecall.dev/clear-dry-run-requested-at"
COMPACT_DRY_RUN = "rolecall.dev/compact-dry-run-requested-at"


def test_a_clear_dry_run_names_the_pods_and_flushes_nothing(local_bed: Cluster, namespace: str,
                                                            operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 3))
    running_pods(local_bed, namespace, "app=mc", 3)
    ips = pod_ips(local_bed, namespace, "app=mc")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    client.CustomObjectsApi(local_bed.api_client).patch_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, "cacheservers", "mc",
        {"metadata": {"annotations": {CLEAR_DRY_RUN: "preview-1"}}})
    st = wait_for(lambda: (s := cache_status(local_bed, namespace, "mc")).get("lastDryRun", {}).get("token")
                  == "preview-1" and s, "the dry run handled", 60)
    plan = st["lastDryRun"]
    assert plan["action"] == "clear" and plan["targets"] == 3 and sorted(plan["pods"]) == sorted(ips), plan
    assert st["history"][0]["outcome"] == "DryRun" and st["history"][0]["dryRun"] is True, st
    assert [cmd_flush(ip) for ip in ips.values()] == [0, 0, 0]  # the engines saw nothing
    assert "lastHandledClearRequest" not in st and not st.get("run")

    annotate_clear(local_bed, namespace, "mc", "real-1")
    wait_handled(local_bed, namespace, "mc", "real-1", 60)
    assert {name: cmd_flush(ip) for name, ip in ips.items()} == dict.fromkeys(plan["pods"], 1)


def test_a_compaction_dry_run_vacuums_nothing(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)")
    vacuums = "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relname = 't'"
    before = pg_scalar(ip, vacuums)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    patch(local_bed, namespace, SERVERS, "db", {"metadata": {"annotations": {COMPACT_DRY_RUN: "preview"}}})
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("lastDryRun", {}).get("token")
                  == "preview" and s, "the compaction dry run handled", 60)
    assert st["lastDryRun"]["pods"] == ["pg-0"] and st["history"][0]["outcome"] == "DryRun", st
    assert pg_scalar(ip, vacuums) == before
    assert not st.get("lastCompactedAt")
    # The counter does move for a real compaction (so the check above could have failed).
    real = {"metadata": {"annotations": {"rolecall.dev/compact-requested-at": "c1"}}}
    patch(local_bed, namespace, SERVERS, "db", real)
    wait_for(lambda: status_of(local_bed, namespace, SERVERS, "db").get("lastHandledCompactRequest") == "c1",
             "the real compaction", 60)
    wait_for(lambda: pg_scalar(ip, vacuums) > before, "PostgreSQL to count the VACUUM", 30)


def test_a_dry_run_needs_the_actions_right(installed: Cluster, namespace: str) -> None:
    client.CustomObjectsApi(installed.api_client).create_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, "cacheservers", cacheserver("mc", "memcached", {"app": "mc"}))
    bind(installed, namespace, "alice", "rolecall-edit")  # may edit rolecall resources, holds no pods/exec
    api = client.CustomObjectsApi(client_as(installed, "alice"))
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object("rolecall.dev", "v1alpha1", namespace, "cacheservers", "mc",
                                           {"metadata": {"annotations": {CLEAR_DRY_RUN: "peek"}}})
    assert refused.value.status == 403
    assert f"a dry run of a cache clear ({CLEAR_DRY_RUN}) needs create on pods/exec" in (refused.value.body or "")
