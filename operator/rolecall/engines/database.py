"""What a database session offers the database roles, whichever engine is behind it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from rolecall.engines.base import Credentials, EngineError

# Runs a fixed argv in the target pod's container (pod exec); returns (exit code, stdout, stderr).
Exec = Callable[[list[str]], Awaitable[tuple[int, str, str]]]


@dataclass(frozen=True)
class Where:
    """One database pod, as each engine reaches it: at its own IP, or by running a fixed argv in it."""

    pod: str
    ip: str
    run_in_pod: Exec


def unfenced() -> None:
    return None


@dataclass(frozen=True)
class Connection:
    """What a spec says about the database in that pod, and the fence every statement passes first."""

    timeout: float
    port: int | None = None
    database: str | None = None
    path: str | None = None
    credentials: Credentials | None = None
    # Raises when this process must not act now (it may no longer lead): called before every statement,
    # so a leader frozen past its Lease that wakes after a takeover sends nothing more.
    fence: Callable[[], None] = unfenced
    application_name: str = "rolecall"  # PostgreSQL: who runs what, in the server's own log and pg_stat_activity


@dataclass(frozen=True)
class PurgeTarget:
    """What a clearOldData step names: a table (`schema.table` or a name on the search path), its time column,
    and how an integer column stores time."""

    table: str
    column: str
    timestamp_format: str | None = None
    drop_whole_partitions: bool = False  # detach and drop partitions entirely older than the cut-off


@dataclass(frozen=True)
class WholePartition:
    """A partition that may hold only rows older than a cut-off: its table is range-partitioned on the time
    column and its upper bound is finite. `whole_partitions` says which ones are, for a given cut-off."""

    part: Part
    parent: Part
    upper: str  # its upper bound, as the server prints it
    members: tuple[str, ...]  # itself and every partition under it (a sub-partitioned one is dropped whole)
    detaching: bool = False  # an earlier DETACH ... CONCURRENTLY did not finish


@dataclass(frozen=True)
class Part:
    """One physical table rows are deleted from: the table itself, a leaf partition or an inheritance child.
    A row is identified within one of these (a ctid, a rowid is unique only there)."""

    name: str  # schema-qualified, for status and messages
    key: tuple[str, ...]  # how the engine names it in SQL (schema, table)


@dataclass(frozen=True)
class PurgeShape:
    """A table as the engine found and checked it: where its rows live and what deleting them sets off."""

    target: PurgeTarget
    name: str  # the table, resolved and schema-qualified
    column_type: str  # as the engine names it, e.g. timestamp with time zone, date, bigint
    parts: tuple[Part, ...]
    notes: tuple[str, ...] = ()  # cascades, triggers, row security: what a person must know before a real run
    partitions: tuple[WholePartition, ...] = ()  # with drop_whole_partitions: the ones that may be dropped


@dataclass(frozen=True)
class BatchReceipt:
    """What a batch deletes if it commits, and how to tell after a crash whether it did (the engine's own
    record: a PostgreSQL transaction id, a SQLite rowid range)."""

    part: str
    receipt: str
    rows: int


class OpenBatch(Protocol):
    """A batch whose DELETE ran in an open transaction: its receipt is recorded, then it is committed."""

    receipt: BatchReceipt

    async def commit(self) -> int:
        """Commits; returns the rows deleted. BatchUnsettled if the outcome cannot be known now."""


class BatchUnsettled(EngineError):
    """A COMMIT whose answer was lost (the connection broke): the receipt settles it later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, answered=False)


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

    async def is_primary(self) -> bool:
        """Whether this database takes writes (a PostgreSQL standby does not)."""

    async def figures(self) -> DatabaseFigures:
        """Size on disk, sessions, and the largest tables' dead-row estimates where the engine has them."""

    async def size(self, tables: list[str] | None) -> int:
        """Bytes on disk of these tables (with indexes), or of the whole database."""

    async def compact(self, full: bool, tables: list[str] | None) -> None:
        """VACUUM (ANALYZE), VACUUM FULL, or SQLite's VACUUM."""

    async def purge_shape(self, target: PurgeTarget) -> PurgeShape:
        """The table's physical parts and what a delete sets off; refuses (EngineError, in words) every shape
        and column it cannot delete from exactly: views, foreign tables, columns that are not a time."""

    async def cutoff(self, target: PurgeTarget, older_than_seconds: int) -> str:
        """now() - older_than, computed by the database itself, in terms its statements read back exactly."""

    async def pinned_cutoff(self, target: PurgeTarget, at: str) -> str:
        """A cut-off given as an RFC 3339 time (a plan's recorded one), in the same terms as cutoff()."""

    async def count_older(self, shape: PurgeShape, cutoff: str) -> int:
        """Rows whose time is older than the cut-off (NULL times never are)."""

    async def count_null(self, shape: PurgeShape) -> int:
        """Rows whose time is NULL: never deleted."""

    def delete_batch(self, shape: PurgeShape, part: Part, cutoff: str,
                     limit: int) -> AbstractAsyncContextManager[OpenBatch]:
        """Deletes at most `limit` rows of `part` older than the cut-off in a transaction left open: the caller
        records the receipt, then commits. Leaving the block without a commit rolls back."""

    async def whole_partitions(self, shape: PurgeShape, cutoff: str) -> list[WholePartition]:
        """The partitions entirely older than the cut-off (none unless the target asks for them), each with how it
        is detached and the lock that takes, for the plan."""

    async def describe_detach(self, partition: WholePartition) -> str:
        """How `partition` is detached and which lock that takes, in words."""

    def detach(self, partition: WholePartition) -> AbstractAsyncContextManager[OpenBatch]:
        """Detaches a partition (CONCURRENTLY where the server allows it; FINALIZE for an interrupted one) when the
        yielded batch, whose receipt names it, is committed. Its rows are counted when it is dropped."""

    def drop_detached(self, name: str) -> AbstractAsyncContextManager[OpenBatch | None]:
        """Counts and drops a table detached by `detach`, in one transaction left open until its receipt is
        recorded; yields None when there is nothing to drop (gone already, or still attached)."""

    async def end_stale_sessions(self) -> int:
        """Ends the sessions of other rolecall processes that hold a transaction on this database (only the leader
        acts, so they belong to a process that stopped leading: frozen, or cut off) and so may hold row locks a
        batch needs; returns how many."""

    async def settle(self, shape: PurgeShape, receipt: BatchReceipt, cutoff: str) -> int:
        """The rows a batch recorded before a crash really deleted: its rows if it committed, else 0."""


class DatabaseEngine(Protocol):
    """An entry of engines.DATABASE_ENGINES: how to find the one database pod and open a session on it."""

    # The database is a file in exactly one pod (SQLite), rather than one primary among replicas.
    one_pod: bool

    def session(self, where: Where, connection: Connection) -> AbstractAsyncContextManager[DatabaseSession]:
        """A session on the database in that pod."""
