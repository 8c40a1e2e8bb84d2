"""clearOldData on real PostgreSQL, for every table shape it accepts: after a dry run and a real run pinned to
the plan's cut-off, exactly the rows older than the cut-off are gone (PostgreSQL's own rows, compared value by
value), rowsDeleted is the real difference, and the plan counted what the real run deleted. Rows at the
cut-off, a microsecond after it and NULL times stay."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from enginekit import pg_session
from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.roles import purge

CUT = dt.datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)
US = dt.timedelta(microseconds=1)
# Times around the cut-off: far before, just before, exactly at, just after, far after (hours apart, so that
# the partitions below get rows on both sides), and NULL where the column allows it.
TIMES = ([CUT - dt.timedelta(days=40) + i * dt.timedelta(hours=7) for i in range(30)]
         + [CUT - US, CUT - dt.timedelta(seconds=1), CUT, CUT + US, CUT + dt.timedelta(seconds=1)]
         + [CUT + i * dt.timedelta(hours=5) for i in range(1, 21)])


@dataclass(frozen=True)
class Shape:
    name: str
    create: str
    to_value: Callable[[dt.datetime], Any] = lambda t: t
    older: Callable[[Any], bool] = lambda v: v < CUT
    fmt: str | None = None
    tables: tuple[str, ...] = ("events",)  # where rows are inserted, round-robin (inheritance children)
    table: str = "events"  # what the step names
    nulls: int = 3


def _secs(t: dt.datetime) -> int:
    return int(t.timestamp() // 1)


SHAPES = [
    Shape("plain table with a primary key",
          "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz, payload text)"),
    Shape("range partitions, one straddling the cut-off (the verified data-loss bug)", """
        CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text)
            PARTITION BY RANGE (created_at);
        CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2026-05-25');
        CREATE TABLE events_mid PARTITION OF events FOR VALUES FROM ('2026-05-25') TO ('2026-06-03');
        CREATE TABLE events_new PARTITION OF events FOR VALUES FROM ('2026-06-03') TO (MAXVALUE)""", nulls=0),
    Shape("range partitions with list sub-partitions and a default partition", """
        CREATE TABLE events (id bigserial, created_at timestamptz, kind int NOT NULL)
            PARTITION BY RANGE (created_at);
        CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2026-06-01')
            PARTITION BY LIST (kind);
        CREATE TABLE events_a0 PARTITION OF events_a FOR VALUES IN (0);
        CREATE TABLE events_a1 PARTITION OF events_a DEFAULT;
        CREATE TABLE events_b PARTITION OF events FOR VALUES FROM ('2026-06-01') TO ('2026-06-02');
        CREATE TABLE events_rest PARTITION OF events DEFAULT"""),
    Shape("list partitions on another column", """
        CREATE TABLE events (id bigserial, created_at timestamptz, kind int NOT NULL) PARTITION BY LIST (kind);
        CREATE TABLE events_k0 PARTITION OF events FOR VALUES IN (0);
        CREATE TABLE events_k1 PARTITION OF events FOR VALUES IN (1, 2)"""),
    Shape("hash partitions", """
        CREATE TABLE events (id bigserial, created_at timestamptz, kind int NOT NULL) PARTITION BY HASH (id);
        CREATE TABLE events_h0 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
        CREATE TABLE events_h1 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
        CREATE TABLE events_h2 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 2)"""),
    Shape("inheritance: rows in the parent and two children", """
        CREATE TABLE events (id bigserial, created_at timestamptz, kind int NOT NULL DEFAULT 0);
        CREATE TABLE events_c1 () INHERITS (events);
        CREATE TABLE events_c2 (extra text) INHERITS (events)""", tables=("events", "events_c1", "events_c2")),
    Shape("a table in another schema", """
        CREATE SCHEMA archive; CREATE TABLE archive.events (id bigserial, created_at timestamptz);
        CREATE TABLE events (id bigserial, created_at timestamptz);
        INSERT INTO events (created_at) VALUES ('2000-01-01')""", tables=("archive.events",),
          table="archive.events"),
    Shape("timestamp without time zone (read as UTC)", "CREATE TABLE events (id bigserial, created_at timestamp)",
          to_value=lambda t: t.replace(tzinfo=None), older=lambda v: v < CUT.replace(tzinfo=None)),
    Shape("date: old when its whole day is before the cut-off", "CREATE TABLE events (id bigserial, created_at date)",
          to_value=lambda t: t.date(), older=lambda v: v < CUT.date()),
    Shape("unix seconds in a bigint", "CREATE TABLE events (id bigserial, created_at bigint)",
          to_value=_secs, older=lambda v: v < CUT.timestamp(), fmt="unixSeconds"),
    Shape("unix milliseconds in a bigint", "CREATE TABLE events (id bigserial, created_at bigint)",
          to_value=lambda t: int(t.timestamp() * 1000 // 1), older=lambda v: v < CUT.timestamp() * 1000,
          fmt="unixMilliseconds"),
]


def _seed(conn: psycopg.Connection[Any], shape: Shape) -> list[Any]:
    conn.execute(shape.create)
    values: list[Any] = [shape.to_value(t) for t in TIMES] + [None] * shape.nulls
    kinds = "kind" in shape.create
    for i, v in enumerate(values):
        table = shape.tables[i % len(shape.tables)]
        columns = "created_at, kind" if kinds else "created_at"
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES (%s{', %s' if kinds else ''})",  # noqa: S608
                     (v, i % 3) if kinds else (v,))
    return values


def _remaining(conn: psycopg.Connection[Any], table: str) -> Counter[Any]:
    return Counter(r[0] for r in conn.execute(f"SELECT created_at FROM {table}").fetchall())  # noqa: S608


async def _plan_then_clear(conn: psycopg.Connection[Any], step: ClearOldData) -> tuple[OperationResult, OperationResult,
                                                                                       list[tuple[Any, int | None]]]:
    """A dry run, then a real run pinned to the plan's cut-off; returns both results and each checkpoint."""
    planned = OperationResult(type="clearOldData")
    async with pg_session(conn) as db:
        await purge.plan(db, step, planned)
    assert planned.cutoff is not None
    real_step = step.model_copy(update={"older_than": None, "cutoff": planned.cutoff})
    done = OperationResult(type="clearOldData")
    checkpoints: list[tuple[Any, int | None]] = []

    async def checkpoint() -> None:
        checkpoints.append((done.pending_batch, done.rows_deleted))

    async with pg_session(conn) as db:
        await purge.clear(db, real_step, done, checkpoint, lambda: None)
    return planned, done, checkpoints


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_exactly_the_older_rows_go_and_the_count_is_the_real_difference(pg: psycopg.Connection[Any],
                                                                        shape: Shape) -> None:
    values = _seed(pg, shape)
    old = [v for v in values if v is not None and shape.older(v)]
    kept = Counter(v for v in values if v is None or not shape.older(v))
    assert 0 < len(old) < len(values) - shape.nulls, "the seed must put rows on both sides of the cut-off"
    step = ClearOldData(table=shape.table, timestamp_column="created_at", cutoff=CUT.isoformat().replace("+00:00", "Z"),
                        batch_size=7, timestamp_format=shape.fmt)
    planned, done, checkpoints = asyncio.run(_plan_then_clear(pg, step))

    assert _remaining(pg, shape.table) == kept  # not one row at or after the cut-off, nor a NULL, went
    if shape.table != "events":  # the table of the same name on the search path is not touched
        assert pg.execute("SELECT count(*) FROM public.events").fetchone() == (1,)
    assert planned.matched_at_start == done.matched_at_start == done.rows_deleted == len(old), (planned, done)
    assert done.remaining == 0 and done.pending_batch is None
    assert planned.null_rows == done.null_rows == shape.nulls
    assert done.batches == sum(1 for p, _ in checkpoints if p is not None)
    # Every batch's receipt was on record before its COMMIT, with the rows of the batches before it.
    receipts = [(p.rows, deleted) for p, deleted in checkpoints if p is not None]
    assert all(r <= 7 for r, _ in receipts) and sum(r for r, _ in receipts) == len(old), receipts
    assert [d for _, d in receipts] == [sum(r for r, _ in receipts[:i]) for i in range(len(receipts))]


