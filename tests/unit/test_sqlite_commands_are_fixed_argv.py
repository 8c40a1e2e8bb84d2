"""SQLite is reached with a fixed argv: no shell, -safe, the path as one argument, identifiers quoted."""

from __future__ import annotations

import asyncio

import pytest

from rolecall.engines.base import EngineError
from rolecall.engines.database import Part, PurgeShape, PurgeTarget
from rolecall.engines.sqlite import SqliteSession, quoted

SHAPE = PurgeShape(PurgeTarget("events", "created_at", "unixSeconds"), "main.events", "unixSeconds",
                   (Part("main.events", ("main", "events")),))


class Recorder:
    def __init__(self, answer: str) -> None:
        self.argvs: list[list[str]] = []
        self.answer = answer

    async def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.argvs.append(argv)
        return 0, "1|5|3\n" if "min(rowid)" in argv[-1] else self.answer, ""


def test_every_call_is_sqlite3_safe_with_the_path_as_one_argument() -> None:
    run = Recorder("3\n")
    db = SqliteSession(run, "/data/app db.sqlite")

    async def calls() -> None:
        await db.count_older(SHAPE, "2023-11-14T22:13:20Z")
        async with db.delete_batch(SHAPE, SHAPE.parts[0], "2023-11-14T22:13:20Z", 10) as batch:
            await batch.commit()

    asyncio.run(calls())
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
    db = SqliteSession(run, "/data/app.db")
    shape = PurgeShape(PurgeTarget("events", "ts", "iso8601"), "main.events", "iso8601", SHAPE.parts)

    async def delete() -> None:
        async with db.delete_batch(shape, shape.parts[0], "2026-01-01'); DROP TABLE events; --", 10):
            pass

    with pytest.raises(EngineError):
        asyncio.run(delete())
    assert run.argvs == []


def test_a_unix_cut_off_recorded_by_an_earlier_build_is_still_read() -> None:
    """A run left Running by the build before RFC 3339 cut-offs resumes with the cut-off it stored."""
    run = Recorder("3\n")
    db = SqliteSession(run, "/data/app.db")
    assert asyncio.run(db.count_older(SHAPE, "1700000000")) == 3
    assert '("created_at" < 1700000000 AND ' in run.argvs[-1][-1], run.argvs[-1][-1]
