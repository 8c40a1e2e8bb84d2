"""`purge`: old rows deleted in batches by a one-shot DatabaseMaintenance the plugin creates and follows."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from rolecall.api.kinds import DATABASE_MAINTENANCE, DATABASE_SERVER
from rolecall_cli import checks
from rolecall_cli.app import Timeout, Wait, Yes, app, can_ask, end, err, flags, requested, seconds
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import follow
from rolecall_cli.refs import Ref, parse


@app.command()
def purge(ctx: typer.Context, target: Annotated[str, typer.Argument(help="db/NAME")],
          table: Annotated[str, typer.Option(help="The table to delete old rows from.")],
          column: Annotated[str, typer.Option(help="The column holding each row's time.")],
          older_than: Annotated[str | None, typer.Option(help="Rows older than this are deleted, e.g. 30d.")] = None,
          cutoff: Annotated[str | None, typer.Option(
              help="Instead of --older-than: rows older than this RFC 3339 time, e.g. a dry run's recorded "
                   "cut-off.")] = None,
          drop_whole_partitions: Annotated[bool, typer.Option(
              "--drop-whole-partitions", help="PostgreSQL: detach and drop partitions entirely older than the "
                                              "cut-off instead of deleting their rows.")] = False,
          batch_size: Annotated[int, typer.Option(help="Rows per batch (each its own transaction).")] = 1000,
          max_rows: Annotated[int | None, typer.Option(help="Stop after this many rows.")] = None,
          timestamp_format: Annotated[str | None, typer.Option(
              help="SQLite only: unixSeconds, unixMilliseconds or iso8601.")] = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the rows a purge would delete.")]
          = False,
          wait: Wait = True, timeout: Timeout = "1h", yes: Yes = False) -> None:
    """Delete old rows in batches: creates a one-shot DatabaseMaintenance and follows it. At a terminal it
    first runs a dry run and asks, with the number of rows that would go (a no deletes that dry run); a yes
    creates the real run pinned to the dry run's recorded cut-off."""
    deadline = time.monotonic() + seconds(timeout)  # one deadline for the dry run, the question and the run
    if (older_than is None) == (cutoff is None):
        raise Exit(ExitCode.USAGE, "give exactly one of --older-than (e.g. 30d) or --cutoff (an RFC 3339 time)")
    if older_than is not None:
        seconds(older_than, "--older-than")
    ref = parse(target, kinds=(DATABASE_SERVER,))
    assert ref.name is not None
    f = flags(ctx)
    f.cluster.get(ref.kind, ref.name)  # a clear error for a missing server, before anything is created
    clear_old: dict[str, Any] = {"table": table, "timestampColumn": column, "batchSize": batch_size}
    clear_old.update({"olderThan": older_than} if older_than is not None else {"cutoff": cutoff})
    if drop_whole_partitions:
        clear_old["wholePartitions"] = "DetachAndDrop"
    if max_rows is not None:
        clear_old["maxRows"] = max_rows
    if timestamp_format is not None:
        clear_old["timestampFormat"] = timestamp_format
    ask = not yes and not dry_run and can_ask()
    spec: dict[str, Any] = {"databaseServerRef": {"name": ref.name}, "operations": [{"clearOldData": clear_old}],
                            "dryRun": dry_run or ask, "ttlSecondsAfterFinished": 86400}
    body = {"apiVersion": DATABASE_MAINTENANCE.api_version, "kind": DATABASE_MAINTENANCE.kind,
            "metadata": {"generateName": f"purge-{ref.name}-"[:50]}, "spec": spec}
    obj = f.cluster.create(DATABASE_MAINTENANCE, body)
    dbm = Ref(DATABASE_MAINTENANCE, obj["metadata"]["name"])
    err.print(f"created {dbm}")
    if ask:
        plan = follow(f.cluster, DATABASE_MAINTENANCE, obj, f"purge {ref} (dry run)", checks.maintenance_run(True),
                      deadline - time.monotonic(), f.hint(dbm))
        if plan.code is not ExitCode.OK:
            end(plan)
        try:
            agreed = typer.confirm(f"{plan.message}. Delete them?", default=False, err=True)
        except typer.Abort:
            agreed = False
        if not agreed:
            f.cluster.delete(DATABASE_MAINTENANCE, dbm.name or "")
            raise Exit(ExitCode.USAGE, f"not confirmed: nothing was deleted (the dry run {dbm} is deleted too)")
        # The real run is pinned to the cut-off the plan recorded, so it deletes the rows that were counted (with
        # olderThan the cut-off would move on by the time the question took); the plan stays as its record.
        planned = _planned_cutoff(f.cluster.get(DATABASE_MAINTENANCE, dbm.name or ""))
        clear_old.pop("olderThan", None)
        spec["operations"] = [{"clearOldData": {**clear_old, "cutoff": planned}}]
        spec["dryRun"] = False
        obj = f.cluster.create(DATABASE_MAINTENANCE, body)
        dbm = Ref(DATABASE_MAINTENANCE, obj["metadata"]["name"])
        err.print(f"created {dbm}, pinned to the plan's cut-off {planned}")
    if not wait:
        requested(f.hint(dbm))
    end(follow(f.cluster, DATABASE_MAINTENANCE, obj, f"purge {ref}" + (" (dry run)" if dry_run else ""),
               checks.maintenance_run(dry_run), deadline - time.monotonic(), f.hint(dbm)))


def _planned_cutoff(plan: dict[str, Any]) -> str:
    """The cut-off the dry run recorded (computed by the database when it planned)."""
    st = checks.status_of(DATABASE_MAINTENANCE, plan)
    found = next((r.cutoff for r in st.operations or [] if r.cutoff), None)
    if found is None:
        raise Exit(ExitCode.STALLED, f"the dry run {plan['metadata']['name']} recorded no cut-off: nothing was deleted")
    return str(found)
