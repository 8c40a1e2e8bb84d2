"""A batch's receipt, recorded before its COMMIT, tells after a crash whether it committed (the database is
asked, not our status); a session still holding an uncommitted batch (a frozen operator) is ended and can
commit nothing later; a fence that refuses stops every statement. Real PostgreSQL and the real sqlite3 CLI."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from enginekit import pg_session
from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines import EngineError
from rolecall.engines.database import PurgeTarget
from rolecall.engines.sqlite import SqliteSession
from rolecall.roles import purge


class Refused(Exception):
    pass


def _seed(pg: psycopg.Connection[Any]) -> None:
    pg.execute("""CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz);
                  INSERT INTO events (created_at) SELECT now() - interval '60 days' FROM generate_series(1, 10);
                  INSERT INTO events (created_at) SELECT now() FROM generate_series(1, 5)""")


TARGET = PurgeTarget("events", "created_at")


def test_a_batch_committed_before_its_checkpoint_settles_as_deleted(pg: psycopg.Connection[Any]) -> None:
    _seed(pg)

    async def run() -> int:
        async with pg_session(pg) as db:
            shape = await db.purge_shape(TARGET)
            cutoff = await db.cutoff(TARGET, 30 * 86400)
            async with db.delete_batch(shape, shape.parts[0], cutoff, 4) as batch:
                receipt = batch.receipt
                await batch.commit()  # ... and the operator dies before writing that it did
        async with pg_session(pg) as db:
            return await db.settle(shape, receipt, cutoff)

    assert asyncio.run(run()) == 4
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (11,)


def test_a_batch_whose_session_died_before_commit_settles_as_nothing(pg: psycopg.Connection[Any]) -> None:
    _seed(pg)

    async def run() -> int:
        async with pg_session(pg) as db:
            shape = await db.purge_shape(TARGET)
            cutoff = await db.cutoff(TARGET, 30 * 86400)
            async with db.delete_batch(shape, shape.parts[0], cutoff, 4) as batch:
                receipt = batch.receipt
                await db.conn.close()  # the operator's connection is gone with the transaction open
        async with pg_session(pg) as db:
            return await db.settle(shape, receipt, cutoff)

    assert asyncio.run(run()) == 0
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (15,)


def test_a_frozen_sessions_open_batch_is_ended_and_cannot_commit_later(pg: psycopg.Connection[Any]) -> None:
    """A leader frozen with its batch uncommitted: the next leader settles the receipt, which ends that session;
    the old leader, waking, cannot commit, and the next leader's batches delete those rows exactly once."""
    _seed(pg)

    async def run() -> tuple[int, str, int]:
        async with pg_session(pg, application_name="old-leader") as old, pg_session(pg) as new:
            shape = await old.purge_shape(TARGET)
            cutoff = await old.cutoff(TARGET, 30 * 86400)
            async with old.delete_batch(shape, shape.parts[0], cutoff, 4) as frozen:
                holders = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'old-leader' "
                                     "AND backend_xid IS NOT NULL").fetchone()
                assert holders == (1,)
                settled = await new.settle(shape, frozen.receipt, cutoff)
                with pytest.raises(EngineError) as late:
                    await frozen.commit()
            async with new.delete_batch(shape, shape.parts[0], cutoff, 100) as batch:
                deleted = await batch.commit()
            return settled, str(late.value), deleted

    settled, late, deleted = asyncio.run(run())
    # The server ended that session: its COMMIT is answered with the termination, so it certainly rolled back.
    assert settled == 0 and "terminating connection due to administrator command" in late
    assert deleted == 10 and pg.execute("SELECT count(*) FROM events").fetchone() == (5,)


def test_a_refusing_fence_stops_the_commit_and_every_later_statement(pg: psycopg.Connection[Any]) -> None:
    _seed(pg)
    leading = {"now": True}

    def fence() -> None:
        if not leading["now"]:
            raise Refused("no longer the leader")

    async def run() -> None:
        async with pg_session(pg, fence=fence) as db:
            shape = await db.purge_shape(TARGET)
            cutoff = await db.cutoff(TARGET, 30 * 86400)
            with pytest.raises(Refused):
                async with db.delete_batch(shape, shape.parts[0], cutoff, 4) as batch:
                    leading["now"] = False  # the Lease was lost while the receipt was being recorded
                    await batch.commit()
            with pytest.raises(Refused):
                await db.count_older(shape, cutoff)

    asyncio.run(run())
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (15,)  # the batch rolled back
    assert pg.execute("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'").fetchone() \
        == (0,)


def test_the_session_names_the_operator_in_application_name(pg: psycopg.Connection[Any]) -> None:
    async def run() -> list[tuple[Any, ...]]:
        async with pg_session(pg, application_name="rolecall-7f3a"):
            return pg.execute("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE "
                              "'rolecall%'").fetchall()

    assert asyncio.run(run()) == [("rolecall-7f3a",)]


def _sqlite_seed(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE events (id INTEGER PRIMARY KEY, created_at INTEGER);"
                           "INSERT INTO events (created_at) VALUES (1000000001), (1000000002), (1000000003), "
                           "(1000000004), (1000000005), (1000000006), (1000000007), (1000000008), (1000000009), "
                           "(1000000010);"
                           "INSERT INTO events (created_at) VALUES (strftime('%s', 'now'));")


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "never ran"])
def test_a_sqlite_batch_settles_by_its_rowid_range(sqlite_db: tuple[Path, SqliteSession], committed: bool) -> None:
    path, db = sqlite_db
    _sqlite_seed(path)
    target = PurgeTarget("events", "created_at", "unixSeconds")

    async def run() -> int:
        shape = await db.purge_shape(target)
        cutoff = await db.cutoff(target, 30 * 86400)
        async with db.delete_batch(shape, shape.parts[0], cutoff, 4) as batch:
            assert batch.receipt.receipt == "rowid:1..4" and batch.receipt.rows == 4
            if committed:
                assert await batch.commit() == 4
        return await db.settle(shape, batch.receipt, cutoff)

    assert asyncio.run(run()) == (4 if committed else 0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (7 if committed else 11,)


def test_a_new_leader_ends_a_stale_leaders_open_batch_before_its_own(pg: psycopg.Connection[Any]) -> None:
    """A leader frozen before it recorded its batch: nothing in status names the batch, but its open transaction
    holds the rows. The next leader's step ends that session (another rolecall process, in a transaction) and
    deletes every old row itself, instead of waiting for the locks until lock_timeout fails the step."""
    _seed(pg)

    async def run() -> tuple[int, str]:
        async with pg_session(pg, application_name="rolecall old") as old, \
                pg_session(pg, application_name="rolecall new") as new:
            shape = await old.purge_shape(TARGET)
            cutoff = await old.cutoff(TARGET, 30 * 86400)
            async with old.delete_batch(shape, shape.parts[0], cutoff, 4) as frozen:
                step = ClearOldData(table="events", timestamp_column="created_at", cutoff=cutoff, batch_size=3)
                result = OperationResult(type="clearOldData")

                async def checkpoint() -> None:
                    return None

                await purge.clear(new, step, result, checkpoint, lambda: None)
                with pytest.raises(EngineError) as late:
                    await frozen.commit()
            return result.rows_deleted or 0, str(late.value)

    deleted, late = asyncio.run(run())
    assert deleted == 10 and "terminating connection due to administrator command" in late
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (5,)
