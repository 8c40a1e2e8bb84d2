"""`kubectl rolecall` run as the real executable against real stand-ins: each verb's happy path, and every
documented exit code from a real cause (a pod that refuses, a stalled request, no operator, a refused
user, a cancel). Engine counters (memcached cmd_flush, PostgreSQL rows, Deployment replicas) are the
proof, never the plugin's own words alone."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    cacheserver,
    cmd_flush,
    create_cs,
    create_deployment,
    create_pods,
    get_cs,
    memcached,
    pause_memcached,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
)
from dbkit import MAINTENANCES, pg_pods, pg_scalar, pg_server, seed_events
from dbkit import create as create_db
from harness import Cluster, Operator, bind, client_as, deployment, running_pods, wait_for
from pluginkit import popen, rolecall, said
from webkit import create_web, held_connections, web_status, webserver

CLEAR_TOKEN = "rolecall.dev/clear-requested-at"


def _memcached_pods(cluster: Cluster, ns: str, names: list[str], options: dict[str, str] | None = None) -> dict:
    create_pods(cluster, ns, [standin_pod(n, "memcached", {"app": "mc"}, options=(options or {}).get(n, ""))
                              for n in names])
    running_pods(cluster, ns, "app=mc", len(names))
    ips = pod_ips(cluster, ns, "app=mc")
    wait_memcached(list(ips.values()))
    return ips


def _running(cluster: Cluster, ns: str, name: str, read: Any = status) -> dict[str, Any]:
    return wait_for(lambda: (s := read(cluster, ns, name)).get("phase") == "Running" and s, f"{name} Running", 60)


def test_clear_dry_run_status_history_report_and_usage_errors(local_bed: Cluster, namespace: str,
                                                              operator: Operator, tmp_path: Path) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-0", "mc-1"])
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                clearSchedule={"cron": "0 3 * * *"}))
    _running(local_bed, namespace, "mc")

    plan = rolecall(local_bed, namespace, "clear", "cache/mc", "--dry-run", "--timeout", "60s")
    assert plan.returncode == 0 and "2 pods: mc-0, mc-1" in plan.stdout, said(plan)
    assert [cmd_flush(ip) for ip in ips.values()] == [0, 0]  # a dry run touches nothing

    done = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "60s")  # stdin no terminal: no prompt
    assert done.returncode == 0, said(done)
    assert "Succeeded (Cleared)" in done.stdout and "2/2" in done.stderr, said(done)
    assert [cmd_flush(ip) for ip in ips.values()] == [1, 1]
    token = get_cs(local_bed, namespace, "mc")["metadata"]["annotations"][CLEAR_TOKEN]
    assert status(local_bed, namespace, "mc")["lastHandledClearRequest"] == token

    # kubectl's flags work anywhere on the line: the -n after the verb is the one that counts here.
    listed = rolecall(local_bed, "default", "status", "cache/mc", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, said(listed)
    item = json.loads(listed.stdout)["items"][0]
    assert item["status"]["lastRequest"]["token"] == token and item["status"]["lastRequest"]["outcome"] == "Succeeded"
    table = rolecall(local_bed, namespace, "status")
    row = next(line for line in table.stdout.splitlines() if line.startswith("cache/mc "))
    assert "Running" in row and "clear Succeeded" in row, table.stdout

    past = rolecall(local_bed, namespace, "history", "cache/mc", "-o", "json")
    entries = json.loads(past.stdout)
    assert entries[0]["token"] == token and entries[0]["outcome"] == "Succeeded" and entries[0]["done"] == 2, entries

    assert rolecall(local_bed, namespace, "suspend", "cache/mc").returncode == 0
    assert get_cs(local_bed, namespace, "mc")["spec"]["clearSchedule"]["suspend"] is True
    assert rolecall(local_bed, namespace, "resume", "cache/mc").returncode == 0
    assert get_cs(local_bed, namespace, "mc")["spec"]["clearSchedule"]["suspend"] is False

    bundle = tmp_path / "report.tar.gz"
    reported = rolecall(local_bed, namespace, "report", "cache/mc", "-f", str(bundle))
    assert reported.returncode == 0, said(reported)
    with tarfile.open(bundle) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                 for m in tar.getmembers()}
    assert yaml.safe_load(files["resource.yaml"])["metadata"]["name"] == "mc"
    assert "Cleared" in files["events.txt"]
    assert all(name in files["pods.txt"] and ip in files["pods.txt"] for name, ip in ips.items())
    assert "operator-logs.txt" in files  # the local operator runs outside the cluster: the bundle says so

    for args in (["clear", "web/x"], ["clear", "cache"], ["status", "nonsense/x"], ["users", "cache/mc"],
                 ["frobnicate"], ["clear", "cache/mc", "--timeout", "soon"]):
        wrong = rolecall(local_bed, namespace, *args)
        assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, said(wrong)
    assert [cmd_flush(ip) for ip in ips.values()] == [1, 1]


def test_a_failing_pod_exits_1_and_is_named(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-a", "mc-down"])
    pause_memcached(local_bed, namespace, "mc-down", ips["mc-down"])  # a failure retrying may fix
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, timeoutSeconds=2))
    _running(local_bed, namespace, "mc")
    result = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "60s")
    assert result.returncode == 1, said(result)
    assert "failed: mc-down" in result.stderr and "keeps retrying" in result.stderr, said(result)
    assert cmd_flush(ips["mc-a"]) == 1


def test_a_pod_that_refuses_for_good_exits_5_with_what_to_change(local_bed: Cluster, namespace: str,
                                                                 operator: Operator) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-a", "mc-noflush"], {"mc-noflush": "flush-disabled"})
    memcached(ips["mc-noflush"]).set("k", "v")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    _running(local_bed, namespace, "mc")
    result = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "60s")
    assert result.returncode == 5 and "Stalled (TargetsRefused)" in result.stderr, said(result)
    assert "mc-noflush" in result.stderr and "start it without -F" in result.stderr, said(result)
    assert cmd_flush(ips["mc-a"]) == 1
    assert memcached(ips["mc-noflush"]).get("k") == b"v"  # its memcached refused the flush_all


def test_a_stalled_request_exits_5(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod("rd-0", "redis", {"app": "rd"})])
    running_pods(local_bed, namespace, "app=rd", 1)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("rd", "redis", {"app": "rd"},
                                                credentialsSecretRef={"name": "no-such-secret"}))
    result = rolecall(local_bed, namespace, "clear", "cache/rd", "--timeout", "60s")
    assert result.returncode == 5, said(result)
    assert "Stalled (SecretNotFound)" in result.stderr and "no-such-secret" in result.stderr, said(result)


def test_no_operator_times_out_with_3_and_the_request_is_kept(local_bed: Cluster, namespace: str,
                                                              operator: Operator) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-0"])
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    result = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "4s")
    assert result.returncode == 3, said(result)
    assert "no operator acknowledged the request within 4s" in result.stderr, said(result)
    token = get_cs(local_bed, namespace, "mc")["metadata"]["annotations"][CLEAR_TOKEN]
    assert cmd_flush(ips["mc-0"]) == 0
    operator.start()  # nothing requested is lost: the operator carries it out when it comes
    wait_handled(local_bed, namespace, "mc", token, 60)
    assert cmd_flush(ips["mc-0"]) == 1


def test_a_user_without_the_right_gets_the_admission_message_and_4(local_bed: Cluster, namespace: str,
                                                                  operator: Operator) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-0"])
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    bind(local_bed, namespace, "alice", "rolecall-edit")  # may edit rolecall resources, may not exec or clear
    api = client.CustomObjectsApi(client_as(local_bed, "alice"))
    wait_for(lambda: api.get_namespaced_custom_object("rolecall.dev", "v1alpha1", namespace, "cacheservers", "mc"),
             "alice's binding to take effect")
    alice = local_bed.user_kubeconfig("alice")
    refused = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "30s", kubeconfig=alice)
    assert refused.returncode == 4, said(refused)
    assert "a cache clear" in refused.stderr and "create on pods/exec" in refused.stderr, said(refused)
    bob = local_bed.user_kubeconfig("bob")  # no binding at all: RBAC refuses before admission
    forbidden = rolecall(local_bed, namespace, "stop", "cache/mc", "--yes", kubeconfig=bob)
    assert forbidden.returncode == 4 and "forbidden" in forbidden.stderr.lower(), said(forbidden)
    for result in (refused, forbidden):
        assert "Traceback" not in result.stderr
    assert cmd_flush(ips["mc-0"]) == 0


def test_stop_and_start_remember_replicas_and_warn_under_gitops(local_bed: Cluster, namespace: str,
                                                                operator: Operator) -> None:
    apps = client.AppsV1Api(local_bed.api_client)
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    operator.start()
    body = cacheserver("mc", "memcached", {"app": "mc"}, workloadRef={"kind": "Deployment", "name": "mc"})
    body["metadata"]["labels"] = {"argocd.argoproj.io/instance": "caches"}
    create_cs(local_bed, namespace, body)
    _running(local_bed, namespace, "mc")

    stopped = rolecall(local_bed, namespace, "stop", "cache/mc", "--timeout", "60s")
    assert stopped.returncode == 0 and "2 replicas remembered" in stopped.stdout, said(stopped)
    assert "applied by GitOps (argocd.argoproj.io/instance)" in stopped.stderr, said(stopped)
    assert "override cache/mc --stay-stopped-until" in stopped.stderr, said(stopped)
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 0

    started = rolecall(local_bed, namespace, "start", "cache/mc", "--timeout", "60s")
    assert started.returncode == 0 and "running with 2 replicas (2 ready)" in started.stdout, said(started)
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 2

    # The annotation way, which a GitOps sync leaves alone: stopped for an hour, then the override removed.
    held = rolecall(local_bed, namespace, "override", "cache/mc", "--stay-stopped-until", "1h", "--timeout", "60s")
    assert held.returncode == 0 and "2 replicas remembered" in held.stdout, said(held)
    assert apps.read_namespaced_deployment("mc", namespace).spec.replicas == 0
    assert rolecall(local_bed, namespace, "start", "cache/mc", "--timeout", "60s").returncode == 5  # held by it
    removed = rolecall(local_bed, namespace, "override", "cache/mc", "--remove")
    assert removed.returncode == 0, said(removed)
    wait_for(lambda: apps.read_namespaced_deployment("mc", namespace).spec.replicas == 2, "2 replicas again", 60)


def test_purge_counts_then_deletes_old_rows(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)  # 30 rows older than 30 days, 20 newer
    operator.start()
    create_db(local_bed, namespace, "databaseservers", pg_server("db", {"app": "pg"}))
    args = ["purge", "db/db", "--table", "events", "--column", "created_at", "--older-than", "30d"]
    preview = rolecall(local_bed, namespace, *args, "--dry-run", "--timeout", "90s")
    assert preview.returncode == 0 and "events.created_at: 30 rows older than" in preview.stdout, said(preview)
    assert pg_scalar(ip, "SELECT count(*) FROM events") == 50

    purged = rolecall(local_bed, namespace, *args, "--batch-size", "7", "--timeout", "90s")
    assert purged.returncode == 0 and "30 rows deleted" in purged.stdout, said(purged)
    assert pg_scalar(ip, "SELECT count(*) FROM events") == 20
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE created_at < now() - interval '30 days'") == 0
    made = client.CustomObjectsApi(local_bed.api_client).list_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, MAINTENANCES)["items"]
    assert sorted(m["spec"]["dryRun"] for m in made) == [False, True]
    assert all(m["metadata"]["name"].startswith("purge-db-") for m in made)


def test_purge_can_be_pinned_to_a_cutoff_and_takes_exactly_one(local_bed: Cluster, namespace: str,
                                                               operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)  # 30 rows older than 30 days, 20 newer
    operator.start()
    create_db(local_bed, namespace, "databaseservers", pg_server("db", {"app": "pg"}))
    args = ["purge", "db/db", "--table", "events", "--column", "created_at", "--timeout", "90s"]
    both = rolecall(local_bed, namespace, *args, "--older-than", "30d", "--cutoff", "2026-01-01T00:00:00Z")
    assert both.returncode == 2 and "give exactly one of --older-than" in both.stderr, said(both)
    cutoff = pg_scalar(ip, "SELECT to_char((now() - interval '30 days') AT TIME ZONE 'UTC', "
                           "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
    pinned = rolecall(local_bed, namespace, *args, "--cutoff", cutoff)
    assert pinned.returncode == 0 and "30 rows deleted" in pinned.stdout, said(pinned)
    assert pg_scalar(ip, "SELECT count(*) FROM events") == 20
    made = client.CustomObjectsApi(local_bed.api_client).list_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", namespace, MAINTENANCES)["items"]
    assert [m["spec"]["operations"][0]["clearOldData"]["cutoff"] for m in made] == [cutoff]


def test_users_reads_the_pods_now(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod("web-0", "nginx", {"app": "web"})])
    running_pods(local_bed, namespace, "app=web", 1)
    ip = pod_ips(local_bed, namespace, "app=web")["web-0"]
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}))
    _running(local_bed, namespace, "web", web_status)
    with held_connections(ip, idle=3, in_flight=0):
        figures = rolecall(local_bed, namespace, "users", "web/web", "-o", "json", "--timeout", "60s")
        assert figures.returncode == 0, said(figures)
        got = json.loads(figures.stdout)
        assert got["activeConnections"] == 3 and got["currentUsers"] == 3, got
        assert got["source"] == "activeConnections" and got["pods"][0]["pod"] == "web-0", got
        wide = rolecall(local_bed, namespace, "users", "web/web", "-o", "wide", "--timeout", "60s")
        assert "3 users (source: activeConnections)" in wide.stdout and "web-0" in wide.stdout, said(wide)


def test_cancel_ends_a_waiting_clear_with_6(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = _memcached_pods(local_bed, namespace, ["mc-0", "mc-1"])
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1,
                                                clearWaves={"size": 1, "pauseSeconds": 600}))
    _running(local_bed, namespace, "mc")
    waiting = popen(local_bed, namespace, "clear", "cache/mc", "--timeout", "120s")
    try:
        wait_for(lambda: (run := status(local_bed, namespace, "mc").get("run")) and run.get("waveResumeAt"),
                 "the first wave done and the pause begun", 60)
        cancelled = rolecall(local_bed, namespace, "cancel", "cache/mc", "--timeout", "60s")
        assert cancelled.returncode == 0 and "cancelled: 1 pods done, 1 never started" in cancelled.stdout, \
            said(cancelled)
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 6 and "Cancelled" in stderr, (stdout, stderr)
    assert sorted(cmd_flush(ip) for ip in ips.values()) == [0, 1]
    nothing = rolecall(local_bed, namespace, "cancel", "cache/mc")
    assert nothing.returncode == 0 and "nothing to cancel" in nothing.stdout, said(nothing)

