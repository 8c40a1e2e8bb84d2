"""The clearOldData step (roles/purge.py) against an in-memory database, crashed at every point a process can
die: before a batch's receipt is on record, between its COMMIT and the next write, after a fence refuses. The
resumed run (from the status as last written) deletes every older row exactly once, never more than maxRows,
never a newer row, repeats no finished batch, and rowsDeleted is what the database lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from rolecall.api.v1alpha1.database import ClearOldData, OperationResult
from rolecall.engines.database import BatchReceipt, Part, PurgeShape, PurgeTarget, WholePartition
from rolecall.roles import purge

CUT = "2026-06-01T00:00:00.000000Z"


class Crash(Exception):
    pass


class Refused(Exception):
    pass


@dataclass
class FakeDatabase:
    """Rows (id -> time, or None) in parts; transactions commit by id; a fence may refuse."""

    parts: dict[str, dict[int, str | None]]
    committed: set[int] = field(default_factory=set)  # txids that committed
    deletes: list[tuple[str, list[int]]] = field(default_factory=list)  # every committed DELETE, in order
    fenced: bool = False
    txid: int = 0

    def fence(self) -> None:
        if self.fenced:
            raise Refused("no longer the leader")

    def older(self, part: str) -> list[int]:
        return sorted(i for i, t in self.parts[part].items() if t is not None and t < CUT)

    async def purge_shape(self, target: PurgeTarget) -> PurgeShape:
        self.fence()
        return PurgeShape(target, "public.t", "timestamp with time zone",
                          tuple(Part(p, ("public", p)) for p in sorted(self.parts)))

    async def cutoff(self, target: PurgeTarget, older_than_seconds: int) -> str:
        return CUT

    async def pinned_cutoff(self, target: PurgeTarget, at: str) -> str:
        return at

    async def count_older(self, shape: PurgeShape, cutoff: str) -> int:
        self.fence()
        return sum(len(self.older(p)) for p in self.parts)

    async def count_null(self, shape: PurgeShape) -> int:
        return sum(1 for rows in self.parts.values() for t in rows.values() if t is None)

    async def size(self, tables: list[str] | None) -> int:
        return 0

    async def end_stale_sessions(self) -> int:
        return 0

    async def whole_partitions(self, shape: PurgeShape, cutoff: str) -> list[WholePartition]:
        return []

    @asynccontextmanager
    async def delete_batch(self, shape: PurgeShape, part: Part, cutoff: str, limit: int) -> AsyncIterator[_Batch]:
        self.fence()
        self.txid += 1
        picked = self.older(part.name)[:limit]
        yield _Batch(self, part.name, picked, BatchReceipt(part.name, f"txid:{self.txid}", len(picked)))

    async def settle(self, shape: PurgeShape, receipt: BatchReceipt, cutoff: str) -> int:
        return receipt.rows if int(receipt.receipt.split(":")[1]) in self.committed else 0


@dataclass
class _Batch:
    db: FakeDatabase
    part: str
    ids: list[int]
    receipt: BatchReceipt

    async def commit(self) -> int:
        self.db.fence()
        for i in self.ids:
            del self.db.parts[self.part][i]
        self.db.committed.add(int(self.receipt.receipt.split(":")[1]))
        self.db.deletes.append((self.part, self.ids))
        return len(self.ids)


def _database() -> FakeDatabase:
    old, new = "2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"
    return FakeDatabase(parts={
        "public.t_a": {i: old for i in range(23)},
        "public.t_b": {**{i: old for i in range(100, 117)}, **{i: new for i in range(117, 130)}, 130: None},
        "public.t_c": {i: new for i in range(200, 210)},
    })


OLDER = 23 + 17


async def _run_with_crash(db: FakeDatabase, step: ClearOldData, crash_at: int | None, where: str,
                          stored: OperationResult) -> OperationResult:
    """One process: works on a copy of what status says, writes it back at each checkpoint, and dies at the
    `crash_at`-th checkpoint: `before` it lands (the batch rolls back) or `after` the COMMIT that follows it."""
    result = stored.model_copy(deep=True)
    writes = 0

    async def checkpoint() -> None:
        nonlocal writes, stored
        writes += 1
        if crash_at is not None and writes == crash_at and where == "before":
            raise Crash()
        stored = result.model_copy(deep=True)
        stored_box[0] = stored

    stored_box = [stored]
    original = _Batch.commit

    async def commit_then_maybe_crash(self: _Batch) -> int:
        rows = await original(self)
        if crash_at is not None and writes == crash_at and where == "after":
            raise Crash()
        return rows

    _Batch.commit = commit_then_maybe_crash  # type: ignore[method-assign]
    try:
        await purge.clear(db, step, result, checkpoint, lambda: None)
        stored_box[0] = result
    except Crash:
        pass
    finally:
        _Batch.commit = original  # type: ignore[method-assign]
    return stored_box[0]


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("max_rows", [None, 25])
def test_a_crash_at_any_checkpoint_resumes_without_repeating_or_losing(where: str, max_rows: int | None) -> None:
    step = ClearOldData(table="t", timestamp_column="c", older_than="30d", batch_size=5, max_rows=max_rows)
    expected = OLDER if max_rows is None else max_rows
    for crash_at in range(1, 14):
        db = _database()
        stored = asyncio.run(_run_with_crash(db, step, crash_at, where, OperationResult(type="clearOldData")))
        done = asyncio.run(_run_with_crash(db, step, None, where, stored))
        gone = [i for _, ids in db.deletes for i in ids]
        assert len(gone) == len(set(gone)) == expected, (crash_at, where, gone)  # once each, the cap held
        assert all(i < 117 for i in gone), "a row newer than the cut-off, or a NULL, was deleted"
        assert done.rows_deleted == expected and done.pending_batch is None, (crash_at, where, done)
        assert done.cutoff == CUT and done.matched_at_start == OLDER
        assert done.batches == sum(1 for _, ids in db.deletes if ids), (crash_at, where, done.batches)


def test_a_fence_that_refuses_stops_before_the_next_statement_and_the_next_leader_finishes() -> None:
    db = _database()
    step = ClearOldData(table="t", timestamp_column="c", older_than="30d", batch_size=5)
    stored = OperationResult(type="clearOldData")
    result = stored.model_copy(deep=True)
    writes = 0

    async def checkpoint() -> None:
        nonlocal writes, stored
        writes += 1
        stored = result.model_copy(deep=True)
        if writes == 4:
            db.fenced = True  # the Lease was lost while this receipt was being written

    with pytest.raises(Refused):
        asyncio.run(purge.clear(db, step, result, checkpoint, lambda: None))
    deletes_when_fenced = list(db.deletes)
    assert len(deletes_when_fenced) == 2  # the batch whose receipt was being written did not commit
    db.fenced = False
    done = stored.model_copy(deep=True)

    async def quiet() -> None:
        return None

    asyncio.run(purge.clear(db, step, done, quiet, lambda: None))
    assert done.rows_deleted == OLDER and sum(len(ids) for _, ids in db.deletes) == OLDER
