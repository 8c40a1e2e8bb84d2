"""Helpers for the engine tests: the operator's own sessions on the real servers the fixtures start."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from rolecall.engines import Credentials
from rolecall.engines.postgres import PostgresSession, session
from testbed import servers

PG_IP = "127.250.0.1"  # beds use 127.10-209.0.0/16


@asynccontextmanager
async def pg_session(conn: psycopg.Connection[Any], user: str = "postgres", password: str = servers.POSTGRES_PASSWORD,
                     **kw: Any) -> AsyncIterator[PostgresSession]:
    """The operator's own session (engines/postgres.py) on the test's database."""
    async with session(PG_IP, 5432, conn.info.dbname, Credentials(password, user), 30, **kw) as s:
        yield s


def rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


async def local_exec(argv: list[str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()
