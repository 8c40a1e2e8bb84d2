"""PostgreSQL clearOldData with wholePartitions: DetachAndDrop: partitions entirely older than the cut-off are
detached and dropped instead of deleted row by row, as a DBA (or pg_partman's retention) does.

A partition qualifies when its table is range-partitioned on the time column alone and its upper bound is at
or before the cut-off, compared by the server in the column's own type. It is detached CONCURRENTLY where the
server allows it (PostgreSQL 14 or later, and no default partition, which would need an ACCESS EXCLUSIVE
lock), else with a plain DETACH, which takes an ACCESS EXCLUSIVE lock on the parent for its short duration.
The detach is recorded before it runs, so a kill after it finds the detached table again; a kill in the
middle of a concurrent detach leaves it pending, which FINALIZE completes. The detached table is then counted
and dropped in one transaction whose id is recorded before its COMMIT, like any batch.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import sql

from rolecall.engines.base import EngineError
from rolecall.engines.database import BatchReceipt, BatchUnsettled, Part, PurgeShape, WholePartition

_UPPER = re.compile(r"\bTO \((.+)\)$")
_KEYED = """
SELECT p.partrelid FROM pg_partitioned_table p JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attname = %s
WHERE p.partrelid = ANY(%s) AND p.partstrat = 'r' AND p.partnatts = 1 AND p.partattrs[0] = a.attnum"""
DETACH_RECEIPT = "detach:"


class _Runs(Protocol):
    async def _run(self, query: sql.SQL | sql.Composed | str,
                   params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...


async def end_transaction(session: _Runs, statements: list[sql.Composed | str], receipt: BatchReceipt,
                          what: str) -> None:
    """Runs what ends a recorded transaction (a COMMIT; a DROP and a COMMIT; a DETACH). An error the server
    answered (a SQLSTATE) rolled it back and is raised as it is; a lost answer leaves it to its receipt."""
    try:
        for statement in statements:
            await session._run(statement)
    except EngineError as e:
        if e.answered:
            raise
        raise BatchUnsettled(f"{e}: {what} is settled by its {receipt.receipt}") from e


def candidates(tree: list[tuple[Any, ...]], keyed: set[int]) -> tuple[WholePartition, ...]:
    """From the table's tree (oid, schema, name, kind, ..., detaching, ..., parent oid, bound), the partitions of
    tables range-partitioned on the column (`keyed`) that have a finite upper bound."""
    by_oid = {int(r[0]): r for r in tree}
    children: dict[int, list[int]] = {}
    for r in tree:
        if r[8] is not None:
            children.setdefault(int(r[8]), []).append(int(r[0]))

    def members(oid: int) -> tuple[str, ...]:
        r = by_oid[oid]
        return (f"{r[1]}.{r[2]}", *[m for c in children.get(oid, []) for m in members(c)])

    found = []
    for r in tree:
        parent, bound = r[8], r[9] or ""
        upper = _UPPER.search(bound)
        if parent is None or int(parent) not in keyed or upper is None or upper[1] == "MAXVALUE":
            continue
        value = upper[1]
        if value.startswith("'") and value.endswith("'"):
            value = value[1:-1].replace("''", "'")
        p = by_oid[int(parent)]
        found.append(WholePartition(Part(f"{r[1]}.{r[2]}", (r[1], r[2])), Part(f"{p[1]}.{p[2]}", (p[1], p[2])),
                                    value, members(int(r[0])), bool(r[5])))
    return tuple(found)


@dataclass
class _Detach:
    session: Partitions
    partition: WholePartition
    receipt: BatchReceipt

    async def commit(self) -> int:
        w, s = self.partition, self.session
        parent, part = sql.Identifier(*w.parent.key), sql.Identifier(*w.part.key)
        verb = "FINALIZE" if w.detaching else "CONCURRENTLY" if await s._concurrent_detach(w) else ""
        detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {} " + verb).format(parent, part)
        await end_transaction(s, [detach], self.receipt, f"whether {w.part.name} was detached")
        return 0  # nothing is counted until the detached table is dropped


@dataclass
class _Drop:
    session: Partitions
    receipt: BatchReceipt
    done: bool = False

    async def commit(self) -> int:
        s = self.session
        s.fence()
        self.done = True
        drop = sql.SQL("DROP TABLE {}").format(sql.Identifier(*self.receipt.part.split(".", 1)))
        await end_transaction(s, [drop, "COMMIT"], self.receipt,
                              f"the drop of {self.receipt.part} ({self.receipt.rows} rows)")
        return self.receipt.rows


class Partitions:
    """The partition-dropping part of PostgresSession (engines/postgres.py), which provides the statements."""

    conn: psycopg.AsyncConnection[Any]
    fence: Callable[[], None]

    if TYPE_CHECKING:  # from PostgresSession and its Purging half
        async def _run(self, query: sql.SQL | sql.Composed | str,
                       params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

        def _bound(self, shape: PurgeShape) -> str: ...

        async def _rollback(self) -> None: ...

        async def _receipt(self) -> str: ...

    async def keyed_on(self, column: str, oids: list[int]) -> set[int]:
        return {int(r[0]) for r in await self._run(_KEYED, (column, oids))}

    async def whole_partitions(self, shape: PurgeShape, cutoff: str) -> list[WholePartition]:
        older: list[WholePartition] = []
        for w in shape.partitions:
            q = sql.SQL("SELECT %s::" + shape.column_type + " <= " + self._bound(shape))
            if (await self._run(q, (w.upper, cutoff)))[0][0]:
                older.append(w)
        # A partition under one that is dropped whole goes with it.
        return [w for w in older if not any(w.part.name in o.members and o is not w for o in older)]

    async def _concurrent_detach(self, w: WholePartition) -> bool:
        rows = await self._run("SELECT current_setting('server_version_num')::int >= 140000 AND NOT EXISTS (SELECT 1 "
                               "FROM pg_partitioned_table WHERE partrelid = %s::regclass AND partdefid <> 0)",
                               (sql.Identifier(*w.parent.key).as_string(self.conn),))
        return bool(rows[0][0])

    async def describe_detach(self, partition: WholePartition) -> str:
        if partition.detaching:
            return f"{partition.part.name}: its interrupted detach is finished (DETACH PARTITION ... FINALIZE)"
        if await self._concurrent_detach(partition):
            return (f"{partition.part.name}: detached CONCURRENTLY (a SHARE UPDATE EXCLUSIVE lock on "
                    f"{partition.parent.name}), then dropped")
        return (f"{partition.part.name}: detached with an ACCESS EXCLUSIVE lock on {partition.parent.name} for the "
                "detach itself (PostgreSQL before 14, or a default partition exists), then dropped")

    @asynccontextmanager
    async def detach(self, partition: WholePartition) -> AsyncIterator[_Detach]:
        yield _Detach(self, partition, BatchReceipt(partition.part.name, DETACH_RECEIPT + partition.part.name, 0))

    @asynccontextmanager
    async def drop_detached(self, name: str) -> AsyncIterator[_Drop | None]:
        schema, _, table = name.partition(".")
        standalone = await self._run(
            "SELECT NOT c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (schema, table))
        if not standalone or not standalone[0][0]:
            yield None  # dropped already, or (a kill before its detach) still attached: dropped on the next pass
            return
        await self._run("BEGIN")
        drop: _Drop | None = None
        try:
            t = sql.Identifier(schema, table)
            await self._run(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(t))
            rows = int((await self._run(sql.SQL("SELECT count(*) FROM {}").format(t)))[0][0])
            drop = _Drop(self, BatchReceipt(name, await self._receipt(), rows))
            yield drop
        finally:
            if drop is None or not drop.done:
                await self._rollback()


__all__ = ["DETACH_RECEIPT", "Partitions", "candidates"]
