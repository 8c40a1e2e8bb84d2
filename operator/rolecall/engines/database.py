"""What a database session offers the database roles, whichever engine is behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
