"""clearOldData through the real sqlite3 CLI: for each timestampFormat, exactly the rows older than the cut-off
go (rows at it, just after it, in its own second with a fraction, and NULLs stay), rowsDeleted is the real
difference, and the schema's foreign keys are enforced while deleting (a cascade runs)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles import purge

CUT = "2026-06-01T12:00:00Z"
CUT_S = 1780315200
CASES = {
    "unixSeconds": ([CUT_S - 86400 * i for i in range(1, 20)] + [CUT_S - 1, CUT_S, CUT_S + 1, CUT_S + 3600],
                    lambda v: v < CUT_S),
    "unixMilliseconds": ([CUT_S * 1000 - 86_400_000 * i for i in range(1, 20)]
                         + [CUT_S * 1000 - 1, CUT_S * 1000, CUT_S * 1000 + 1], lambda v: v < CUT_S * 1000),
    "iso8601": ([f"2026-05-{d:02d}T08:00:00Z" for d in range(1, 20)]
                + ["2026-06-01T11:59:59.999Z", "2026-06-01T11:59:59Z", "2026-06-01T12:00:00Z",
                   "2026-06-01T12:00:00.001Z", "2026-06-01T12:00:00.5Z", "2026-06-01T12:00:01Z"],
                lambda v: dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                < dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)),
}


async def _plan_then_clear(db: SqliteSession, step: ClearOldData) -> tuple[OperationResult, OperationResult]:
    planned, done = OperationResult(type="clearOldData"), OperationResult(type="clearOldData")
    await purge.plan(db, step, planned)

    async def checkpoint() -> None:
        return None

    await purge.clear(db, step, done, checkpoint, lambda: None)
    return planned, done


@pytest.mark.parametrize("fmt", list(CASES))
def test_exactly_the_older_rows_go(sqlite_db: tuple[Path, SqliteSession], fmt: str) -> None:
    path, db = sqlite_db
    values, older = CASES[fmt]
    all_values: list[Any] = [*values, None, None]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, created_at)")
        conn.executemany("INSERT INTO events (created_at) VALUES (?)", [(v,) for v in all_values])
    old = [v for v in values if older(v)]
    step = ClearOldData(table="events", timestamp_column="created_at", cutoff=CUT, batch_size=4, timestamp_format=fmt)
    planned, done = asyncio.run(_plan_then_clear(db, step))
    with sqlite3.connect(path) as conn:
        left = Counter(r[0] for r in conn.execute("SELECT created_at FROM events"))
    assert left == Counter(v for v in all_values if v is None or not older(v))
    assert planned.matched_at_start == done.rows_deleted == len(old) and done.remaining == 0, (planned, done)
    assert planned.null_rows == 2


def test_foreign_keys_are_enforced_and_named(sqlite_db: tuple[Path, SqliteSession]) -> None:
    path, db = sqlite_db
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE events (id INTEGER PRIMARY KEY, created_at INTEGER);
            CREATE TABLE readings (id INTEGER PRIMARY KEY, event_id INTEGER REFERENCES events ON DELETE CASCADE);
            CREATE TRIGGER gone AFTER DELETE ON events BEGIN SELECT 1; END;""")
        conn.executemany("INSERT INTO events (id, created_at) VALUES (?, ?)",
                         [(1, CUT_S - 90000), (2, CUT_S - 90000), (3, CUT_S + 5)])
        conn.executemany("INSERT INTO readings (event_id) VALUES (?)", [(1,), (1,), (2,), (3,)])
    step = ClearOldData(table="events", timestamp_column="created_at", cutoff=CUT, timestamp_format="unixSeconds")
    planned, done = asyncio.run(_plan_then_clear(db, step))
    assert planned.notes == ["ON DELETE triggers fire for every deleted row: gone",
                             "readings references events (ON DELETE CASCADE; foreign keys are enforced while "
                             "deleting)"], planned.notes
    assert done.rows_deleted == 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT event_id FROM readings").fetchall() == [(3,)]
