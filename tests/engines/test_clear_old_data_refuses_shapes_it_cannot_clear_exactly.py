"""Table shapes and columns clearOldData cannot delete from exactly are refused in words before anything is
deleted (the table's rows are counted before and after), on real PostgreSQL and the real sqlite3 CLI."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from enginekit import pg_session
from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines import EngineError
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles import purge

BASE = """CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz, n bigint, note text);
          INSERT INTO events (created_at, n, note) SELECT now() - g * interval '10 days', 1700000000000, 'x'
              FROM generate_series(1, 6) g;"""

PG_REFUSALS = [
    ("a view", "CREATE VIEW recent AS SELECT * FROM events", {"table": "recent"},
     "postgresql: recent: public.recent is a view, not a table that holds rows (clear the table it reads instead); "
     "nothing was deleted"),
    ("a materialized view", "CREATE MATERIALIZED VIEW recent AS SELECT * FROM events", {"table": "recent"},
     "postgresql: recent: public.recent is a materialized view, not a table that holds rows (clear the table it "
     "reads instead); nothing was deleted"),
    ("a foreign table", """CREATE EXTENSION postgres_fdw; CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw;
         CREATE FOREIGN TABLE remote (id bigint, created_at timestamptz) SERVER elsewhere""", {"table": "remote"},
     "postgresql: remote: public.remote is a foreign table, not a table that holds rows (clear the table it reads "
     "instead); nothing was deleted"),
    ("a partitioned table with a foreign partition", """CREATE EXTENSION postgres_fdw;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw;
         CREATE TABLE log (created_at timestamptz) PARTITION BY RANGE (created_at);
         CREATE TABLE log_local PARTITION OF log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE FOREIGN TABLE log_remote PARTITION OF log FOR VALUES FROM ('2020-01-01') TO ('2026-01-01')
             SERVER elsewhere""", {"table": "log"},
     "postgresql: log: public.log_remote is a foreign table (a partition or child of public.log on another server): "
     "rolecall cannot check what a delete there does; nothing was deleted"),
    ("a text column", "", {"timestampColumn": "note"},
     "postgresql: events.note is text, not a timestamp, a date or an integer with timestampFormat"),
    ("an integer column without timestampFormat", "", {"timestampColumn": "n"},
     "postgresql: events.n is bigint: set timestampFormat to unixSeconds or unixMilliseconds to say how it "
     "stores time"),
    ("milliseconds declared as seconds", "", {"timestampColumn": "n", "timestampFormat": "unixSeconds"},
     "postgresql: events.n holds 1700000000000, which is not unixSeconds; nothing was deleted"),
    ("timestampFormat on a timestamp column", "", {"timestampFormat": "unixSeconds"},
     "postgresql: events.created_at is timestamp with time zone: timestampFormat is only for integer columns "
     "holding unix time; leave it out"),
    ("a DELETE rule", "CREATE RULE keep AS ON DELETE TO events DO INSTEAD NOTHING", {},
     "postgresql: events: public.events has the DELETE rule keep: a rewritten DELETE may do something else than "
     "delete the rows it names; nothing was deleted"),
    ("a statement trigger on a partitioned parent", """
         CREATE TABLE log (created_at timestamptz) PARTITION BY RANGE (created_at);
         CREATE TABLE log_all PARTITION OF log DEFAULT;
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
         CREATE TRIGGER audit AFTER DELETE ON log FOR EACH STATEMENT EXECUTE FUNCTION note()""", {"table": "log"},
     "postgresql: log: the statement-level ON DELETE trigger audit on public.log would not fire: each partition or "
     "child table is cleared directly; nothing was deleted"),
    ("a missing table", "", {"table": "nothere"}, "postgresql: table nothere not found on the search path"),
    ("a missing schema", "", {"table": "nothere.events"}, "postgresql: table nothere.events not found in schema "
                                                          "nothere"),
    ("a missing column", "", {"timestampColumn": "gone"}, "postgresql: table events has no column gone"),
]


def _step(**kw: Any) -> ClearOldData:
    return ClearOldData.model_validate({"table": "events", "timestampColumn": "created_at", "olderThan": "30d",
                                        "batchSize": 2, **kw})


async def _clear(session: Any, step: ClearOldData) -> None:
    async def checkpoint() -> None:
        return None

    async with session as db:
        await purge.clear(db, step, OperationResult(type="clearOldData"), checkpoint, lambda: None)


@pytest.mark.parametrize(("setup", "fields", "message"), [r[1:] for r in PG_REFUSALS], ids=[r[0] for r in PG_REFUSALS])
def test_postgresql_refuses_in_words_and_deletes_nothing(pg: psycopg.Connection[Any], setup: str,
                                                         fields: dict[str, Any], message: str) -> None:
    pg.execute(BASE)
    if setup:
        pg.execute(setup)
    with pytest.raises(EngineError) as refused:
        asyncio.run(_clear(pg_session(pg), _step(**fields)))
    assert str(refused.value) == message
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (6,)


def test_postgresql_refuses_a_user_without_delete_on_a_partition(pg: psycopg.Connection[Any]) -> None:
    pg.execute("""CREATE TABLE log (created_at timestamptz) PARTITION BY RANGE (created_at);
                  CREATE TABLE log_old PARTITION OF log FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
                  CREATE TABLE log_new PARTITION OF log DEFAULT;
                  INSERT INTO log VALUES ('2001-01-01'), (now());
                  DROP ROLE IF EXISTS janitor; CREATE ROLE janitor LOGIN PASSWORD 'janitor-pw';
                  GRANT SELECT, DELETE ON log TO janitor; GRANT SELECT, DELETE ON log_new TO janitor""")
    with pytest.raises(EngineError) as refused:
        asyncio.run(_clear(pg_session(pg, user="janitor", password="janitor-pw"), _step(table="log")))
    assert str(refused.value) == ("postgresql: log: the database user lacks SELECT or DELETE on public.log_old (each "
                                  "partition or child table is cleared directly); nothing was deleted")
    assert pg.execute("SELECT count(*) FROM log").fetchone() == (2,)


SQLITE_REFUSALS = [
    ("a view", "CREATE VIEW recent AS SELECT * FROM events", {"table": "recent"},
     "sqlite: recent is a view, not a table that holds rows; nothing was deleted"),
    ("a virtual table", "CREATE VIRTUAL TABLE docs USING fts5(body, created_at)", {"table": "docs"},
     "sqlite: docs is a virtual table, not a table that holds rows; nothing was deleted"),
    ("a WITHOUT ROWID table", "CREATE TABLE kv (k TEXT PRIMARY KEY, created_at INTEGER) WITHOUT ROWID",
     {"table": "kv"}, "sqlite: kv is a WITHOUT ROWID table: it has no rowid to record batches by; nothing was deleted"),
    ("another schema", "", {"table": "other.events"},
     "sqlite: other.events: only tables of the main database can be cleared (not other); nothing was deleted"),
    ("values of the other format", "", {"timestampFormat": "unixMilliseconds"},
     "sqlite: 6 values of events.created_at are not unixMilliseconds (e.g. 1700000000); nothing was deleted"),
    ("no timestampFormat", "", {"timestampFormat": None},
     "sqlite: clearOldData needs timestampFormat (unixSeconds, unixMilliseconds or iso8601)"),
    ("a missing column", "", {"timestampColumn": "gone"}, "sqlite: table events has no column gone"),
]


@pytest.mark.parametrize(("setup", "fields", "message"), [r[1:] for r in SQLITE_REFUSALS],
                         ids=[r[0] for r in SQLITE_REFUSALS])
def test_sqlite_refuses_in_words_and_deletes_nothing(sqlite_db: tuple[Path, SqliteSession], setup: str,
                                                     fields: dict[str, Any], message: str) -> None:
    path, session = sqlite_db
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE events (id INTEGER PRIMARY KEY, created_at INTEGER);"  # noqa: S608
                           "INSERT INTO events (created_at) VALUES (1700000000), (1700000001), (1700000002), "
                           "(1700000003), (1700000004), (1700000005);" + (setup + ";" if setup else ""))

    async def clear() -> None:
        async def checkpoint() -> None:
            return None

        step = _step(timestampFormat="unixSeconds", **fields) if "timestampFormat" not in fields else _step(**fields)
        await purge.clear(session, step, OperationResult(type="clearOldData"), checkpoint, lambda: None)

    with pytest.raises(EngineError) as refused:
        asyncio.run(clear())
    assert str(refused.value) == message
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (6,)
