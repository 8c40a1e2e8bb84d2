"""Helpers for database tests: PostgreSQL stand-in pods, SQLite files, DatabaseServer/Maintenance objects."""

from __future__ import annotations

import os
import pwd
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import create_pods, pod_ips, standin_pod
from harness import Cluster, pods, running_pods, secret_b64, wait_for
from testbed.cluster import BED_USER
from testbed.servers import POSTGRES_PASSWORD

GROUP, VERSION = "rolecall.dev", "v1alpha1"
SERVERS, MAINTENANCES = "databaseservers", "databasemaintenances"
SECRET = "pg-credentials"


def _api(cluster: Cluster) -> Any:
    return client.CustomObjectsApi(cluster.api_client)


def create(cluster: Cluster, ns: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(_api(cluster).create_namespaced_custom_object(GROUP, VERSION, ns, plural, body))


def patch(cluster: Cluster, ns: str, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(_api(cluster).patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name, body))


def delete(cluster: Cluster, ns: str, plural: str, name: str) -> None:
    _api(cluster).delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)


def status_of(cluster: Cluster, ns: str, plural: str, name: str) -> dict[str, Any]:
    return dict(_api(cluster).get_namespaced_custom_object(GROUP, VERSION, ns, plural, name).get("status") or {})


def pg_server(name: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer", "metadata": {"name": name},
            "spec": {"engine": "postgresql", "selector": {"matchLabels": selector},
                     "credentialsSecretRef": {"name": SECRET, "usernameKey": "username"}, **spec}}


def sqlite_server(name: str, selector: dict[str, str], path: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer", "metadata": {"name": name},
            "spec": {"engine": "sqlite", "selector": {"matchLabels": selector}, "path": path, **spec}}


def maintenance(name: str, server: str, operations: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseMaintenance", "metadata": {"name": name},
            "spec": {"databaseServerRef": {"name": server}, "operations": operations, **spec}}


def wait_finished(cluster: Cluster, ns: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """Waits like `kubectl wait databasemaintenance/NAME --for=jsonpath={.status.completedAt}`."""
    return wait_for(lambda: (s := status_of(cluster, ns, MAINTENANCES, name)).get("phase") in ("Succeeded", "Failed",
                                                                                           "Cancelled")
                    and s.get("completedAt") and s, f"maintenance {name} to finish", timeout)


def pg_pods(cluster: Cluster, ns: str, names: list[str], labels: dict[str, str] | None = None,
            standby_of: str | None = None) -> dict[str, str]:
    """Creates PostgreSQL stand-in pods (and the credentials Secret); returns pod name -> IP once they answer."""
    core = client.CoreV1Api(cluster.api_client)
    try:
        core.create_namespaced_secret(ns, {"metadata": {"name": SECRET}, "data": {
            "username": secret_b64("postgres"), "password": secret_b64(POSTGRES_PASSWORD)}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    manifests = []
    for n in names:
        pod = standin_pod(n, "postgresql", labels or {"app": "pg"},
                          options="standby" if standby_of else "", replica_of=standby_of)
        manifests.append(pod)
    create_pods(cluster, ns, manifests)
    selector = ",".join(f"{k}={v}" for k, v in (labels or {"app": "pg"}).items())
    running_pods(cluster, ns, selector, len(pods(cluster, ns, selector)), 90)
    ips = {n: ip for n, ip in pod_ips(cluster, ns, selector).items() if n in names}
    for ip in ips.values():
        wait_for(lambda ip=ip: _answers(ip), f"postgres at {ip}", 60)
    return ips


def _answers(ip: str) -> bool:
    try:
        with pg(ip) as conn:
            return conn.execute("SELECT 1").fetchone() is not None
    except psycopg.OperationalError:
        return False


def pg(ip: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=ip, user="postgres", password=POSTGRES_PASSWORD, dbname="postgres",
                           autocommit=True, connect_timeout=5)


def pg_scalar(ip: str, query: str, *params: Any) -> Any:
    with pg(ip) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


SQLITE_ROOT = Path("/tmp/rolecall-bed-sqlite")  # not pytest's tmp_path: its 0700 parents keep the bed user out


def sqlite_file() -> Path:
    """A fresh database path in a directory the bed user owns (pod exec runs sqlite3 as that user)."""
    d = SQLITE_ROOT / uuid.uuid4().hex[:10]
    d.mkdir(parents=True)
    SQLITE_ROOT.chmod(0o755)  # the bed user must reach the files
    return d / "app.db"


def give_to_bed_user(path: Path) -> None:
    """After the test wrote the file as root: the bed user must own it and its directory (journal files)."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(BED_USER)
    for p in (path.parent, *path.parent.iterdir()):
        os.chown(p, pw.pw_uid, pw.pw_gid)


OLD, NEW = 30, 20


def seed_events(ip: str, old: int = OLD, new: int = NEW) -> None:
    with pg(ip) as conn:
        conn.execute("CREATE TABLE events (id serial PRIMARY KEY, created_at timestamptz NOT NULL, payload text)")
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '40 days' - g * interval "
                     "'1 hour', 'old' FROM generate_series(1, %s) g", (old,))
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '10 days' + g * interval "
                     "'1 hour', 'new' FROM generate_series(1, %s) g", (new,))


CLEAR = {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d", "batchSize": 7}}


def app_pod(cluster: Cluster, ns: str) -> None:
    """A plain pod (no stand-in: only exec is needed) named app-0, labelled app=app, Running."""
    pod = standin_pod("app-0", "none", {"app": "app"})
    del pod["metadata"]["labels"]["testbed.rolecall.dev/engine"]
    create_pods(cluster, ns, [pod])
    running_pods(cluster, ns, "app=app", 1)


def sqlite_app(cluster: Cluster, ns: str) -> Path:
    """A SQLite file with one empty table t, owned by the bed user, and the app pod that "holds" it."""
    path = sqlite_file()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    give_to_bed_user(path)
    app_pod(cluster, ns)
    return path


def sqlite_rows(path: Path, query: str) -> Any:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchone()[0]
