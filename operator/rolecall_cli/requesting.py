"""The verbs that ask for an action by token (clear, compact), cancel one, and suspend or resume a schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from rolecall.api.kinds import CACHE_SERVER, DATABASE_MAINTENANCE, DATABASE_SERVER, Kind
from rolecall.api.v1alpha1.cacheserver import CLEAR_ANNOTATION
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION, dry_run_annotation
from rolecall.api.v1alpha1.database import COMPACT_ANNOTATION
from rolecall_cli import checks
from rolecall_cli.app import (
    Flags,
    Timeout,
    Wait,
    Yes,
    app,
    can_ask,
    confirm,
    end,
    err,
    flags,
    requested,
    seconds,
    token,
)
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import follow
from rolecall_cli.refs import Ref, parse

PLAN_SECONDS = 30.0  # how long a question waits for the operator's dry run before falling back


@dataclass(frozen=True)
class TokenVerb:
    kind: Kind
    action: str
    annotation: str
    handled_field: str  # the status field (snake_case model attribute) that echoes the token


CLEAR = TokenVerb(CACHE_SERVER, "clear", CLEAR_ANNOTATION, "last_handled_clear_request")
COMPACT = TokenVerb(DATABASE_SERVER, "compact", COMPACT_ANNOTATION, "last_handled_compact_request")


def _targets_now(f: Flags, obj: dict[str, Any]) -> str:
    """The running pods the selector matches now (the operator decides the final list when it acts)."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods = [p["metadata"]["name"] for p in f.cluster.pods(f.cluster.namespace, labels)
            if (p.get("status") or {}).get("phase") == "Running" and p["status"].get("podIP")] if labels else []
    return f"{len(pods)} running pods match its selector now: {', '.join(pods) or 'none'}"


def _plan(f: Flags, verb: TokenVerb, ref: Ref, wait: float) -> str:
    """What a real run would touch, from the operator's own dry run (it resolves the targets as it would
    for the run); without an answer, the pods the selector matches now, said as such."""
    assert ref.name is not None
    value = token()
    obj = f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {dry_run_annotation(verb.action): value}}})
    wait = min(wait, PLAN_SECONDS)
    try:
        return follow(f.cluster, ref.kind, obj, f"dry run of {verb.action} {ref}", checks.dry_run(ref.kind, value),
                      wait, f.hint(ref), interrupted="interrupted: nothing was requested (only a dry run, which "
                                                     "changes nothing)").message
    except Exit as e:
        if e.code is not ExitCode.TIMED_OUT:
            raise
        return f"no operator answered a dry run within {wait:g}s; {_targets_now(f, obj)}"


def _request(ctx: typer.Context, verb: TokenVerb, target: str, dry_run: bool, wait: bool, timeout: str,
             yes: bool, destructive: bool) -> None:
    limit = seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=(verb.kind,))
    assert ref.name is not None
    f = flags(ctx)
    value = token()
    # A server-side dry run of the real request first: admission's verdict (exit 4) before anything is written.
    f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {verb.annotation: value}}}, dry_run=True)
    if destructive and not dry_run and not yes and can_ask():
        confirm(f"{verb.action} {ref} in {f.cluster.namespace}? {_plan(f, verb, ref, limit)}.", yes,
                undo="nothing was requested (the dry run changed nothing)")
    key = dry_run_annotation(verb.action) if dry_run else verb.annotation
    obj = f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {key: value}}})
    err.print(f"{ref}: {key}={value}")
    if not wait:
        requested(f.hint(ref))
    check = checks.dry_run(ref.kind, value) if dry_run else \
        checks.token(ref.kind, verb.handled_field, verb.annotation, value)
    what = f"{verb.action} {ref}" + (" (dry run)" if dry_run else "")
    end(follow(f.cluster, ref.kind, obj, what, check, limit, f.hint(ref)))


