"""SQLite is reached with a fixed argv: no shell, -safe, the path as one argument, identifiers quoted."""

from __future__ import annotations

import asyncio

import pytest

from rolecall.engines.base import EngineError
from rolecall.engines.sqlite import SqliteSession, quoted


class Recorder:
    def __init__(self, answer: str) -> None:
        self.argvs: list[list[str]] = []
        self.answer = answer

    async def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.argvs.append(argv)
        return 0, self.answer, ""


def test_every_call_is_sqlite3_safe_with_the_path_as_one_argument() -> None:
    run = Recorder("0\n")
    db = SqliteSession(run, "/data/app db.sqlite", timestamp_format="unixSeconds")
    asyncio.run(db.check_column("events", "created_at"))
    asyncio.run(db.count_older("events", "created_at", "1700000000"))
    asyncio.run(db.delete_batch("events", "created_at", "1700000000", 10))
    for argv in run.argvs:
        assert argv[:2] == ["sqlite3", "-safe"] and "sh" not in argv and "-c" not in argv
        assert argv[-2] == "/data/app db.sqlite", argv  # one argument, never split or interpolated
        assert len(argv) == 8
    assert '"events"' in run.argvs[-1][-1] and '"created_at"' in run.argvs[-1][-1]


@pytest.mark.parametrize("name", ['x"; DROP TABLE y; --', "a b", "", "1abc", "a" * 64])
def test_identifiers_that_are_not_plain_are_refused_before_any_command(name: str) -> None:
    with pytest.raises(EngineError):
        quoted(name)


def test_a_cut_off_that_is_not_the_declared_shape_never_reaches_sql() -> None:
    run = Recorder("0\n")
    db = SqliteSession(run, "/data/app.db", timestamp_format="iso8601")
    with pytest.raises(EngineError):
        asyncio.run(db.delete_batch("events", "ts", "2026-01-01'); DROP TABLE events; --", 10))
    assert run.argvs == []
