"""PostgreSQL clearOldData: which physical tables hold a table's rows, and batches that delete only old rows.

A `ctid` is unique only inside one physical table, so rows are never picked through a parent: each part (the
table itself, every leaf partition, every inheritance child) is deleted from with `ONLY`, and every DELETE
repeats the cut-off predicate itself, so a row the inner pick did not mean can never match. A batch runs in a
transaction left open until the caller has recorded its transaction id and row count; after a crash
`txid_status()` tells whether it committed. Shapes rolecall cannot delete from exactly are refused in words
before anything is deleted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from rolecall.engines.base import EngineError
from rolecall.engines.database import BatchReceipt, Part, PurgeShape, PurgeTarget
from rolecall.engines.postgres_partitions import DETACH_RECEIPT, candidates, end_transaction

TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")
INTEGER_TYPES = ("smallint", "integer", "bigint")
_MS_THRESHOLD = 100_000_000_000  # 1e11: unix seconds stay below it until year 5138, milliseconds since 1973 above
_RELKINDS = {"v": "a view", "m": "a materialized view", "f": "a foreign table", "S": "a sequence",
             "i": "an index", "I": "an index", "c": "a composite type", "t": "a TOAST table"}
_DELETE_ACTIONS = {"c": "ON DELETE CASCADE: deletes the referencing rows too",
                   "n": "ON DELETE SET NULL: sets the reference to NULL",
                   "d": "ON DELETE SET DEFAULT: sets the reference to its default",
                   "a": "ON DELETE NO ACTION: a batch that deletes a referenced row fails",
                   "r": "ON DELETE RESTRICT: a batch that deletes a referenced row fails"}
_NAME = "(SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " \
        "WHERE c.oid = {})"  # schema-qualified always (regclass::text leaves out a schema on the search path)
_RFC3339 = """to_char(({t}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_TREE = """
WITH RECURSIVE tree(oid) AS (
  SELECT %s::oid UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relrowsecurity, coalesce(i.inhdetachpending, false),
       has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'DELETE'), i.inhparent,
       pg_get_expr(c.relpartbound, c.oid)
FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
ORDER BY c.oid = %s::oid DESC, n.nspname, c.relname"""


def _qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def _refusal(target: PurgeTarget, why: str) -> EngineError:
    return EngineError(f"postgresql: {target.table}: {why}; nothing was deleted")


@dataclass
class _Batch:
    session: Purging
    receipt: BatchReceipt
    done: bool = False

    async def commit(self) -> int:
        self.session.fence()  # refused here, the batch rolls back when its block ends
        self.done = True  # from here on the outcome is COMMIT's
        await end_transaction(self.session, ["COMMIT"], self.receipt,
                              f"the batch of {self.receipt.rows} rows from {self.receipt.part}")
        return self.receipt.rows


class Purging:
    """The clearOldData half of PostgresSession (engines/postgres.py), which provides the statements."""

    conn: psycopg.AsyncConnection[Any]
    fence: Callable[[], None]

    async def _run(self, query: sql.SQL | sql.Composed | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _rowcount(self, query: sql.SQL | sql.Composed, params: tuple[Any, ...]) -> int:
        raise NotImplementedError

    if TYPE_CHECKING:  # from the Partitions half (engines/postgres_partitions.py)
        async def keyed_on(self, column: str, oids: list[int]) -> set[int]: ...

    async def purge_shape(self, target: PurgeTarget) -> PurgeShape:
        schema, _, table = target.table.rpartition(".")
        ident = sql.Identifier(schema, table) if schema else sql.Identifier(table)
        found = await self._run("SELECT to_regclass(%s)::oid", (ident.as_string(self.conn),))
        if not found or found[0][0] is None:
            where = f"in schema {schema}" if schema else "on the search path"
            raise EngineError(f"postgresql: table {target.table} not found {where}")
        oid = int(found[0][0])
        tree = await self._run(_TREE, (oid, oid))
        root = tree[0]
        name = _qualified(root[1], root[2])
        if root[3] in _RELKINDS:
            raise _refusal(target, f"{name} is {_RELKINDS[root[3]]}, not a table that holds rows "
                                   "(clear the table it reads instead)")
        column_type = await self._column_type(target, oid)
        oids = [row[0] for row in tree]
        partitions = candidates(tree, await self.keyed_on(target.column, oids)) if target.drop_whole_partitions else ()
        finishing = {m for w in partitions if w.detaching for m in w.members}  # dropped, not cleared row by row
        notes: list[str] = []
        parts: list[Part] = []
        for _, nsp, rel, kind, rls, detaching, can_select, can_delete, _, _ in tree:
            part = _qualified(nsp, rel)
            if "." in nsp or "." in rel:
                raise _refusal(target, f"the name {part!r} contains a dot, which rolecall's records of a batch "
                                       "cannot tell apart from the schema separator")
            if part in finishing:
                continue
            if kind == "f":
                raise _refusal(target, f"{part} is a foreign table (a partition or child of {name} on another "
                                       "server): rolecall cannot check what a delete there does")
            if detaching:
                raise _refusal(target, f"partition {part} is being detached (an interrupted DETACH PARTITION "
                                       "CONCURRENTLY): finish it with ALTER TABLE ... DETACH PARTITION ... FINALIZE")
            if kind not in ("r", "p"):
                raise _refusal(target, f"{part} is {_RELKINDS.get(kind, 'not a table')}")
            if not (can_select and can_delete):
                raise _refusal(target, f"the database user lacks SELECT or DELETE on {part} (each partition "
                                       "or child table is cleared directly)")
            if rls:
                notes.append(f"row-level security is on for {part}: only rows the database user can see are "
                             "counted and deleted")
            if kind == "r":
                parts.append(Part(part, (nsp, rel)))
        parents = {int(p) for (p,) in await self._run("SELECT DISTINCT inhparent FROM pg_inherits WHERE inhparent = "
                                                      "ANY(%s)", (oids,))}
        notes += await self._delete_side_effects(target, name, oids, parents)
        shape = PurgeShape(target, name, column_type, tuple(parts), tuple(notes), partitions)
        if column_type in INTEGER_TYPES:
            await self._check_magnitude(shape)
        return shape

    async def _column_type(self, target: PurgeTarget, oid: int) -> str:
        rows = await self._run(
            "SELECT format_type(coalesce(nullif(t.typbasetype, 0), t.oid), NULL) FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = %s AND a.attname = %s AND a.attnum > 0 "
            "AND NOT a.attisdropped", (oid, target.column))
        if not rows:
            raise EngineError(f"postgresql: table {target.table} has no column {target.column}")
        kind, fmt, where = str(rows[0][0]), target.timestamp_format, f"{target.table}.{target.column}"
        if kind in TIME_TYPES and fmt is not None:
            raise EngineError(f"postgresql: {where} is {kind}: timestampFormat is only for integer columns "
                              "holding unix time; leave it out")
        if kind in INTEGER_TYPES and fmt not in ("unixSeconds", "unixMilliseconds"):
            raise EngineError(f"postgresql: {where} is {kind}: set timestampFormat to unixSeconds or "
                              "unixMilliseconds to say how it stores time")
        if kind not in TIME_TYPES and kind not in INTEGER_TYPES:
            raise EngineError(f"postgresql: {where} is {kind}, not a timestamp, a date or an integer with "
                              "timestampFormat")
        return kind

    async def _delete_side_effects(self, target: PurgeTarget, name: str, oids: list[int],
                                   parents: set[int]) -> list[str]:
        """Triggers, rules and foreign keys that a DELETE on these tables sets off, in words; refuses what would
        change what a batch deletes (a DELETE rule) or be skipped (a statement trigger on a table with partitions
        or children: the parts are deleted from directly, so it would not fire for their rows)."""
        # _NAME is a fixed fragment; the only value is the parameter.
        rules = await self._run(f"SELECT rulename, {_NAME.format('ev_class')} FROM pg_rewrite WHERE ev_type = '4' "  # noqa: S608
                                "AND ev_class = ANY(%s)", (oids,))
        if rules:
            raise _refusal(target, f"{rules[0][1]} has the DELETE rule {rules[0][0]}: a rewritten DELETE may do "
                                   "something else than delete the rows it names")
        triggers = await self._run(
            f"SELECT tgname, {_NAME.format('tgrelid')}, (tgtype & 1) = 1, tgrelid FROM pg_trigger "  # noqa: S608
            "WHERE tgrelid = ANY(%s) AND NOT tgisinternal AND (tgtype & 8) = 8 AND tgenabled <> 'D' "
            "ORDER BY tgname, 2", (oids,))
        notes: list[str] = []
        statement = [t for t in triggers if not t[2]]
        if skipped := [t for t in statement if int(t[3]) in parents]:
            raise _refusal(target, f"the statement-level ON DELETE trigger {skipped[0][0]} on {skipped[0][1]} "
                                   "would not fire: each partition or child table is cleared directly")
        row_triggers = sorted({t[0] for t in triggers if t[2]})
        if row_triggers:
            notes.append(f"ON DELETE row triggers fire for every deleted row: {', '.join(row_triggers)}")
        if statement:
            notes.append("statement-level ON DELETE triggers fire once per batch: "
                         + ", ".join(sorted({t[0] for t in statement})))
        refs = await self._run(
            f"SELECT DISTINCT {_NAME.format('conrelid')}, conname, confdeltype FROM pg_constraint "  # noqa: S608
            "WHERE contype = 'f' "
            "AND confrelid = ANY(%s) AND conparentid = 0 ORDER BY 1, 2", (oids,))
        notes += [f"{table} references {name} ({constraint}, {_DELETE_ACTIONS.get(action, action)})"
                  for table, constraint, action in refs]
        return notes

    async def _check_magnitude(self, shape: PurgeShape) -> None:
        """Unix seconds and milliseconds differ by a factor of 1000: a column declared as one but holding the
        other would have its cut-off off by that factor, so one value outside the declared range refuses it."""
        fmt, c = shape.target.timestamp_format, sql.Identifier(shape.target.column)
        wrong = sql.SQL("abs({c}) >= %s" if fmt == "unixSeconds" else "abs({c}) < %s").format(c=c)
        rows = await self._run(sql.SQL("SELECT {c} FROM {t} WHERE {c} IS NOT NULL AND {wrong} LIMIT 1").format(
            c=c, t=self._table(shape), wrong=wrong), (_MS_THRESHOLD,))
        if rows:
            raise EngineError(f"postgresql: {shape.target.table}.{shape.target.column} holds {rows[0][0]}, which is "
                              f"not {fmt}; nothing was deleted")

    def _table(self, shape: PurgeShape) -> sql.Identifier:
        schema, _, table = shape.name.partition(".")
        return sql.Identifier(schema, table)

    def _bound(self, shape: PurgeShape) -> str:
        """The cut-off in the column's own type (one %s: the cut-off, RFC 3339). A timestamp without time zone is
        read as UTC; a date is old when its whole (UTC) day is before the cut-off; unix time is an integer,
        rounded so that no row at or after the cut-off is below it."""
        kind, fmt = shape.column_type, shape.target.timestamp_format
        return {
            "timestamp with time zone": "%s::timestamptz",
            "timestamp without time zone": "(%s::timestamptz AT TIME ZONE 'UTC')",
            "date": "(%s::timestamptz AT TIME ZONE 'UTC')::date",
        }.get(kind) or ("ceil(extract(epoch FROM %s::timestamptz)::numeric)::bigint" if fmt == "unixSeconds"
                        else "ceil(extract(epoch FROM %s::timestamptz)::numeric * 1000)::bigint")

    def _older(self, shape: PurgeShape) -> sql.Composed:
        """The predicate `column < cut-off` in the column's own type (see _bound). For unix time it also repeats
        the magnitude check (purge_shape's), so a value of the other unit written since is never taken as old."""
        older = sql.SQL("{c} < " + self._bound(shape)).format(c=sql.Identifier(shape.target.column))
        fmt = shape.target.timestamp_format
        if shape.column_type not in INTEGER_TYPES or fmt is None:
            return older
        unit = sql.SQL("abs({c}) < {n}" if fmt == "unixSeconds" else "abs({c}) >= {n}").format(
            c=sql.Identifier(shape.target.column), n=sql.Literal(_MS_THRESHOLD))
        return sql.SQL("({} AND {})").format(older, unit)

    async def cutoff(self, target: PurgeTarget, older_than_seconds: int) -> str:
        """now() - older_than, computed by the server itself, as RFC 3339 with microseconds: the server reads it
        back exactly, and a person can copy it into spec cutoff."""
        rows = await self._run(sql.SQL("SELECT " + _RFC3339).format(t=sql.SQL("now() - make_interval(secs => %s)")),
                               (older_than_seconds,))
        return str(rows[0][0])

    async def pinned_cutoff(self, target: PurgeTarget, at: str) -> str:
        return str((await self._run(sql.SQL("SELECT " + _RFC3339).format(t=sql.SQL("%s::timestamptz")), (at,)))[0][0])

    async def count_older(self, shape: PurgeShape, cutoff: str) -> int:
        q = sql.SQL("SELECT count(*) FROM {t} WHERE {older}").format(t=self._table(shape), older=self._older(shape))
        return int((await self._run(q, (cutoff,)))[0][0])

    async def count_null(self, shape: PurgeShape) -> int:
        q = sql.SQL("SELECT count(*) FROM {t} WHERE {c} IS NULL").format(
            t=self._table(shape), c=sql.Identifier(shape.target.column))
        return int((await self._run(q))[0][0])

    @asynccontextmanager
    async def delete_batch(self, shape: PurgeShape, part: Part, cutoff: str,
                           limit: int) -> AsyncIterator[_Batch]:
        t, older = sql.Identifier(*part.key), self._older(shape)
        # The inner pick and the DELETE name the same physical table (ONLY), and the DELETE checks the cut-off
        # again: a ctid the pick did not mean, or a row updated since, cannot match.
        q = sql.SQL("DELETE FROM ONLY {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ONLY {t} WHERE {older} "
                    "LIMIT %s)) AND {older}").format(t=t, older=older)
        await self._run("BEGIN")
        batch: _Batch | None = None
        try:
            rows = await self._rowcount(q, (cutoff, limit, cutoff))
            batch = _Batch(self, BatchReceipt(part.name, await self._receipt(), rows))
            yield batch
        finally:
            if batch is None or not batch.done:
                await asyncio.shield(self._rollback())

    async def _receipt(self) -> str:
        """This transaction's id and the server's timeline: a txid is only meaningful on the timeline it was
        given on (a promoted replica may hand the same id to another transaction)."""
        txid, timeline = (await self._run("SELECT txid_current(), (SELECT timeline_id FROM "
                                          "pg_control_checkpoint())"))[0]
        return f"txid:{int(txid)}:tli{int(timeline)}"

    async def _rollback(self) -> None:
        try:
            async with self.conn.cursor() as cur:
                await cur.execute("ROLLBACK")
        except Exception:  # noqa: S110 - a broken connection has rolled back on the server already
            pass

    async def end_stale_sessions(self) -> int:
        rows = await self._run(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
            "AND starts_with(application_name, 'rolecall') AND application_name <> current_setting('application_name') "
            "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")
        return int(rows[0][0])

    async def settle(self, shape: PurgeShape, receipt: BatchReceipt, cutoff: str) -> int:
        """Asks the server whether the recorded transaction committed. One still in progress belongs to a
        session of an operator that stopped (frozen past its Lease, or its connection not yet noticed as
        gone): that session is ended, so it can commit nothing later, and the batch counts as rolled back."""
        if receipt.receipt.startswith(DETACH_RECEIPT):
            return 0  # a detach deletes nothing by itself: the drop that follows it counts the rows
        found = re.fullmatch(r"txid:(\d+)(?::tli(\d+))?", receipt.receipt)
        if found is None:
            raise EngineError(f"postgresql: cannot settle a batch recorded as {receipt.receipt!r}")
        txid = int(found[1])
        timeline = int((await self._run("SELECT timeline_id FROM pg_control_checkpoint()"))[0][0])
        if found[2] is not None and int(found[2]) != timeline:
            raise EngineError(f"postgresql: the batch of {receipt.rows} rows from {receipt.part} ({receipt.receipt}) "
                              f"ran on timeline {found[2]}; the server is now on timeline {timeline} (a failover): "
                              "whether it committed cannot be told, so it is not counted")
        for _ in range(100):
            status = (await self._run("SELECT txid_status(%s)", (txid,)))[0][0]
            if status == "committed":
                return receipt.rows
            if status == "aborted":
                return 0
            if status is None:
                raise EngineError(f"postgresql: whether the batch of {receipt.rows} rows from {receipt.part} "
                                  f"({receipt.receipt}) committed is no longer known to the server")
            await self._run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_xid::text = %s "
                            "AND pid <> pg_backend_pid()", (str(txid & 0xFFFFFFFF),))
            await asyncio.sleep(0.1)
        raise EngineError(f"postgresql: the session holding {receipt.receipt} did not end")


__all__ = ["Purging"]
