"""PostgreSQL: rolecall acts on exactly one primary; a standby is never written to; two primaries are refused."""

from __future__ import annotations

from cachekit import condition
from dbkit import (
    CLEAR,
    MAINTENANCES,
    NEW,
    OLD,
    SERVERS,
    create,
    maintenance,
    pg_pods,
    pg_scalar,
    pg_server,
    seed_events,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, wait_for


def test_the_primary_is_acted_on_and_the_standby_only_follows(local_bed: Cluster, namespace: str,
                                                              operator: Operator) -> None:
    primary = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(primary)
    standby = pg_pods(local_bed, namespace, ["pg-1"], standby_of="pg-0")["pg-1"]
    assert pg_scalar(standby, "SELECT pg_is_in_recovery()") is True
    wait_for(lambda: pg_scalar(standby, "SELECT count(*) FROM events") == OLD + NEW, "the standby to catch up")
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [CLEAR]))
    st = wait_finished(local_bed, namespace, "purge")
    assert st["phase"] == "Succeeded" and st["rowsDeleted"] == OLD, st
    assert status_of(local_bed, namespace, SERVERS, "db").get("primary") == "pg-0"
    # The deletes happened on the primary; the standby shows them only through replication.
    assert pg_scalar(primary, "SELECT count(*) FROM events") == NEW
    wait_for(lambda: pg_scalar(standby, "SELECT count(*) FROM events") == NEW, "replication of the deletes")
    assert pg_scalar(standby, "SELECT pg_is_in_recovery()") is True


def test_two_primaries_are_refused_and_nothing_is_deleted(local_bed: Cluster, namespace: str,
                                                          operator: Operator) -> None:
    ips = pg_pods(local_bed, namespace, ["pg-a", "pg-b"])
    for ip in ips.values():
        seed_events(ip)
    operator.start()
    create(local_bed, namespace, SERVERS, pg_server("db", {"app": "pg"}))
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("conditions") and
                  condition(s, "Degraded").get("reason") == "SeveralPrimaries" and s, "SeveralPrimaries")
    assert "2 pods are primaries (pg-a, pg-b)" in condition(st, "Degraded")["message"]
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [CLEAR]))
    run = wait_finished(local_bed, namespace, "purge")
    assert run["phase"] == "Failed" and "2 pods are primaries" in run["operations"][0]["error"], run
    for ip in ips.values():
        assert pg_scalar(ip, "SELECT count(*) FROM events") == OLD + NEW
