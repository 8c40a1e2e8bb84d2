"""SQLite through pod exec of the sqlite3 CLI: fixed argv, the path as one argument, fixed SQL.

The argv is always ["sqlite3", "-safe", "-batch", "-bail", "-cmd", ".timeout N", <path>, <sql>]: no
shell; `-safe` refuses SQL that reaches outside the database (ATTACH, extensions, file functions); the
path is validated at admission (absolute, no `..`, no shell characters); every identifier in the SQL
is validated (letters, digits, _) and double-quoted. The only values embedded in SQL are integers and
the cut-off, which is kept as RFC 3339 (computed by SQLite's own clock, or pinned by the spec) and turned
into digits or a fixed `YYYY-MM-DDTHH:MM:SS` text after a strict pattern check.
The one exception to -safe is the literal `VACUUM;`, which SQLite runs through an internal ATTACH.

SQLite has no timestamp type and compares INTEGER with TEXT without complaint, so before deleting
anything the column's values are checked against the declared format (typeof(), magnitude for unix
seconds versus milliseconds, the ISO-8601 UTC text shape). ISO-8601 text is compared by its whole-second
prefix (`YYYY-MM-DDTHH:MM:SS`), so a row with a fraction in the cut-off's own second is never older.

A transaction cannot span two execs, so a batch is first picked as a rowid range (its lowest and highest
rowid and its row count: the receipt recorded before the delete), then deleted by that range and the
cut-off in one statement with foreign keys enforced (the sqlite3 CLI leaves them off); after a crash the
rows of that range still older than the cut-off tell whether it ran.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rolecall.engines.base import EngineError
from rolecall.engines.database import (
    BatchReceipt,
    BatchUnsettled,
    Connection,
    DatabaseFigures,
    DatabaseSession,
    Exec,
    Part,
    PurgeShape,
    PurgeTarget,
    Where,
    WholePartition,
    unfenced,
)

BUSY_TIMEOUT_MS = 5000
_MS_THRESHOLD = 100_000_000_000  # 1e11: unix seconds stay below it until year 5138, milliseconds since 1973 above
# Which values match each format (the ones that do not are refused before anything is deleted).
_MATCHES = {
    "unixSeconds": f"typeof({{c}}) IN ('integer', 'real') AND abs({{c}}) < {_MS_THRESHOLD}",
    "unixMilliseconds": f"typeof({{c}}) IN ('integer', 'real') AND abs({{c}}) >= {_MS_THRESHOLD}",
    "iso8601": "typeof({c}) = 'text' AND {c} GLOB "
               "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'",
}
# now() - older_than by SQLite's own clock, as RFC 3339 (whole seconds): what status records and spec cutoff takes.
_CUTOFF_SQL = "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{n} seconds');"
_LEGACY_UNIX = re.compile(r"^-?\d{1,15}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_KINDS = {"view": "a view", "virtual": "a virtual table", "shadow": "a virtual table's shadow table"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quoted(identifier: str) -> str:
    if not _IDENTIFIER.fullmatch(identifier):  # admission already refused these; a second lock on the door
        raise EngineError(f"sqlite: {identifier!r} is not a plain identifier")
    return f'"{identifier}"'


def _table(name: str) -> str:
    """A table of the main database: `t` or `main.t` (attached databases are out of reach under -safe)."""
    schema, _, table = name.rpartition(".")
    if schema and schema.lower() != "main":
        raise EngineError(f"sqlite: {name}: only tables of the main database can be cleared (not {schema}); "
                          "nothing was deleted")
    return table


@dataclass
class _Batch:
    session: SqliteSession
    shape: PurgeShape
    receipt: BatchReceipt
    bounds: tuple[int, int]
    cutoff: str

    async def commit(self) -> int:
        s, t, c = self.session, quoted(_table(self.shape.target.table)), quoted(self.shape.target.column)
        lo, hi = self.bounds
        s.fence()
        try:
            # Foreign keys as the schema declares them (a cascade runs, a reference refuses the batch).
            return await s._one_int(f"PRAGMA foreign_keys = ON; DELETE FROM {t} WHERE rowid BETWEEN {lo} AND {hi} "  # noqa: S608
                                    f"AND {c} < {s._literal(self.shape, self.cutoff)}; SELECT changes();")
        except EngineError as e:
            if e.answered:
                raise  # sqlite3 answered with an error: the statement rolled back
            raise BatchUnsettled(f"{e}: the batch {self.receipt.receipt} is settled by recounting it") from e
        except Exception as e:  # the exec broke off: whether the statement ran, the range will tell
            raise BatchUnsettled(f"sqlite3 {s.path}: {type(e).__name__}: {e}") from e


@dataclass
class SqliteSession:
    run_in_pod: Exec
    path: str
    fence: Callable[[], None] = field(default=unfenced)

    async def is_primary(self) -> bool:
        return True  # one file in one pod: nothing replicates it

    async def _sql(self, statements: str, safe: bool = True) -> list[str]:
        self.fence()
        mode = ["-safe"] if safe else []
        argv = ["sqlite3", *mode, "-batch", "-bail", "-cmd", f".timeout {BUSY_TIMEOUT_MS}", self.path, statements]
        code, out, err = await self.run_in_pod(argv)
        if code != 0:  # a negative code: the exec did not see sqlite3 finish (it may still commit)
            raise EngineError(f"sqlite3 {self.path}: {(err or out).strip()[:400] or f'exit code {code}'}",
                              answered=code > 0)
        return [line for line in out.splitlines() if line != ""]

    async def _one_int(self, statements: str) -> int:
        lines = await self._sql(statements)
        try:
            return int(lines[-1])
        except (IndexError, ValueError) as e:
            raise EngineError(f"sqlite3 {self.path}: unexpected answer {lines[-3:]!r}") from e

    async def figures(self) -> DatabaseFigures:
        return DatabaseFigures(size_bytes=await self.size(None))

    async def size(self, tables: list[str] | None) -> int:
        # The file's size: SQLite keeps no per-table sizes without the dbstat extension.
        return await self._one_int("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size();")

    async def compact(self, full: bool, tables: list[str] | None) -> None:
        # The whole file (tables and full do not apply). A fixed literal, so -safe, which would refuse
        # VACUUM's internal ATTACH, guards nothing here.
        await self._sql("VACUUM;", safe=False)

    @staticmethod
    def _format(target: PurgeTarget) -> str:
        if target.timestamp_format not in _MATCHES:
            raise EngineError("sqlite: clearOldData needs timestampFormat (unixSeconds, unixMilliseconds or iso8601)")
        return target.timestamp_format

    async def purge_shape(self, target: PurgeTarget) -> PurgeShape:
        fmt, name = self._format(target), _table(target.table)
        if target.drop_whole_partitions:
            raise EngineError("sqlite: wholePartitions DetachAndDrop is for PostgreSQL's partitioned tables; SQLite "
                              "has no partitions (leave it at Delete)")
        t, c = quoted(name), quoted(target.column)
        lit = f"'{name}'"  # validated by quoted(): letters, digits and _ only
        lines = await self._sql(
            f"SELECT 'kind|' || type || '|' || wr FROM pragma_table_list WHERE schema = 'main' AND name = {lit} "  # noqa: S608
            f"COLLATE NOCASE; SELECT 'column|' || count(*) FROM pragma_table_info({lit}) WHERE name = "
            f"'{target.column}' COLLATE NOCASE; SELECT 'trigger|' || name FROM sqlite_master WHERE type = 'trigger' "
            f"AND tbl_name = {lit} COLLATE NOCASE AND sql LIKE '%DELETE%' ORDER BY name; SELECT 'reference|' || "
            f"m.name || '|' || f.on_delete FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE "
            f"m.type = 'table' AND f.\"table\" = {lit} COLLATE NOCASE ORDER BY m.name;")
        facts = [line.split("|") for line in lines]
        kind = next((f[1:] for f in facts if f[0] == "kind"), None)
        if kind is None:
            raise EngineError(f"sqlite: table {target.table} not found")
        if kind[0] != "table":
            raise EngineError(f"sqlite: {target.table} is {_KINDS.get(kind[0], kind[0])}, not a table that holds "
                              "rows; nothing was deleted")
        if kind[1] == "1":
            raise EngineError(f"sqlite: {target.table} is a WITHOUT ROWID table: it has no rowid to record batches "
                              "by; nothing was deleted")
        if next((f[1] for f in facts if f[0] == "column"), "0") == "0":
            raise EngineError(f"sqlite: table {target.table} has no column {target.column}")
        match = _MATCHES[fmt].format(c=c)
        # Identifiers are validated and quoted by quoted(); `match` is one of our fixed fragments.
        bad = await self._sql(f"SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT ({match}); "  # noqa: S608
                              f"SELECT quote({c}) FROM {t} WHERE {c} IS NOT NULL AND NOT ({match}) LIMIT 1;")
        if bad and int(bad[0]):
            example = bad[1] if len(bad) > 1 else "?"
            raise EngineError(f"sqlite: {bad[0]} values of {target.table}.{target.column} are not {fmt} "
                              f"(e.g. {example}); nothing was deleted")
        notes = []
        if triggers := [f[1] for f in facts if f[0] == "trigger"]:
            notes.append(f"ON DELETE triggers fire for every deleted row: {', '.join(triggers)}")
        notes += [f"{f[1]} references {name} (ON DELETE {f[2]}; foreign keys are enforced while deleting)"
                  for f in facts if f[0] == "reference"]
        return PurgeShape(target, f"main.{name}", fmt, (Part(f"main.{name}", ("main", name)),), tuple(notes))

    async def cutoff(self, target: PurgeTarget, older_than_seconds: int) -> str:
        self._format(target)
        lines = await self._sql(_CUTOFF_SQL.format(n=int(older_than_seconds)))
        value = lines[-1] if lines else ""
        if not _RFC3339.match(value):
            raise EngineError(f"sqlite: unexpected cut-off {value!r}")
        return value

    async def pinned_cutoff(self, target: PurgeTarget, at: str) -> str:
        self._format(target)
        return self._utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def _utc(at: str) -> dt.datetime:
        try:
            return dt.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(dt.UTC)
        except ValueError as e:
            raise EngineError(f"sqlite: cut-off {at!r} is not an RFC 3339 time") from e

    def _literal(self, shape: PurgeShape, cutoff: str) -> str:
        """The cut-off (RFC 3339, as recorded) as an SQL literal in the column's terms, rounded so that no row at or
        after it is older: unix time exactly (a decimal where the cut-off has a fraction); ISO-8601 text down to its
        second, compared by the whole-second prefix (module docstring). Only digits, a point and that fixed shape
        ever reach the SQL."""
        fmt = self._format(shape.target)
        if fmt != "iso8601" and _LEGACY_UNIX.match(cutoff):
            return cutoff  # recorded in the column's terms by an earlier build, for a run it left Running
        if not _RFC3339.match(cutoff):
            raise EngineError(f"sqlite: cut-off {cutoff!r} is not an RFC 3339 time in UTC")
        t = self._utc(cutoff)
        if fmt == "iso8601":
            return f"'{t.strftime('%Y-%m-%dT%H:%M:%S')}'"
        micros = (t - _EPOCH) // dt.timedelta(microseconds=1)
        unit = 1_000_000 if fmt == "unixSeconds" else 1_000
        whole, part = divmod(micros, unit)  # exact, so REAL values compare right too (not rounded up)
        return f"{whole}.{part:0{len(str(unit)) - 1}d}" if part else str(whole)

    def _older(self, shape: PurgeShape, cutoff: str) -> str:
        """`column < cut-off`, and the declared format's check again (purge_shape's): a value of another type
        or unit written since (an INTEGER sorts before any TEXT) is never taken as old."""
        c = quoted(shape.target.column)
        return f"({c} < {self._literal(shape, cutoff)} AND {_MATCHES[self._format(shape.target)].format(c=c)})"

    async def count_older(self, shape: PurgeShape, cutoff: str) -> int:
        return await self._one_int(f"SELECT count(*) FROM {quoted(_table(shape.target.table))} "  # noqa: S608
                                   f"WHERE {self._older(shape, cutoff)};")

    async def count_null(self, shape: PurgeShape) -> int:
        t, c = quoted(_table(shape.target.table)), quoted(shape.target.column)
        return await self._one_int(f"SELECT count(*) FROM {t} WHERE {c} IS NULL;")  # noqa: S608

    @asynccontextmanager
    async def delete_batch(self, shape: PurgeShape, part: Part, cutoff: str, limit: int) -> AsyncIterator[_Batch]:
        t = quoted(_table(shape.target.table))
        lines = await self._sql(f"SELECT coalesce(min(rowid), 0) || '|' || coalesce(max(rowid), -1) || '|' || "  # noqa: S608
                                f"count(*) FROM (SELECT rowid FROM {t} WHERE {self._older(shape, cutoff)} "
                                f"ORDER BY rowid LIMIT {int(limit)});")
        try:
            lo, hi, rows = (int(v) for v in lines[-1].split("|"))
        except (IndexError, ValueError) as e:
            raise EngineError(f"sqlite3 {self.path}: unexpected answer {lines[-3:]!r}") from e
        yield _Batch(self, shape, BatchReceipt(part.name, f"rowid:{lo}..{hi}", rows), (lo, hi), cutoff)

    async def whole_partitions(self, shape: PurgeShape, cutoff: str) -> list[WholePartition]:
        return []  # SQLite has no partitions (purge_shape refuses DetachAndDrop)

    async def describe_detach(self, partition: WholePartition) -> str:
        raise EngineError("sqlite: no partitions")

    @asynccontextmanager
    async def detach(self, partition: WholePartition) -> AsyncIterator[_Batch]:
        raise EngineError("sqlite: no partitions")
        yield  # pragma: no cover - a generator for the context manager

    @asynccontextmanager
    async def drop_detached(self, name: str) -> AsyncIterator[_Batch | None]:
        raise EngineError("sqlite: no partitions")
        yield None  # pragma: no cover

    async def end_stale_sessions(self) -> int:
        return 0  # each exec is its own process and statement: nothing stays open between two

    async def settle(self, shape: PurgeShape, receipt: BatchReceipt, cutoff: str) -> int:
        """The recorded range's rows still older than the cut-off: all of them if the delete never ran."""
        found = re.fullmatch(r"rowid:(-?\d+)\.\.(-?\d+)", receipt.receipt)
        if found is None:
            raise EngineError(f"sqlite: cannot settle a batch recorded as {receipt.receipt!r}")
        left = await self._one_int(f"SELECT count(*) FROM {quoted(_table(shape.target.table))} WHERE rowid "  # noqa: S608
                                   f"BETWEEN {int(found[1])} AND {int(found[2])} AND {self._older(shape, cutoff)};")
        return max(0, receipt.rows - left)


class Sqlite:
    one_pod = True  # the file lives in exactly one pod

    @asynccontextmanager
    async def session(self, where: Where, connection: Connection) -> AsyncIterator[SqliteSession]:
        yield SqliteSession(where.run_in_pod, connection.path or "", connection.fence)


def _is_a_session(s: SqliteSession) -> DatabaseSession:
    return s  # mypy checks here that SqliteSession offers all of DatabaseSession