@app.command()
def clear(ctx: typer.Context, target: Annotated[str, typer.Argument(help="cache/NAME")],
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask the operator which pods a clear would "
                                                                  "touch; nothing is cleared.")] = False,
          wait: Wait = True, timeout: Timeout = "5m", yes: Yes = False) -> None:
    """Clear every target pod of a cache once (a new clear-requested-at token), and wait for the outcome."""
    _request(ctx, CLEAR, target, dry_run, wait, timeout, yes, destructive=True)


@app.command()
def compact(ctx: typer.Context, target: Annotated[str, typer.Argument(help="db/NAME")],
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask the operator which pod a compaction "
                                                                    "would touch; nothing is compacted.")] = False,
            wait: Wait = True, timeout: Timeout = "30m", yes: Yes = False) -> None:
    """Compact a database (VACUUM) once (a new compact-requested-at token), and wait for the outcome."""
    _request(ctx, COMPACT, target, dry_run, wait, timeout, yes, destructive=False)


@app.command()
def cancel(ctx: typer.Context, target: Annotated[str, typer.Argument(help="cache/NAME, db/NAME or dbm/NAME")],
           request: Annotated[str | None, typer.Argument(
               help="The request to cancel: its token, spec time or slot (default: the running one).")] = None,
           wait: Wait = True, timeout: Timeout = "5m") -> None:
    """Cancel the request in progress: targets in flight finish, no new target (batch, step) starts."""
    limit = seconds(timeout)
    ref = parse(target, kinds=(CACHE_SERVER, DATABASE_SERVER, DATABASE_MAINTENANCE))
    assert ref.name is not None
    f = flags(ctx)
    obj = f.cluster.get(ref.kind, ref.name)
    running = checks.run_key(ref.kind, obj)
    if running is None:
        raise Exit(ExitCode.OK, f"{ref} has no request in progress: nothing to cancel")
    if request is not None and request != running:
        raise Exit(ExitCode.USAGE, f"{request!r} is not the request in progress on {ref} ({running})")
    obj = f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {CANCEL_ANNOTATION: running}}})
    err.print(f"{ref}: {CANCEL_ANNOTATION}={running}")
    if not wait:
        requested(f.hint(ref))
    end(follow(f.cluster, ref.kind, obj, f"cancel {ref}", checks.cancelled(ref.kind, running), limit, f.hint(ref)))


SCHEDULE_FIELD = {CACHE_SERVER.kind: "clearSchedule", DATABASE_SERVER.kind: "compactSchedule"}


def _suspend(ctx: typer.Context, target: str, suspended: bool) -> None:
    ref = parse(target, kinds=(CACHE_SERVER, DATABASE_SERVER, DATABASE_MAINTENANCE))
    assert ref.name is not None
    cluster = flags(ctx).cluster
    obj = cluster.get(ref.kind, ref.name)
    field = SCHEDULE_FIELD.get(ref.kind.kind)
    if field is not None and not (obj.get("spec") or {}).get(field):
        raise Exit(ExitCode.USAGE, f"{ref} has no spec.{field} to suspend or resume")
    body = {"spec": {field: {"suspend": suspended}}} if field else {"spec": {"suspend": suspended}}
    cluster.patch(ref.kind, ref.name, body)
    raise Exit(ExitCode.OK, f"{ref}: {'suspended: no new slot starts' if suspended else 'resumed'}")


@app.command()
def suspend(ctx: typer.Context, target: Annotated[str, typer.Argument(help="cache/NAME, db/NAME or dbm/NAME")]) \
        -> None:
    """Suspend a schedule (clearSchedule, compactSchedule, a DatabaseMaintenance's): no new slot starts."""
    _suspend(ctx, target, True)


@app.command()
def resume(ctx: typer.Context, target: Annotated[str, typer.Argument(help="cache/NAME, db/NAME or dbm/NAME")]) \
        -> None:
    """Resume a suspended schedule."""
    _suspend(ctx, target, False)
