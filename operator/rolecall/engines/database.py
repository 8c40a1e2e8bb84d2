"""What a database session offers the database roles, whichever engine is behind it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from rolecall.engines.base import Credentials

# Runs a fixed argv in the target pod's container (pod exec); returns (exit code, stdout, stderr).
Exec = Callable[[list[str]], Awaitable[tuple[int, str, str]]]


@dataclass(frozen=True)
class Where:
    """One database pod, as each engine reaches it: at its own IP, or by running a fixed argv in it."""

    pod: str
    ip: str
    run_in_pod: Exec


@dataclass(frozen=True)
class Connection:
    """What a spec says about the database in that pod."""

    timeout: float
    port: int | None = None
    database: str | None = None
    path: str | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True)
class TableFigure:
    table: str
    dead_tuples: int
    live_tuples: int


@dataclass(frozen=True)
class DatabaseFigures:
    size_bytes: int
    connections: int | None = None  # SQLite has no server and so no sessions to count
    largest_tables: list[TableFigure] = field(default_factory=list)


class DatabaseSession(Protocol):
    """One session on the one database a role acts on. Identifiers are validated before they get here."""

    timestamp_format: str | None  # how a clearOldData column stores time, where the engine needs to be told

    async def is_primary(self) -> bool:
        """Whether this database takes writes (a PostgreSQL standby does not)."""

    async def figures(self) -> DatabaseFigures:
        """Size on disk, sessions, and the largest tables' dead-row estimates where the engine has them."""

    async def size(self, tables: list[str] | None) -> int:
        """Bytes on disk of these tables (with indexes), or of the whole database."""

    async def compact(self, full: bool, tables: list[str] | None) -> None:
        """VACUUM (ANALYZE), VACUUM FULL, or SQLite's VACUUM."""

    async def check_column(self, table: str, column: str) -> None:
        """Refuses (EngineError) a column whose values cannot be compared with a cut-off in time."""

    async def cutoff(self, older_than_seconds: int) -> str:
        """now() - older_than, computed by the database itself, in the column's own terms."""

    async def count_older(self, table: str, column: str, cutoff: str) -> int:
        """Rows whose time is older than the cut-off."""

    async def delete_batch(self, table: str, column: str, cutoff: str, limit: int) -> int:
        """Deletes at most `limit` rows older than the cut-off in one transaction; returns how many."""


class DatabaseEngine(Protocol):
    """An entry of engines.DATABASE_ENGINES: how to find the one database pod and open a session on it."""

    # The database is a file in exactly one pod (SQLite), rather than one primary among replicas.
    one_pod: bool

    def session(self, where: Where, connection: Connection) -> AbstractAsyncContextManager[DatabaseSession]:
        """A session on the database in that pod."""