def test_the_issue_reproduction_keeps_this_weeks_rows(pg: psycopg.Connection[Any]) -> None:
    """The statement that deleted 7 rows of this week along with 7 old ones, now through clearOldData."""
    pg.execute("""
        CREATE TABLE events (id bigserial, created_at timestamptz NOT NULL, payload text)
            PARTITION BY RANGE (created_at);
        CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2020-01-01') TO (now() - interval '30 days');
        CREATE TABLE events_new PARTITION OF events FOR VALUES FROM (now() - interval '30 days') TO (MAXVALUE);
        INSERT INTO events (created_at, payload) SELECT now() - interval '90 days' + g * interval '1 hour', 'old'
            FROM generate_series(1, 30) g;
        INSERT INTO events (created_at, payload) SELECT now() - interval '1 day' + g * interval '1 minute', 'new'
            FROM generate_series(1, 20) g""")
    step = ClearOldData(table="events", timestamp_column="created_at", older_than="30d", batch_size=7)
    planned, done, _ = asyncio.run(_plan_then_clear(pg, step))
    counts = dict(pg.execute("SELECT payload, count(*) FROM events GROUP BY payload").fetchall())
    assert counts == {"new": 20}, counts
    assert (planned.matched_at_start, done.rows_deleted, done.batches, done.parts) == (30, 30, 5, 2), done


