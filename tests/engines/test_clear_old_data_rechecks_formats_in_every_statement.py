"""The format checks are repeated in every statement, not only before the first: a value of another type or unit
written while a run goes (after its checks) is never taken as old; a REAL unix time just after a cut-off with a
fraction stays (the cut-off is compared exactly, not rounded up)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from enginekit import pg_session
from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles import purge

CUT = "2026-01-01T00:00:00.5Z"  # 1767225600.5 s


async def _clear_after(db: Any, step: ClearOldData, write_meanwhile: Any) -> OperationResult:
    """Runs the step; right after its first checkpoint (the checks are done) the application writes a row."""
    result = OperationResult(type="clearOldData")
    wrote = False

    async def checkpoint() -> None:
        nonlocal wrote
        if not wrote:
            wrote = True
            write_meanwhile()

    await purge.clear(db, step, result, checkpoint, lambda: None)
    return result


def test_sqlite_an_integer_written_into_an_iso8601_column_during_a_run_is_not_old(
        sqlite_db: tuple[Path, SqliteSession]) -> None:
    path, db = sqlite_db
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts)")
        conn.executemany("INSERT INTO events (ts) VALUES (?)", [("2025-06-01T00:00:00Z",), ("2026-06-01T00:00:00Z",)])

    def write() -> None:
        with sqlite3.connect(path) as conn:  # an INTEGER sorts before any TEXT in SQLite
            conn.execute("INSERT INTO events (ts) VALUES (1893456000)")

    step = ClearOldData(table="events", timestamp_column="ts", cutoff=CUT, timestamp_format="iso8601")
    done = asyncio.run(_clear_after(db, step, write))
    with sqlite3.connect(path) as conn:
        left = sorted(str(r[0]) for r in conn.execute("SELECT ts FROM events"))
    assert left == ["1893456000", "2026-06-01T00:00:00Z"] and done.rows_deleted == 1


def test_sqlite_a_real_unix_time_just_after_a_fractional_cutoff_stays(sqlite_db: tuple[Path, SqliteSession]) -> None:
    path, db = sqlite_db
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts)")
        conn.executemany("INSERT INTO events (ts) VALUES (?)",
                         [(1767225600,), (1767225600.4,), (1767225600.5,), (1767225600.9,), (1767225601,)])
    step = ClearOldData(table="events", timestamp_column="ts", cutoff=CUT, timestamp_format="unixSeconds")
    done = asyncio.run(_clear_after(db, step, lambda: None))
    with sqlite3.connect(path) as conn:
        left = sorted(r[0] for r in conn.execute("SELECT ts FROM events"))
    assert left == [1767225600.5, 1767225600.9, 1767225601] and done.rows_deleted == 2


def test_postgresql_a_seconds_value_written_into_a_milliseconds_column_during_a_run_is_not_old(
        pg: psycopg.Connection[Any]) -> None:
    pg.execute("CREATE TABLE events (id bigserial, created_at bigint); "
               "INSERT INTO events (created_at) VALUES (1700000000000), (1800000000000)")

    def write() -> None:  # seconds of a time in 2030: read as milliseconds it would be in 1970, and look old
        pg.execute("INSERT INTO events (created_at) VALUES (1900000000)")

    async def run() -> OperationResult:
        async with pg_session(pg) as db:
            step = ClearOldData(table="events", timestamp_column="created_at", cutoff=CUT,
                                timestamp_format="unixMilliseconds")
            return await _clear_after(db, step, write)

    done = asyncio.run(run())
    left = sorted(r[0] for r in pg.execute("SELECT created_at FROM events").fetchall())
    assert left == [1900000000, 1800000000000] and done.rows_deleted == 1
