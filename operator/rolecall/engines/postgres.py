"""PostgreSQL through psycopg (async): role, figures, VACUUM; clearOldData's batches are in postgres_purge.py.

Every session sets statement_timeout, lock_timeout (VACUUM FULL takes an ACCESS EXCLUSIVE lock) and
idle_in_transaction_session_timeout (a batch waits for its receipt to be recorded with its transaction
open; an operator that stops there must not hold row locks for long), names itself with application_name
(the operator's identity) and runs in autocommit, so VACUUM is allowed and each DELETE batch is its own
transaction. Every statement passes the connection's fence first. Identifiers are validated at admission
and still composed with sql.Identifier, never formatted into SQL text. If the task running a statement
is cancelled (the maintenance was deleted), the statement is cancelled on the server before the
cancellation goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from rolecall.engines.base import Credentials, EngineError
from rolecall.engines.database import Connection, DatabaseFigures, DatabaseSession, TableFigure, Where, unfenced
from rolecall.engines.postgres_partitions import Partitions
from rolecall.engines.postgres_purge import Purging

DEFAULT_PORT = 5432
LOCK_TIMEOUT_MS = 10_000  # waiting longer than this for a lock fails the step rather than blocking the app
IDLE_IN_TRANSACTION_MS = 60_000  # longer than a status write's timeout with its retries


class PostgresSession(Purging, Partitions):
    def __init__(self, conn: psycopg.AsyncConnection[Any], fence: Callable[[], None] = unfenced) -> None:
        self.conn = conn
        self.fence = fence

    async def is_primary(self) -> bool:
        return not await self.in_recovery()

    async def _run(self, query: sql.SQL | sql.Composed | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.fence()
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(query, params)
                return list(await cur.fetchall()) if cur.description else []
        except asyncio.CancelledError:
            await self.conn.cancel_safe()  # stop the statement on the server, not only our wait for it
            raise
        except psycopg.Error as e:
            raise engine_error(e) from e

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
                                          (sql.Identifier(*t.split(".", 1)).as_string(self.conn),)))[0][0])
        return total

    async def compact(self, full: bool, tables: list[str] | None) -> None:
        verb = sql.SQL("VACUUM (FULL, ANALYZE)") if full else sql.SQL("VACUUM (ANALYZE)")
        if not tables:
            await self._run(verb)
            return
        await self._run(sql.SQL("{} {}").format(verb, sql.SQL(", ").join(sql.Identifier(t) for t in tables)))

    async def _rowcount(self, query: sql.SQL | sql.Composed, params: tuple[Any, ...]) -> int:
        self.fence()
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(query, params)
                return int(cur.rowcount)
        except asyncio.CancelledError:
            await self.conn.cancel_safe()
            raise
        except psycopg.Error as e:
            raise engine_error(e) from e


# SQLSTATEs retrying cannot fix, and what a person changes instead (a statement timeout, 57014, is retried).
FIXES = {
    "42P01": "the table does not exist: correct the name in the spec",
    "42501": "the database user lacks the privilege: grant it, or name a user that has it in the credentials Secret",
    "28P01": "PostgreSQL refuses the password: correct the credentials Secret",
    "28000": "PostgreSQL refuses the user (pg_hba.conf or the role): correct the credentials Secret or the server",
    "3D000": "the database does not exist: correct spec.database",
}


def engine_error(e: psycopg.Error, where: str = "postgresql", answered: bool | None = None) -> EngineError:
    """The driver's error as rolecall's: answered when the server gave a SQLSTATE, with a fix when one is known."""
    sqlstate = getattr(e, "sqlstate", None)
    return EngineError(f"{where}: {str(e).strip() or type(e).__name__}",
                       answered=sqlstate is not None if answered is None else answered, fix=FIXES.get(sqlstate or ""))


@asynccontextmanager
async def session(ip: str, port: int, database: str, credentials: Credentials | None,
                  statement_timeout: float, connect_timeout: float = 10, fence: Callable[[], None] = unfenced,
                  application_name: str = "rolecall") -> AsyncIterator[PostgresSession]:
    user = (credentials.username if credentials else None) or "postgres"
    options = (f"-c statement_timeout={int(statement_timeout * 1000)} -c lock_timeout={LOCK_TIMEOUT_MS} "
               f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} -c TimeZone=UTC")
    try:
        conn = await psycopg.AsyncConnection.connect(
            host=ip, port=port, dbname=database, user=user, password=credentials.password if credentials else None,
            connect_timeout=max(1, int(connect_timeout)), options=options, autocommit=True,
            application_name=application_name[:63])
    except psycopg.Error as e:
        raise engine_error(e, f"postgresql at {ip}:{port}", answered=True) from e  # nothing was sent
    try:
        yield PostgresSession(conn, fence)
    finally:
        await conn.close()


class Postgres:
    one_pod = False  # one primary among replicas, found with pg_is_in_recovery()

    @asynccontextmanager
    async def session(self, where: Where, connection: Connection) -> AsyncIterator[PostgresSession]:
        async with session(where.ip, connection.port or DEFAULT_PORT, connection.database or "postgres",
                           connection.credentials, connection.timeout, fence=connection.fence,
                           application_name=connection.application_name) as s:
            yield s


def _is_a_session(s: PostgresSession) -> DatabaseSession:
    return s  # mypy checks here that PostgresSession offers all of DatabaseSession
