"""SQLite through pod exec of the sqlite3 CLI: old rows deleted per timestamp format, mismatches refused,
VACUUM shrinks the file. On the bed, exec runs sqlite3 on this machine as the bed user, so each test
uses a database file of its own."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from dbkit import (
    MAINTENANCES,
    SERVERS,
    app_pod,
    create,
    give_to_bed_user,
    maintenance,
    sqlite_file,
    sqlite_rows,
    sqlite_server,
    status_of,
    wait_finished,
)
from harness import Cluster, Operator, wait_for

OLD, NEW = 30, 20
NOW = dt.datetime.now(dt.UTC)


def _stamp(t: dt.datetime, fmt: str) -> Any:
    if fmt == "unixSeconds":
        return int(t.timestamp())
    if fmt == "unixMilliseconds":
        return int(t.timestamp() * 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seed(path: Path, fmt: str, stored_as: str | None = None) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts, payload TEXT)")
        rows = [(_stamp(NOW - dt.timedelta(days=40, hours=i), stored_as or fmt), "old") for i in range(OLD)]
        rows += [(_stamp(NOW - dt.timedelta(days=10, hours=i), stored_as or fmt), "new") for i in range(NEW)]
        conn.executemany("INSERT INTO events (ts, payload) VALUES (?, ?)", rows)
    give_to_bed_user(path)


def _clear(fmt: str) -> dict[str, Any]:
    return {"clearOldData": {"table": "events", "timestampColumn": "ts", "olderThan": "30d", "batchSize": 8,
                             "timestampFormat": fmt}}


@pytest.mark.parametrize("fmt", ["unixSeconds", "unixMilliseconds", "iso8601"])
def test_old_rows_deleted_for_each_timestamp_format(local_bed: Cluster, namespace: str, operator: Operator,
                                                    fmt: str) -> None:
    path = sqlite_file()
    _seed(path, fmt)
    app_pod(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [_clear(fmt)]))
    st = wait_finished(local_bed, namespace, "purge")
    assert st["phase"] == "Succeeded", st.get("operations")
    op = st["operations"][0]
    assert (op["matchedAtStart"], op["rowsDeleted"], op["remaining"], op["batches"]) == (OLD, OLD, 0, 4), op
    assert sqlite_rows(path, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert sqlite_rows(path, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW


@pytest.mark.parametrize(("declared", "stored", "why"), [
    ("unixSeconds", "unixMilliseconds", "50 values of events.ts are not unixSeconds"),
    ("unixMilliseconds", "unixSeconds", "50 values of events.ts are not unixMilliseconds"),
    ("iso8601", "unixSeconds", "50 values of events.ts are not iso8601"),
    ("unixSeconds", "iso8601", "50 values of events.ts are not unixSeconds"),
])
def test_a_column_that_does_not_match_the_format_is_refused_and_nothing_deleted(
        local_bed: Cluster, namespace: str, operator: Operator, declared: str, stored: str, why: str) -> None:
    path = sqlite_file()
    _seed(path, declared, stored_as=stored)
    app_pod(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [_clear(declared)]))
    st = wait_finished(local_bed, namespace, "purge")
    assert st["phase"] == "Failed", st
    error = st["operations"][0]["error"]
    assert why in error and "nothing was deleted" in error, error
    assert sqlite_rows(path, "SELECT count(*) FROM events") == OLD + NEW


def test_vacuum_shrinks_the_file_and_compaction_by_annotation(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    path = sqlite_file()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(b"x" * 4000,) for _ in range(500)])
        conn.execute("DELETE FROM blobs WHERE id % 10 != 0")
    give_to_bed_user(path)
    before = path.stat().st_size
    app_pod(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("sizeBytes") and s,
                  "the file size in status")
    assert st["sizeBytes"] == before and st["primary"] == "app-0"
    create(local_bed, namespace, MAINTENANCES, maintenance("compact", "db", [{"compact": {}}]))
    run = wait_finished(local_bed, namespace, "compact")
    assert run["phase"] == "Succeeded", run.get("operations")
    op = run["operations"][0]
    assert op["bytesBefore"] == before and op["bytesAfter"] == path.stat().st_size < before // 5, op
    assert run["bytesReclaimed"] == before - op["bytesAfter"]
    assert sqlite_rows(path, "SELECT count(*) FROM blobs") == 50


def test_a_finished_one_shot_maintenance_is_deleted_after_its_ttl(local_bed: Cluster, namespace: str,
                                                                  operator: Operator) -> None:
    path = sqlite_file()
    _seed(path, "unixSeconds")
    app_pod(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    create(local_bed, namespace, MAINTENANCES, maintenance("once", "db", [{"compact": {}}],
                                                           ttlSecondsAfterFinished=2))
    assert wait_finished(local_bed, namespace, "once")["phase"] == "Succeeded"

    def gone() -> bool:
        try:
            status_of(local_bed, namespace, MAINTENANCES, "once")
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, "the maintenance to be deleted after ttlSecondsAfterFinished", 30)


def test_a_kill_mid_run_resumes_with_the_same_cutoff_and_an_exact_count(local_bed: Cluster, namespace: str,
                                                                          operator: Operator) -> None:
    """SIGKILL mid-clearOldData on SQLite: the resumed run keeps its cut-off, settles the recorded rowid range
    by recounting it, and ends with rowsDeleted equal to the rows gone from the file; newer rows stay."""
    path = sqlite_file()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts, payload TEXT)")
        conn.executemany("INSERT INTO events (ts, payload) VALUES (?, ?)",
                         [(_stamp(NOW - dt.timedelta(days=40, minutes=i), "unixSeconds"), "old") for i in range(600)]
                         + [(_stamp(NOW - dt.timedelta(days=1, minutes=i), "unixSeconds"), "new") for i in range(50)])
    give_to_bed_user(path)
    app_pod(local_bed, namespace)
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    step = {"clearOldData": {"table": "events", "timestampColumn": "ts", "olderThan": "30d", "batchSize": 10,
                             "timestampFormat": "unixSeconds"}}
    create(local_bed, namespace, MAINTENANCES, maintenance("purge", "db", [step]))
    before = wait_for(lambda: (op := (status_of(local_bed, namespace, MAINTENANCES, "purge").get("operations")
                                      or [{}])[0]).get("batches", 0) >= 3 and op, "three batches", 60, interval=0.05)
    operator.kill()
    left = sqlite_rows(path, "SELECT count(*) FROM events WHERE payload = 'old'")
    assert 0 < left < 600, left  # the kill landed mid-run
    operator.start()
    st = wait_finished(local_bed, namespace, "purge", 180)
    op = st["operations"][0]
    assert st["phase"] == "Succeeded", op
    assert op["cutoff"] == before["cutoff"] and (op["matchedAtStart"], op["rowsDeleted"], op["remaining"]) == \
        (600, 600, 0), op
    assert sqlite_rows(path, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert sqlite_rows(path, "SELECT count(*) FROM events WHERE payload = 'new'") == 50
