"""Property: for generated table shapes, column types, time distributions (around the cut-off to the
microsecond), NULLs, batch sizes and maxRows, a dry run followed by a real run pinned to the plan's cut-off
deletes exactly rows older than the cut-off: all of them (or exactly maxRows of them), none other, and the plan
counted what the real run deleted. Real PostgreSQL and the real sqlite3 CLI.

`make test` runs a fixed seed (derandomized); `make fuzz` sets ROLECALL_FUZZ_RANDOM=1 for a random search with
ROLECALL_FUZZ_EXAMPLES examples."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import sqlite3
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit import local_exec, pg_session
from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines.database import DatabaseSession
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles import purge

RANDOM = os.environ.get("ROLECALL_FUZZ_RANDOM") == "1"
EXAMPLES = int(os.environ.get("ROLECALL_FUZZ_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=not RANDOM, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CUT = dt.datetime(2026, 6, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
DAY_US = 86_400_000_000
# Offsets from the cut-off in microseconds: anywhere within 60 days, or right at its edges.
OFFSETS = st.one_of(st.integers(-60 * DAY_US, 60 * DAY_US),
                    st.sampled_from([-1, 0, 1, -250_000, -250_001, 749_999, 750_000, -DAY_US, DAY_US]))


@dataclass(frozen=True)
class Column:
    sql: str
    fmt: str | None

    def value(self, t: dt.datetime) -> Any:
        if self.sql == "timestamp":
            return t.replace(tzinfo=None)
        if self.sql == "date":
            return t.date()
        if self.fmt == "unixSeconds":
            return int((t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() // 1)
        if self.fmt == "unixMilliseconds":
            return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
        return t

    def older(self, v: Any) -> bool:
        """The documented meaning of 'older than the cut-off' for this column type, computed here, not by SQL."""
        return bool(v < self.value(CUT) if self.sql != "date" else v < CUT.date()) if self.fmt is None else \
            v * (1 if self.fmt == "unixSeconds" else 0.001) < CUT.timestamp()


PG_COLUMNS = [Column("timestamptz", None), Column("timestamp", None), Column("date", None),
              Column("bigint", "unixSeconds"), Column("bigint", "unixMilliseconds")]


def _pg_shape(draw: Any, column: Column) -> tuple[list[str], list[str], bool]:
    """(DDL, the tables rows are inserted into, whether NULL times are allowed) for a drawn shape."""
    kind = draw(st.sampled_from(["plain", "range", "list", "hash", "inheritance"]))
    c = column.sql
    if kind == "plain":
        return [f"CREATE TABLE events (id bigserial PRIMARY KEY, created_at {c}, k int NOT NULL)"], ["events"], True
    if kind == "inheritance":
        children = draw(st.integers(1, 3))
        ddl = [f"CREATE TABLE events (id bigserial, created_at {c}, k int NOT NULL)"]
        ddl += [f"CREATE TABLE events_c{i} () INHERITS (events)" for i in range(children)]
        return ddl, ["events", *[f"events_c{i}" for i in range(children)]], True
    if kind == "hash":
        m = draw(st.integers(1, 4))
        ddl = [f"CREATE TABLE events (id bigserial, created_at {c}, k int NOT NULL) PARTITION BY HASH (id)"]
        ddl += [f"CREATE TABLE events_h{i} PARTITION OF events FOR VALUES WITH (MODULUS {m}, REMAINDER {i})"
                for i in range(m)]
        return ddl, ["events"], True
    if kind == "list":
        ddl = [f"CREATE TABLE events (id bigserial, created_at {c}, k int NOT NULL) PARTITION BY LIST (k)",
               "CREATE TABLE events_l0 PARTITION OF events FOR VALUES IN (0)",
               "CREATE TABLE events_l1 PARTITION OF events DEFAULT"]
        return ddl, ["events"], True
    # range on the time column itself, cut at drawn points (in the column's own values), a default partition
    # and perhaps list sub-partitions under the first one
    cuts = sorted(set(draw(st.lists(OFFSETS, min_size=1, max_size=3))))
    bounds = [column.value(CUT + dt.timedelta(microseconds=o)) for o in cuts]
    bounds = sorted(set(bounds))
    lit = [f"'{b.isoformat()}'" if not isinstance(b, int) else str(b) for b in bounds]
    ddl = [f"CREATE TABLE events (id bigserial, created_at {c}, k int NOT NULL) PARTITION BY RANGE (created_at)",
           f"CREATE TABLE events_r0 PARTITION OF events FOR VALUES FROM (MINVALUE) TO ({lit[0]})"
           + (" PARTITION BY LIST (k)" if draw(st.booleans()) else "")]
    if ddl[-1].endswith("LIST (k)"):
        ddl += ["CREATE TABLE events_r0a PARTITION OF events_r0 FOR VALUES IN (0, 1)",
                "CREATE TABLE events_r0b PARTITION OF events_r0 DEFAULT"]
    ddl += [f"CREATE TABLE events_r{i + 1} PARTITION OF events FOR VALUES FROM ({lo}) TO ({hi})"
            for i, (lo, hi) in enumerate(itertools.pairwise(lit))]
    ddl.append("CREATE TABLE events_rest PARTITION OF events DEFAULT")
    return ddl, ["events"], True


@st.composite
def pg_cases(draw: Any) -> tuple[Column, list[str], list[str], list[Any], int, int | None]:
    column = draw(st.sampled_from(PG_COLUMNS))
    ddl, tables, nulls = _pg_shape(draw, column)
    times = draw(st.lists(st.one_of(OFFSETS, st.none()) if nulls else OFFSETS, max_size=40))
    values = [None if o is None else column.value(CUT + dt.timedelta(microseconds=o)) for o in times]
    return column, ddl, tables, values, draw(st.integers(1, 9)), draw(st.none() | st.integers(1, 30))


async def _plan_then_clear(db: DatabaseSession, step: ClearOldData) -> tuple[OperationResult, OperationResult]:
    planned, done = OperationResult(type="clearOldData"), OperationResult(type="clearOldData")
    await purge.plan(db, step, planned)

    async def checkpoint() -> None:
        return None

    assert planned.cutoff is not None
    await purge.clear(db, step.model_copy(update={"cutoff": planned.cutoff}), done, checkpoint, lambda: None)
    return planned, done


def _check(values: list[Any], left: list[Any], older: Any, planned: OperationResult, done: OperationResult,
           max_rows: int | None) -> None:
    old = [v for v in values if v is not None and older(v)]
    expected_gone = len(old) if max_rows is None else min(max_rows, len(old))
    gone = Counter(values) - Counter(left)
    assert sum(gone.values()) == expected_gone == done.rows_deleted, (gone, done)
    assert all(v is not None and older(v) for v in gone.elements()), f"deleted rows not older: {gone}"
    assert Counter(left) - Counter(values) == Counter(), "rows appeared"
    assert planned.matched_at_start == len(old) == done.matched_at_start, (planned, old)
    assert planned.null_rows == values.count(None)


@SETTINGS
@given(case=pg_cases())
def test_postgresql_deletes_exactly_the_older_rows(pg: psycopg.Connection[Any],
                                                   case: tuple[Column, list[str], list[str], list[Any], int,
                                                               int | None]) -> None:
    column, ddl, tables, values, batch, max_rows = case
    schema = f"s_{uuid.uuid4().hex[:10]}"
    pg.execute(f'CREATE SCHEMA "{schema}"')
    pg.execute(f'SET search_path = "{schema}"')
    try:
        for statement in ddl:
            pg.execute(statement)
        for i, v in enumerate(values):
            pg.execute(f"INSERT INTO {tables[i % len(tables)]} (created_at, k) VALUES (%s, %s)",  # noqa: S608
                       (v, i % 3))
        step = ClearOldData(table=f"{schema}.events", timestamp_column="created_at", cutoff="2000-01-01T00:00:00Z",
                            batch_size=batch, max_rows=max_rows, timestamp_format=column.fmt)

        async def run() -> tuple[OperationResult, OperationResult]:
            async with pg_session(pg) as db:
                pinned = step.model_copy(update={"cutoff": CUT.isoformat().replace("+00:00", "Z")})
                return await _plan_then_clear(db, pinned)

        planned, done = asyncio.run(run())
        left = [r[0] for r in pg.execute("SELECT created_at FROM events").fetchall()]
        _check(values, left, column.older, planned, done, max_rows)
    finally:
        pg.execute(f'DROP SCHEMA "{schema}" CASCADE')
        pg.execute("RESET search_path")


SQLITE_FORMATS = {
    "unixSeconds": Column("integer", "unixSeconds"),
    "unixMilliseconds": Column("integer", "unixMilliseconds"),
}


def _iso(t: dt.datetime, digits: int) -> str:
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{t.microsecond:06d}"[:digits + 1] if digits else "") + "Z"


def _iso_older(v: str) -> bool:
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")) < CUT


@SETTINGS
@given(fmt=st.sampled_from(["unixSeconds", "unixMilliseconds", "iso8601"]),
       times=st.lists(st.tuples(st.one_of(OFFSETS, st.none()), st.integers(0, 6)), max_size=40),
       batch=st.integers(1, 9), max_rows=st.none() | st.integers(1, 30), integer_key=st.booleans())
def test_sqlite_deletes_exactly_the_older_rows(tmp_path: Path, fmt: str, times: list[tuple[int | None, int]],
                                               batch: int, max_rows: int | None, integer_key: bool) -> None:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
    if fmt == "iso8601":  # text with 0 to 6 fraction digits, as applications write it
        values: list[Any] = [None if o is None else _iso(CUT + dt.timedelta(microseconds=o), d) for o, d in times]
        older: Any = _iso_older
    else:
        column = SQLITE_FORMATS[fmt]
        values = [None if o is None else column.value(CUT + dt.timedelta(microseconds=o)) for o, _ in times]
        older = column.older
    with sqlite3.connect(path) as conn:
        key = "id INTEGER PRIMARY KEY" if integer_key else "k TEXT"
        conn.execute(f"CREATE TABLE events ({key}, created_at)")
        conn.executemany("INSERT INTO events (created_at) VALUES (?)", [(v,) for v in values])
    step = ClearOldData(table="events", timestamp_column="created_at", cutoff=CUT.isoformat().replace("+00:00", "Z"),
                        batch_size=batch, max_rows=max_rows, timestamp_format=fmt)
    planned, done = asyncio.run(_plan_then_clear(SqliteSession(local_exec, str(path)), step))
    with sqlite3.connect(path) as conn:
        left = [r[0] for r in conn.execute("SELECT created_at FROM events")]
    if fmt == "iso8601":
        # SQLite's ISO cut-off is whole seconds (rounded down): rows in the cut-off's own second are not older.
        older = lambda v: _iso_older(v) and v[:19] < _iso(CUT, 0)[:19]  # noqa: E731
    _check(values, left, older, planned, done, max_rows)
