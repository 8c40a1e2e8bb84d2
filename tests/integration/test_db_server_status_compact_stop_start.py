"""DatabaseServer on PostgreSQL: size and connections in status, VACUUM on request (annotation token),
VACUUM FULL shrinking a bloated table, and stop/start round-tripping the replica count."""

from __future__ import annotations

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import condition, create_deployment
from dbkit import (
    MAINTENANCES,
    SECRET,
    SERVERS,
    create,
    maintenance,
    patch,
    pg,
    pg_pods,
    pg_scalar,
    pg_server,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, deployment, pods, running_pods, secret_b64, wait_for
from testbed.servers import POSTGRES_PASSWORD

BLOAT = """
CREATE TABLE bloat (id serial PRIMARY KEY, payload text);
INSERT INTO bloat (payload) SELECT repeat('x', 500) FROM generate_series(1, 20000);
DELETE FROM bloat WHERE id % 10 != 0;
"""


def test_status_figures_and_compaction_on_request(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(BLOAT)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("sizeBytes") and s, "figures")
    assert st["primary"] == "pg-0" and st["connections"] >= 1 and st["sizeBytes"] > 5_000_000
    assert st["largestTables"][0]["table"] == "public.bloat"

    patch(local_bed, namespace, SERVERS, "db", {"metadata": {"annotations": {
        "rolecall.dev/compact-requested-at": "t1"}}})
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("lastHandledCompactRequest")
                  == "t1" and s.get("lastCompactedAt") and s, "compaction t1 handled")
    assert st["lastCompaction"]["phase"] == "Succeeded" and condition(st, "Compacted")["status"] == "True"
    assert local_bed.kubectl("wait", "-n", namespace, "databaseserver/db", "--for=condition=Compacted",
                             "--timeout=5s").returncode == 0
    text = str(status_of(local_bed, namespace, SERVERS, "db")) + operator.logs()
    assert POSTGRES_PASSWORD not in text, "the database password leaked into status or the log"
    # VACUUM (ANALYZE) cleaned the dead tuples the statistics know about.
    assert pg_scalar(ip, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'bloat'") == 0


def test_vacuum_full_shrinks_a_bloated_table(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    with pg(ip) as conn:
        conn.execute(BLOAT)
    before = pg_scalar(ip, "SELECT pg_total_relation_size('bloat')")
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    create(local_bed, namespace, MAINTENANCES, maintenance("shrink", "db", [{"compact": {"full": True,
                                                                                        "tables": ["bloat"]}}]))
    run = wait_finished(local_bed, namespace, "shrink")
    assert run["phase"] == "Succeeded", run.get("operations")
    after = pg_scalar(ip, "SELECT pg_total_relation_size('bloat')")
    op = run["operations"][0]
    assert op["bytesBefore"] == before and op["bytesAfter"] == after and after < before // 3, op
    assert run["bytesReclaimed"] == before - after
    assert pg_scalar(ip, "SELECT count(*) FROM bloat") == 2000


def test_stop_then_start_round_trips_the_replica_count(local_bed: Cluster, namespace: str,
                                                       operator: Operator) -> None:
    client.CoreV1Api(local_bed.api_client).create_namespaced_secret(namespace, {"metadata": {"name": SECRET}, "data": {
        "username": secret_b64("postgres"), "password": secret_b64(POSTGRES_PASSWORD)}})
    create_deployment(local_bed, namespace, deployment("pg", "postgresql", 1))
    running_pods(local_bed, namespace, "app=pg", 1)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}, workloadRef={"kind": "Deployment",
                                                                                      "name": "pg"}))
    wait_for(lambda: status_of(local_bed, namespace, SERVERS, "db").get("phase") == "Running", "Running")
    patch(local_bed, namespace, SERVERS, "db", {"spec": {"stopped": True}})
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("phase") == "Stopped" and s,
                  "Stopped")
    assert st["rememberedReplicas"] == 1 and st["replicas"] == 0
    wait_for(lambda: not pods(local_bed, namespace, "app=pg"), "the database pod gone")
    # A maintenance due while the server is stopped on purpose is held, like any kind's request, not failed.
    create(local_bed, namespace, MAINTENANCES, maintenance("vacuum", "db", [{"compact": {}}]))
    held = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "vacuum")).get("conditions") and
                    any(c["type"] == "Complete" and c["reason"] == "HeldWhileStopped" for c in s["conditions"]) and s,
                    "the maintenance held while the server is stopped", 30)
    assert held.get("phase") == "Pending" and not held.get("history"), held
    patch(local_bed, namespace, SERVERS, "db", {"spec": {"stopped": False}})
    running_pods(local_bed, namespace, "app=pg", 1)
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("phase") == "Running" and
                  s.get("primary") and s, "Running again with a primary", 60)
    assert st["replicas"] == 1 and "rememberedReplicas" not in st
    ran = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "vacuum")).get("phase") in
                   ("Succeeded", "Failed") and s, "the held maintenance to run once the server runs", 60)
    assert ran["phase"] == "Succeeded" and [h["outcome"] for h in ran["history"]] == ["Succeeded"], ran