def test_the_plan_names_cascades_triggers_and_nulls(pg: psycopg.Connection[Any]) -> None:
    pg.execute("""
        CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz);
        CREATE TABLE readings (id bigserial, event_id bigint REFERENCES events ON DELETE CASCADE);
        CREATE TABLE tags (id bigserial, event_id bigint REFERENCES events ON DELETE SET NULL);
        CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END';
        CREATE TRIGGER audit_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION note();
        INSERT INTO events SELECT g, CASE WHEN g <= 4 THEN now() - interval '60 days' WHEN g <= 8 THEN now() END
            FROM generate_series(1, 10) g;
        INSERT INTO readings (event_id) SELECT g FROM generate_series(1, 10) g;
        INSERT INTO tags (event_id) SELECT g FROM generate_series(1, 10) g""")
    step = ClearOldData(table="events", timestamp_column="created_at", older_than="30d", batch_size=3)
    planned, done, _ = asyncio.run(_plan_then_clear(pg, step))
    notes = planned.notes or []
    assert "public.readings references public.events (readings_event_id_fkey, ON DELETE CASCADE: deletes the " \
           "referencing rows too)" in notes, notes
    assert any("tags" in n and "SET NULL" in n for n in notes), notes
    assert "ON DELETE row triggers fire for every deleted row: audit_delete" in notes, notes
    assert (planned.matched_at_start, planned.null_rows, done.rows_deleted) == (4, 2, 4)
    assert pg.execute("SELECT count(*), count(event_id) FROM readings").fetchone() == (6, 6)  # the cascade ran
    assert pg.execute("SELECT count(*), count(event_id) FROM tags").fetchone() == (10, 6)


def test_a_statement_trigger_on_a_partition_fires_for_its_batches(pg: psycopg.Connection[Any]) -> None:
    """Partitions are deleted from directly, so a statement trigger on a partition fires once per batch there
    (unlike one on the parent, which is refused)."""
    pg.execute("""
        CREATE TABLE log (created_at timestamptz) PARTITION BY RANGE (created_at);
        CREATE TABLE log_old PARTITION OF log FOR VALUES FROM (MINVALUE) TO (now() - interval '40 days');
        CREATE TABLE log_new PARTITION OF log DEFAULT;
        CREATE TABLE fired (at timestamptz);
        CREATE FUNCTION count_it() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN INSERT INTO fired VALUES (now()); RETURN NULL; END';
        CREATE TRIGGER counted AFTER DELETE ON log_old FOR EACH STATEMENT EXECUTE FUNCTION count_it();
        INSERT INTO log SELECT now() - interval '60 days' FROM generate_series(1, 10);
        INSERT INTO log SELECT now() FROM generate_series(1, 3)""")
    step = ClearOldData(table="log", timestamp_column="created_at", older_than="30d", batch_size=4)
    planned, done, _ = asyncio.run(_plan_then_clear(pg, step))
    assert "statement-level ON DELETE triggers fire once per batch: counted" in (planned.notes or [])
    assert (done.rows_deleted, done.batches) == (10, 3)
    assert pg.execute("SELECT count(*) FROM fired").fetchone() == (3,)
    assert pg.execute("SELECT count(*) FROM log").fetchone() == (3,)
