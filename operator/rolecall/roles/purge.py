"""clearOldData, one step of a DatabaseMaintenance run: its plan, and its batches checkpointed into status.

Observes: the table as the database describes it (engines: `purge_shape`), the step's record in status.
Triggers: batched DELETEs on the one primary, one status write per batch (the receipt of the batch about to
commit, with the rows of the batches before it), and at the end a recount of what is left.

The record (`OperationResult`) is the step's ledger: its cut-off is written before the first batch, and
each batch's receipt (engine, rows) before its COMMIT, so after a crash the batch is settled by asking the
database whether it committed, and `rowsDeleted` stays the sum of what the committed DELETEs deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rolecall.api.types import duration_seconds
from rolecall.api.v1alpha1.database import BatchRecord, ClearOldData, OperationResult
from rolecall.engines.base import EngineError
from rolecall.engines.database import (
    BatchReceipt,
    DatabaseSession,
    OpenBatch,
    PurgeShape,
    PurgeTarget,
)

MAX_NOTES = 16


def target_of(c: ClearOldData) -> PurgeTarget:
    return PurgeTarget(c.table, c.timestamp_column, c.timestamp_format, c.whole_partitions == "DetachAndDrop")


async def _cutoff(db: DatabaseSession, c: ClearOldData) -> str:
    if c.cutoff is not None:
        return await db.pinned_cutoff(target_of(c), c.cutoff)
    assert c.older_than is not None
    return await db.cutoff(target_of(c), duration_seconds(c.older_than))


async def _survey(db: DatabaseSession, c: ClearOldData, result: OperationResult) -> PurgeShape:
    """Checks the table (a refusal raises before anything is deleted) and records the cut-off, the rows older
    than it, the NULLs and what a delete sets off."""
    shape = await db.purge_shape(target_of(c))
    result.cutoff = await _cutoff(db, c)
    result.matched_at_start = await db.count_older(shape, result.cutoff)
    result.null_rows = await db.count_null(shape)
    result.parts = len(shape.parts)
    result.notes = [n[:512] for n in shape.notes[:MAX_NOTES]] or None
    return shape


async def plan(db: DatabaseSession, c: ClearOldData, result: OperationResult) -> None:
    """A dry run of the step: the same checks and reads a real run makes first, and the size; nothing deleted."""
    shape = await _survey(db, c, result)
    assert result.cutoff is not None
    drops = [await db.describe_detach(w) for w in await db.whole_partitions(shape, result.cutoff)]
    result.notes = ([*(result.notes or []), *[f"drops whole partition {d}" for d in drops]][:MAX_NOTES]) or None
    result.partitions_dropped = len(drops) if shape.target.drop_whole_partitions else None
    result.bytes_before = await db.size([c.table])


async def clear(db: DatabaseSession, c: ClearOldData, result: OperationResult,
                checkpoint: Callable[[], Awaitable[object]], before_batch: Callable[[], None]) -> None:
    """Deletes the rows older than the step's cut-off, batch by batch, each checkpointed before its COMMIT.

    `checkpoint` writes status (it raises when the write cannot land: the batch then rolls back);
    `before_batch` raises to stop before the next batch (a cancel, the deadline)."""
    if result.cutoff is None:
        shape = await _survey(db, c, result)
        result.batches, result.rows_deleted = 0, 0
        await checkpoint()  # the cut-off is on record before the first batch
    else:
        shape = await db.purge_shape(target_of(c))  # checked again on resume: the table may have changed
    cutoff = result.cutoff
    assert cutoff is not None
    await db.end_stale_sessions()  # a stopped leader's open batch would hold the rows this one needs
    if result.pending_batch is not None:
        await _settle(db, shape, result, checkpoint)
    if shape.partitions:
        for whole in await db.whole_partitions(shape, cutoff):  # never with maxRows (the API refuses both)
            before_batch()
            async with db.detach(whole) as detach:
                record = BatchRecord(action="detach", part=whole.part.name, receipt=detach.receipt.receipt, rows=0)
                await _record(result, record, checkpoint)  # a kill after the detach still finds the table
                await _commit(result, detach)
            await _drop(db, whole.part.name, result, checkpoint)
        shape = await db.purge_shape(target_of(c))  # what is left: the partitions that straddle the cut-off
    deleted = result.rows_deleted or 0
    for part in shape.parts:
        while True:
            limit = c.batch_size if c.max_rows is None else min(c.batch_size, c.max_rows - deleted)
            if limit <= 0:
                break
            before_batch()
            async with db.delete_batch(shape, part, cutoff, limit) as batch:
                picked = batch.receipt.rows
                if picked:  # the receipt is on record before the COMMIT
                    await _record(result, BatchRecord(part=part.name, receipt=batch.receipt.receipt, rows=picked),
                                  checkpoint)
                rows = await _commit(result, batch)
            deleted += rows
            result.pending_batch, result.rows_deleted = None, deleted
            result.batches = (result.batches or 0) + (1 if picked else 0)
            result.remaining = max(0, (result.matched_at_start or 0) - deleted)
            if picked < limit:
                break  # this part has no older rows left
    result.remaining = await db.count_older(shape, cutoff)


async def _settle(db: DatabaseSession, shape: PurgeShape, result: OperationResult,
                  checkpoint: Callable[[], Awaitable[object]]) -> None:
    """A batch recorded before a crash: its rows count only if the database says it committed. A partition
    recorded as being detached is dropped now if it was detached (if not, it is dropped on the next pass)."""
    p = result.pending_batch
    assert p is not None and result.cutoff is not None
    if p.action == "detach":
        await _drop(db, p.part, result, checkpoint)
        return
    rows = await db.settle(shape, BatchReceipt(p.part, p.receipt, p.rows), result.cutoff)
    result.rows_deleted = (result.rows_deleted or 0) + rows
    result.pending_batch = None
    if p.action == "drop":
        # Still there: the drop rolled back, so it is done now. Gone: it committed (perhaps with 0 rows).
        if not await _drop(db, p.part, result, checkpoint):
            result.partitions_dropped = (result.partitions_dropped or 0) + 1
    else:
        result.batches = (result.batches or 0) + (1 if rows else 0)


async def _drop(db: DatabaseSession, name: str, result: OperationResult,
                checkpoint: Callable[[], Awaitable[object]]) -> bool:
    """Counts and drops a detached partition, the count and the transaction id recorded before the COMMIT;
    False when there was no detached table of that name to drop."""
    async with db.drop_detached(name) as drop:
        if drop is None:
            result.pending_batch = None
            return False
        await _record(result, BatchRecord(action="drop", part=name, receipt=drop.receipt.receipt,
                                          rows=drop.receipt.rows), checkpoint)
        rows = await _commit(result, drop)
    result.rows_deleted = (result.rows_deleted or 0) + rows
    result.partitions_dropped = (result.partitions_dropped or 0) + 1
    result.pending_batch = None
    return True


async def _record(result: OperationResult, record: BatchRecord, checkpoint: Callable[[], Awaitable[object]]) -> None:
    """Writes a batch's receipt. A write that fails leaves the batch uncommitted (it rolls back when its block
    ends), so it is no longer pending."""
    result.pending_batch = record
    try:
        await checkpoint()
    except BaseException:
        result.pending_batch = None
        raise


async def _commit(result: OperationResult, batch: OpenBatch) -> int:
    """Commits a recorded batch. A COMMIT the database refused rolled back: nothing is pending any more. One whose
    answer was lost (BatchUnsettled) stays pending, to be settled by its receipt."""
    try:
        return await batch.commit()
    except EngineError as e:
        if e.answered:
            result.pending_batch = None
        raise
