"""SQLite through pod exec of the sqlite3 CLI: fixed argv, the path as one argument, fixed SQL.

The argv is always ["sqlite3", "-safe", "-batch", "-bail", "-cmd", ".timeout N", <path>, <sql>]: no
shell; `-safe` refuses SQL that reaches outside the database (ATTACH, extensions, file functions); the
path is validated at admission (absolute, no `..`, no shell characters); every identifier in the SQL
is validated (letters, digits, _) and double-quoted. The only values embedded in SQL are integers and
a cut-off that SQLite itself computed and that is checked against a strict pattern before it is used.
The one exception to -safe is the literal `VACUUM;`, which SQLite runs through an internal ATTACH.

SQLite has no timestamp type and compares INTEGER with TEXT without complaint, so before deleting
anything the column's values are checked against the declared format (typeof(), magnitude for unix
seconds versus milliseconds, the ISO-8601 UTC text shape).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rolecall.engines.base import EngineError
from rolecall.engines.database import Connection, DatabaseFigures, Exec, Where

BUSY_TIMEOUT_MS = 5000
_MS_THRESHOLD = 100_000_000_000  # 1e11: unix seconds stay below it until year 5138, milliseconds since 1973 above
# Which values match each format (the ones that do not are refused before anything is deleted).
_MATCHES = {
    "unixSeconds": f"typeof({{c}}) IN ('integer', 'real') AND abs({{c}}) < {_MS_THRESHOLD}",
    "unixMilliseconds": f"typeof({{c}}) IN ('integer', 'real') AND abs({{c}}) >= {_MS_THRESHOLD}",
    "iso8601": "typeof({c}) = 'text' AND {c} GLOB "
               "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'",
}
_CUTOFF_SQL = {
    "unixSeconds": "SELECT CAST(strftime('%s', 'now') AS INTEGER) - {n};",
    "unixMilliseconds": "SELECT (CAST(strftime('%s', 'now') AS INTEGER) - {n}) * 1000;",
    "iso8601": "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{n} seconds');",
}
_CUTOFF_SHAPE = {
    "unixSeconds": re.compile(r"^-?\d{1,12}$"),
    "unixMilliseconds": re.compile(r"^-?\d{1,15}$"),
    "iso8601": re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"),
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quoted(identifier: str) -> str:
    if not _IDENTIFIER.match(identifier):  # admission already refused these; a second lock on the door
        raise EngineError(f"sqlite: {identifier!r} is not a plain identifier")
    return f'"{identifier}"'


@dataclass
class SqliteSession:
    run_in_pod: Exec
    path: str
    timestamp_format: str | None = None  # set per clearOldData step

    async def is_primary(self) -> bool:
        return True  # one file in one pod: nothing replicates it

    async def _sql(self, statements: str, safe: bool = True) -> list[str]:
        mode = ["-safe"] if safe else []
        argv = ["sqlite3", *mode, "-batch", "-bail", "-cmd", f".timeout {BUSY_TIMEOUT_MS}", self.path, statements]
        code, out, err = await self.run_in_pod(argv)
        if code != 0:
            raise EngineError(f"sqlite3 {self.path}: {(err or out).strip()[:400] or f'exit code {code}'}")
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

    def _format(self) -> str:
        if self.timestamp_format not in _MATCHES:
            raise EngineError("sqlite: clearOldData needs timestampFormat (unixSeconds, unixMilliseconds or iso8601)")
        return self.timestamp_format

    async def check_column(self, table: str, column: str) -> None:
        fmt, t, c = self._format(), quoted(table), quoted(column)
        match = _MATCHES[fmt].format(c=c)
        # Identifiers are validated and quoted by quoted(); `match` is one of our fixed fragments.
        lines = await self._sql(f"SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT ({match}); "  # noqa: S608
                                f"SELECT quote({c}) FROM {t} WHERE {c} IS NOT NULL AND NOT ({match}) LIMIT 1;")
        bad = int(lines[0]) if lines else 0
        if bad:
            example = lines[1] if len(lines) > 1 else "?"
            raise EngineError(f"sqlite: {bad} values of {table}.{column} are not {fmt} (e.g. {example}); "
                              "nothing was deleted")

    async def cutoff(self, older_than_seconds: int) -> str:
        fmt = self._format()
        lines = await self._sql(_CUTOFF_SQL[fmt].format(n=int(older_than_seconds)))
        value = lines[-1] if lines else ""
        if not _CUTOFF_SHAPE[fmt].match(value):
            raise EngineError(f"sqlite: unexpected cut-off {value!r}")
        return value

    def _literal(self, cutoff: str) -> str:
        fmt = self._format()
        if not _CUTOFF_SHAPE[fmt].match(cutoff):
            raise EngineError(f"sqlite: cut-off {cutoff!r} does not look like {fmt}")
        return f"'{cutoff}'" if fmt == "iso8601" else cutoff

    async def count_older(self, table: str, column: str, cutoff: str) -> int:
        return await self._one_int(f"SELECT count(*) FROM {quoted(table)} WHERE {quoted(column)} < "  # noqa: S608
                                   f"{self._literal(cutoff)};")

    async def delete_batch(self, table: str, column: str, cutoff: str, limit: int) -> int:
        t, c = quoted(table), quoted(column)
        return await self._one_int(
            f"DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE {c} < {self._literal(cutoff)} "  # noqa: S608
            f"LIMIT {int(limit)}); SELECT changes();")


class Sqlite:
    one_pod = True  # the file lives in exactly one pod

    @asynccontextmanager
    async def session(self, where: Where, connection: Connection) -> AsyncIterator[SqliteSession]:
        yield SqliteSession(where.run_in_pod, connection.path or "")
