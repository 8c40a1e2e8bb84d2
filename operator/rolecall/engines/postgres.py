"""PostgreSQL through psycopg (async): role, figures, VACUUM, and batched deletes of old rows.

Every session sets statement_timeout and lock_timeout (VACUUM FULL takes an ACCESS EXCLUSIVE lock) and
runs in autocommit, so VACUUM is allowed and each DELETE batch is its own transaction. Identifiers are
validated at admission and still composed with sql.Identifier, never formatted into SQL text. If the
task running a statement is cancelled (the maintenance was deleted), the statement is cancelled on the
server before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from rolecall.engines.base import Credentials, EngineError
from rolecall.engines.database import Connection, DatabaseFigures, TableFigure, Where

DEFAULT_PORT = 5432
LOCK_TIMEOUT_MS = 10_000  # waiting longer than this for a lock fails the step rather than blocking the app


class PostgresSession:
    timestamp_format: str | None = None  # PostgreSQL columns carry their type: nothing to be told

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def is_primary(self) -> bool:
        return not await self.in_recovery()

    async def _run(self, query: sql.SQL | sql.Composed | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(query, params)
                return list(await cur.fetchall()) if cur.description else []
        except asyncio.CancelledError:
            await self.conn.cancel_safe()  # stop the statement on the server, not only our wait for it
            raise
        except psycopg.Error as e:
            raise EngineError(f"postgresql: {str(e).strip() or type(e).__name__}") from e

    async def in_recovery(self) -> bool:
        return bool((await self._run("SELECT pg_is_in_recovery()"))[0][0])

    async def figures(self) -> DatabaseFigures:
        size = (await self._run("SELECT pg_database_size(current_database())"))[0][0]
        conns = (await self._run("SELECT count(*) FROM pg_stat_activity WHERE datname IS NOT NULL"))[0][0]
        rows = await self._run(
            "SELECT schemaname || '.' || relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables "
            "ORDER BY pg_total_relation_size(relid) DESC LIMIT 5")
        return DatabaseFigures(size_bytes=int(size), connections=int(conns),
                               largest_tables=[TableFigure(str(t), int(d), int(live)) for t, d, live in rows])

    async def size(self, tables: list[str] | None) -> int:
        if not tables:
            return int((await self._run("SELECT pg_database_size(current_database())"))[0][0])
        total = 0
        for t in tables:
            total += int((await self._run("SELECT pg_total_relation_size(%s::regclass)",
                                          (sql.Identifier(t).as_string(self.conn),)))[0][0])
        return total

    async def compact(self, full: bool, tables: list[str] | None) -> None:
        verb = sql.SQL("VACUUM (FULL, ANALYZE)") if full else sql.SQL("VACUUM (ANALYZE)")
        if not tables:
            await self._run(verb)
            return
        await self._run(sql.SQL("{} {}").format(verb, sql.SQL(", ").join(sql.Identifier(t) for t in tables)))

    async def check_column(self, table: str, column: str) -> None:
        """Refuses a column that is not a time: comparing it with the cut-off would be meaningless."""
        rows = await self._run(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = %s "
            "AND table_schema = ANY(current_schemas(false))", (table, column))
        if not rows:
            raise EngineError(f"postgresql: table {table} has no column {column}")
        if rows[0][0] not in ("timestamp with time zone", "timestamp without time zone", "date"):
            raise EngineError(f"postgresql: {table}.{column} is {rows[0][0]}, not a timestamp or date")

    async def cutoff(self, older_than_seconds: int) -> str:
        """now() - older_than, computed by the server itself, as text the server reads back exactly."""
        rows = await self._run("SELECT (now() - make_interval(secs => %s))::timestamptz::text", (older_than_seconds,))
        return str(rows[0][0])

    async def count_older(self, table: str, column: str, cutoff: str) -> int:
        q = sql.SQL("SELECT count(*) FROM {} WHERE {} < %s::timestamptz").format(
            sql.Identifier(table), sql.Identifier(column))
        return int((await self._run(q, (cutoff,)))[0][0])

    async def delete_batch(self, table: str, column: str, cutoff: str, limit: int) -> int:
        """Deletes at most `limit` rows older than the cut-off, in one transaction; returns how many."""
        t, c = sql.Identifier(table), sql.Identifier(column)
        q = sql.SQL("DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < %s::timestamptz "
                    "LIMIT %s))").format(t=t, c=c)
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(q, (cutoff, limit))
                return int(cur.rowcount)
        except asyncio.CancelledError:
            await self.conn.cancel_safe()
            raise
        except psycopg.Error as e:
            raise EngineError(f"postgresql: {str(e).strip() or type(e).__name__}") from e


@asynccontextmanager
async def session(ip: str, port: int, database: str, credentials: Credentials | None,
                  statement_timeout: float, connect_timeout: float = 10) -> AsyncIterator[PostgresSession]:
    user = (credentials.username if credentials else None) or "postgres"
    options = (f"-c statement_timeout={int(statement_timeout * 1000)} -c lock_timeout={LOCK_TIMEOUT_MS} "
               "-c TimeZone=UTC -c application_name=rolecall")
    try:
        conn = await psycopg.AsyncConnection.connect(
            host=ip, port=port, dbname=database, user=user, password=credentials.password if credentials else None,
            connect_timeout=max(1, int(connect_timeout)), options=options, autocommit=True)
    except psycopg.Error as e:
        raise EngineError(f"postgresql at {ip}:{port}: {str(e).strip() or type(e).__name__}") from e
    try:
        yield PostgresSession(conn)
    finally:
        await conn.close()


class Postgres:
    one_pod = False  # one primary among replicas, found with pg_is_in_recovery()

    @asynccontextmanager
    async def session(self, where: Where, connection: Connection) -> AsyncIterator[PostgresSession]:
        async with session(where.ip, connection.port or DEFAULT_PORT, connection.database or "postgres",
                           connection.credentials, connection.timeout) as s:
            yield s
