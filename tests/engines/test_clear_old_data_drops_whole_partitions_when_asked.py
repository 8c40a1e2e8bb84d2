"""wholePartitions: DetachAndDrop on real PostgreSQL: partitions entirely older than the cut-off are detached
(CONCURRENTLY where allowed, the plan says which lock) and dropped, straddling ones are cleared row by row,
rowsDeleted counts both, nothing newer goes; a kill after a detach, and a detach interrupted half-way, are
finished by the next run."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import psycopg
import pytest

from enginekit import PG_IP, pg_session
from harness import wait_for
from rolecall.api.v1alpha1.database import BatchRecord, ClearOldData, OperationResult
from rolecall.engines import EngineError
from rolecall.roles import purge
from testbed import servers

MONTHS = """
CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at);
CREATE TABLE events_m1 PARTITION OF events FOR VALUES FROM (now() - interval '90 days') TO (now() - interval '60 days');
CREATE TABLE events_m2 PARTITION OF events FOR VALUES FROM (now() - interval '60 days') TO (now() - interval '40 days')
    PARTITION BY LIST (payload);
CREATE TABLE events_m2a PARTITION OF events_m2 FOR VALUES IN ('old');
CREATE TABLE events_m2b PARTITION OF events_m2 DEFAULT;
CREATE TABLE events_m3 PARTITION OF events FOR VALUES FROM (now() - interval '40 days') TO (now() - interval '20 days');
CREATE TABLE events_now PARTITION OF events FOR VALUES FROM (now() - interval '20 days') TO (MAXVALUE);
INSERT INTO events (created_at, payload) SELECT now() - interval '85 days' + g * interval '1 hour', 'old'
    FROM generate_series(1, 40) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '55 days' + g * interval '1 hour', 'old'
    FROM generate_series(1, 30) g;
INSERT INTO events (created_at, payload) SELECT now() - interval '55 days', 'other' FROM generate_series(1, 5);
INSERT INTO events (created_at, payload) SELECT now() - interval '35 days', 'old' FROM generate_series(1, 7);
INSERT INTO events (created_at, payload) SELECT now() - interval '25 days', 'mid' FROM generate_series(1, 6);
INSERT INTO events (created_at, payload) SELECT now() - interval '1 day', 'new' FROM generate_series(1, 9);
"""
STEP = ClearOldData(table="events", timestamp_column="created_at", older_than="30d", batch_size=4,
                    whole_partitions="DetachAndDrop")
OLDER = 40 + 30 + 5 + 7  # events_m1, events_m2 (both sub-partitions), the older rows of events_m3


async def _checkpoint() -> None:
    return None


def _tables(pg: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in pg.execute("SELECT relname FROM pg_class WHERE relname LIKE 'events%' AND relkind IN "
                                     "('r', 'p')").fetchall()}


@pytest.mark.parametrize("default", [False, True], ids=["concurrently", "with a default partition"])
def test_older_partitions_are_dropped_and_the_rest_deleted_in_batches(pg: psycopg.Connection[Any],
                                                                      default: bool) -> None:
    pg.execute(MONTHS)
    if default:
        pg.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")

    async def run() -> tuple[OperationResult, OperationResult]:
        planned, done = OperationResult(type="clearOldData"), OperationResult(type="clearOldData")
        async with pg_session(pg) as db:
            await purge.plan(db, STEP, planned)
            await purge.clear(db, STEP.model_copy(update={"older_than": None, "cutoff": planned.cutoff}), done,
                              _checkpoint, lambda: None)
        return planned, done

    planned, done = asyncio.run(run())
    lock = ("detached with an ACCESS EXCLUSIVE lock on public.events" if default
            else "detached CONCURRENTLY (a SHARE UPDATE EXCLUSIVE lock on public.events)")
    drops = [n for n in planned.notes or [] if n.startswith("drops whole partition")]
    assert drops == [f"drops whole partition public.events_m1: {lock}, then dropped" if not default else
                     f"drops whole partition public.events_m1: {lock} for the detach itself (PostgreSQL before 14, "
                     "or a default partition exists), then dropped",
                     f"drops whole partition public.events_m2: {lock}, then dropped" if not default else
                     f"drops whole partition public.events_m2: {lock} for the detach itself (PostgreSQL before 14, "
                     "or a default partition exists), then dropped"], drops
    assert planned.partitions_dropped == done.partitions_dropped == 2
    assert planned.matched_at_start == done.rows_deleted == OLDER and done.remaining == 0, done
    assert dict(pg.execute("SELECT payload, count(*) FROM events GROUP BY 1").fetchall()) == {"mid": 6, "new": 9}
    assert not {"events_m1", "events_m2", "events_m2a", "events_m2b"} & _tables(pg)  # dropped, not left detached
    assert done.batches == 2  # the 7 older rows of events_m3: 4 + 3


def test_a_kill_after_the_detach_is_finished_by_the_next_run(pg: psycopg.Connection[Any]) -> None:
    """The detach was recorded and ran, then the operator died: the next run finds the detached table by the
    record, counts and drops it; the count is the table's rows."""
    pg.execute(MONTHS)
    pg.execute("ALTER TABLE events DETACH PARTITION events_m1")  # what the killed run did
    result = OperationResult(type="clearOldData", batches=0, rows_deleted=0,
                             pending_batch=BatchRecord(action="detach", part="public.events_m1",
                                                       receipt="detach:public.events_m1", rows=0))

    async def run() -> None:
        async with pg_session(pg) as db:
            result.cutoff = await db.cutoff(purge.target_of(STEP), 30 * 86400)
            result.matched_at_start = OLDER
            await purge.clear(db, STEP, result, _checkpoint, lambda: None)

    asyncio.run(run())
    assert result.rows_deleted == OLDER and result.partitions_dropped == 2 and result.pending_batch is None
    assert "events_m1" not in _tables(pg)
    assert dict(pg.execute("SELECT payload, count(*) FROM events GROUP BY 1").fetchall()) == {"mid": 6, "new": 9}


