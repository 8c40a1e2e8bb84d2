"""What the tools people run say about each kind, from objects read off the bed: kstatus (sigs.k8s.io/
cli-utils status.Compute, what Flux's `wait: true` uses) through hack/tools/kstatus, and the chart's Argo
CD health.lua through hack/tools/argolua (gopher-lua, as Argo CD runs it).

Per kind: InProgress/Progressing while a request runs, Current/Healthy once it ended, Failed/Degraded when
Stalled, and InProgress after a spec change the operator has not observed yet (made deterministic by
killing the operator before the change)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import cacheserver, create_cs, create_deployment, create_pods, pod_ips, standin_pod, wait_memcached
from dbkit import MAINTENANCES, SERVERS, maintenance, pg, pg_pods, pg_server, seed_events
from dbkit import create as create_db
from harness import REPO, Cluster, Operator, deployment, running_pods, wait_for
from webkit import create_web, held_connections, webserver

ARGOCD = REPO / "charts" / "rolecall" / "files" / "argocd" / "rolecall.dev"
GROUP, VERSION = "rolecall.dev", "v1alpha1"
MISSING_WORKLOAD = {"stopped": True, "workloadRef": {"kind": "Deployment", "name": "not-there"}}


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not on PATH: run `make cluster-bins` (it builds hack/tools) and put its bin on PATH"
    return found


def _get(cluster: Cluster, ns: str, plural: str, name: str) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(GROUP, VERSION, ns, plural,
                                                                                        name))


def _patch(cluster: Cluster, ns: str, plural: str, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name, body)


def verdicts(obj: dict[str, Any]) -> tuple[str, str]:
    """(kstatus status, Argo CD health status) of one object."""
    kstatus = subprocess.run([_tool("kstatus")], input=json.dumps(obj), capture_output=True, text=True, check=True)
    health = subprocess.run([_tool("argolua"), "health", str(ARGOCD / obj["kind"])], input=json.dumps(obj),
                            capture_output=True, text=True, check=True)
    return json.loads(kstatus.stdout)["status"], json.loads(health.stdout)["status"]


def reaches(cluster: Cluster, ns: str, plural: str, name: str, want: tuple[str, str], timeout: float = 60) -> None:
    """Waits until both tools give `want` for the object as the apiserver has it."""
    last: list[Any] = []

    def check() -> bool:
        obj = _get(cluster, ns, plural, name)
        last[:] = [verdicts(obj), obj.get("status")]
        return last[0] == want

    try:
        wait_for(check, f"{plural}/{name} to be {want}", timeout)
    except Exception as e:
        raise AssertionError(f"{plural}/{name}: last verdicts {last[0] if last else None}, status "
                             f"{json.dumps(last[1] if last else None)[:3000]}") from e


def unobserved_change_is_in_progress(cluster: Cluster, ns: str, operator: Operator, plural: str, name: str,
                                     spec: dict[str, Any], settled: tuple[str, str]) -> None:
    """A spec change while no operator runs: InProgress (generation ahead of observedGeneration) until one
    observes it."""
    operator.kill()
    _patch(cluster, ns, plural, name, {"spec": spec})
    obj = _get(cluster, ns, plural, name)
    assert obj["metadata"]["generation"] > obj["status"]["observedGeneration"]
    assert verdicts(obj) == ("InProgress", "Progressing")
    operator.start()
    reaches(cluster, ns, plural, name, settled)


@contextlib.contextmanager
def table_locked(ip: str) -> Iterator[None]:
    """Holds an ACCESS EXCLUSIVE lock on events: a VACUUM or DELETE on it waits until the block ends."""
    with pg(ip) as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_cache_server(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_pods(local_bed, namespace, [standin_pod(f"mc-{i}", "memcached", {"app": "mc"}) for i in range(2)])
    running_pods(local_bed, namespace, "app=mc", 2)
    wait_memcached(list(pod_ips(local_bed, namespace, "app=mc").values()))
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1,
                                                clearWaves={"size": 1, "pauseSeconds": 600}))
    reaches(local_bed, namespace, "cacheservers", "mc", ("Current", "Healthy"))
    _patch(local_bed, namespace, "cacheservers", "mc",
           {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": "t1"}}})
    reaches(local_bed, namespace, "cacheservers", "mc", ("InProgress", "Progressing"))  # paused between waves
    _patch(local_bed, namespace, "cacheservers", "mc", {"metadata": {"annotations": {"rolecall.dev/cancel": "t1"}}})
    reaches(local_bed, namespace, "cacheservers", "mc", ("Current", "Healthy"))
    unobserved_change_is_in_progress(local_bed, namespace, operator, "cacheservers", "mc", {"concurrency": 2},
                                     ("Current", "Healthy"))
    _patch(local_bed, namespace, "cacheservers", "mc", {"spec": MISSING_WORKLOAD})
    reaches(local_bed, namespace, "cacheservers", "mc", ("Failed", "Degraded"))


def test_web_server(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("web", "nginx", 1))
    running_pods(local_bed, namespace, "app=web", 1)
    [ip] = pod_ips(local_bed, namespace, "app=web").values()
    operator.start()
    create_web(local_bed, namespace, webserver("web", "nginx", {"app": "web"}, drainTimeoutSeconds=600,
                                               workloadRef={"kind": "Deployment", "name": "web"}))
    reaches(local_bed, namespace, "webservers", "web", ("Current", "Healthy"))
    with held_connections(ip, idle=2, in_flight=0):
        _patch(local_bed, namespace, "webservers", "web", {"spec": {"stopped": True}})
        reaches(local_bed, namespace, "webservers", "web", ("InProgress", "Progressing"))  # draining
        _patch(local_bed, namespace, "webservers", "web", {"spec": {"stopped": False}})
        reaches(local_bed, namespace, "webservers", "web", ("Current", "Healthy"))
    unobserved_change_is_in_progress(local_bed, namespace, operator, "webservers", "web", {"drainThreshold": 1},
                                     ("Current", "Healthy"))
    _patch(local_bed, namespace, "webservers", "web", {"spec": {**MISSING_WORKLOAD, "drainTimeoutSeconds": None}})
    reaches(local_bed, namespace, "webservers", "web", ("Failed", "Degraded"))  # WorkloadNotFound


def test_database_server_and_maintenance(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)
    operator.start()
    create_db(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    reaches(local_bed, namespace, SERVERS, "db", ("Current", "Healthy"))
    clear = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d"}}
    with table_locked(ip):
        _patch(local_bed, namespace, SERVERS, "db",
               {"metadata": {"annotations": {"rolecall.dev/compact-requested-at": "c1"}}})
        reaches(local_bed, namespace, SERVERS, "db", ("InProgress", "Progressing"))  # VACUUM waits for the lock
        create_db(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [clear]))
        reaches(local_bed, namespace, MAINTENANCES, "purge", ("InProgress", "Progressing"))
    reaches(local_bed, namespace, SERVERS, "db", ("Current", "Healthy"))
    reaches(local_bed, namespace, MAINTENANCES, "purge", ("Current", "Healthy"), 90)
    assert _get(local_bed, namespace, MAINTENANCES, "purge")["status"]["rowsDeleted"] == 30

    create_db(local_bed, namespace, MAINTENANCES, maintenance("nightly", "db", [clear], schedule="0 3 * * *"))
    reaches(local_bed, namespace, MAINTENANCES, "nightly", ("Current", "Healthy"))
    unobserved_change_is_in_progress(local_bed, namespace, operator, MAINTENANCES, "nightly", {"suspend": True},
                                     ("Current", "Suspended"))
    unobserved_change_is_in_progress(local_bed, namespace, operator, SERVERS, "db", {"statusIntervalSeconds": 30},
                                     ("Current", "Healthy"))
    create_db(local_bed, namespace, MAINTENANCES, maintenance("orphan", "no-such-db", [clear]))
    reaches(local_bed, namespace, MAINTENANCES, "orphan", ("Failed", "Degraded"))
    _patch(local_bed, namespace, SERVERS, "db", {"spec": MISSING_WORKLOAD})
    reaches(local_bed, namespace, SERVERS, "db", ("Failed", "Degraded"))