def _interrupt_a_concurrent_detach(pg: psycopg.Connection[Any]) -> None:
    """Leaves events_m1 pending detach: a DETACH ... CONCURRENTLY waiting for an older snapshot is killed."""
    reader = psycopg.connect(host=PG_IP, user="postgres", password=servers.POSTGRES_PASSWORD,
                             dbname=pg.info.dbname)  # a transaction that still sees the partition
    reader.execute("SELECT count(*) FROM events")
    detacher = psycopg.connect(host=PG_IP, user="postgres", password=servers.POSTGRES_PASSWORD,
                               dbname=pg.info.dbname, autocommit=True, application_name="detacher")

    def detach() -> None:
        with contextlib.suppress(psycopg.Error):  # terminated below, on purpose
            detacher.execute("ALTER TABLE events DETACH PARTITION events_m1 CONCURRENTLY")

    t = threading.Thread(target=detach)
    t.start()
    wait_for(lambda: pg.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending").fetchone() == (1,),
             "the detach to reach its waiting phase", 20, interval=0.05)
    pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'detacher'")
    t.join(10)
    reader.close()


def test_an_interrupted_concurrent_detach_is_finalized_or_refused(pg: psycopg.Connection[Any]) -> None:
    pg.execute(MONTHS)
    _interrupt_a_concurrent_detach(pg)
    plain = STEP.model_copy(update={"whole_partitions": "Delete"})

    async def run(step: ClearOldData) -> OperationResult:
        result = OperationResult(type="clearOldData")
        async with pg_session(pg) as db:
            await purge.clear(db, step, result, _checkpoint, lambda: None)
        return result

    with pytest.raises(EngineError) as refused:
        asyncio.run(run(plain))
    assert "partition public.events_m1 is being detached" in str(refused.value)
    done = asyncio.run(run(STEP))
    assert done.partitions_dropped == 2 and "events_m1" not in _tables(pg)
    assert dict(pg.execute("SELECT payload, count(*) FROM events GROUP BY 1").fetchall()) == {"mid": 6, "new": 9}
    # The pending partition's rows were no longer visible through the parent when the step began, but the drop
    # counted them: rowsDeleted is what PostgreSQL removed.
    assert done.rows_deleted == OLDER
