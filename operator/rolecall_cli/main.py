"""The `kubectl rolecall` command line: global kubectl-style flags, then one verb.

Every verb writes only what a person could write with kubectl (an annotation, a spec field, a
DatabaseMaintenance) as the person running it, so admission and RBAC judge it exactly as they would judge
the raw kubectl command; then it follows the status until the operator acknowledges the request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from rolecall.api.kinds import CACHE_SERVER, DATABASE_MAINTENANCE, DATABASE_SERVER, KINDS, WEB_SERVER, Kind
from rolecall.api.types import duration_seconds, parse_time
from rolecall.api.v1alpha1.cacheserver import CLEAR_ANNOTATION
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION, OVERRIDE_RUNNING, OVERRIDE_STOPPED, dry_run_annotation
from rolecall.api.v1alpha1.database import COMPACT_ANNOTATION
from rolecall.api.v1alpha1.webserver import REFRESH_ANNOTATION
from rolecall_cli import checks, report, views, watching
from rolecall_cli.cluster import Cluster
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import Ended, Step, follow
from rolecall_cli.refs import Ref, parse

# Not a terminal (a pipe, a file): one line per row, however wide, as kubectl prints.
out = Console(highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
app = typer.Typer(name="kubectl rolecall", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="rolecall's role verbs: clear caches, compact databases, stop and start roles, purge old "
                       "rows, and see what they are doing. Exit codes: 0 succeeded, 1 some targets failed (the "
                       "operator retries them), 2 usage, 3 timed out, 4 refused or forbidden, 5 stalled, "
                       "6 cancelled, 130 interrupted (the request keeps running).")

# Label and annotation keys that say Argo CD or Flux applies this resource from Git.
GITOPS_MARKERS = ("argocd.argoproj.io/instance", "argocd.argoproj.io/tracking-id", "kustomize.toolkit.fluxcd.io/name",
                  "helm.toolkit.fluxcd.io/name")


@dataclass
class Flags:
    kubeconfig: str | None
    context: str | None
    namespace: str | None
    _cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.kubeconfig, self.context, self.namespace)
        return self._cluster


def _flags(ctx: typer.Context) -> Flags:
    flags: Flags = ctx.ensure_object(Flags)
    return flags


@app.callback()
def _global(ctx: typer.Context,
            kubeconfig: Annotated[str | None, typer.Option(help="Path to the kubeconfig file (default: $KUBECONFIG, "
                                                                "~/.kube/config).")] = None,
            context: Annotated[str | None, typer.Option(help="The kubeconfig context to use.")] = None,
            namespace: Annotated[str | None, typer.Option("-n", "--namespace",
                                                          help="Namespace (default: the context's).")] = None) -> None:
    ctx.obj = Flags(kubeconfig, context, namespace)


# --- shared options ----------------------------------------------------------------------------------
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the operator to acknowledge the request.")]
Timeout = Annotated[str, typer.Option(help="How long to wait, e.g. 90s, 5m.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Output = Annotated[str, typer.Option("-o", "--output", help="table, wide, json or yaml.")]


def _seconds(text: str) -> float:
    try:
        return float(duration_seconds(text)) if not text.isdigit() else float(text)
    except ValueError as e:
        raise Exit(ExitCode.USAGE, f"--timeout {text!r}: {e}") from e


def _token() -> str:
    """A new request token: the time now, to the microsecond (two requests never share one)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _hint(ref: Ref, ns: str) -> str:
    return f"kubectl rolecall -n {ns} status {ref} -w"


def _end(ended: Ended) -> None:
    raise Exit(ended.code, ended.message)


def _confirm(question: str, yes: bool) -> None:
    """Asks on a terminal; --yes, or no terminal (a script, CI), goes ahead without asking."""
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(question, default=False, err=True):
        raise Exit(ExitCode.USAGE, "not confirmed: nothing was changed")


def _warn_gitops(obj: dict[str, Any], ref: Ref, instead: str) -> None:
    meta = obj["metadata"]
    keys = set(meta.get("labels") or {}) | set(meta.get("annotations") or {})
    found = [k for k in GITOPS_MARKERS if k in keys]
    if found:
        err.print(f"warning: {ref} is applied by GitOps ({', '.join(found)}): Git will put spec "
                  f"back on the next sync, and rolecall then reports the fight (Stalled, ReplicasFought). To stop "
                  f"it for a while without a commit, use an annotation, which a sync leaves alone: {instead}")


# --- status, history, users -----------------------------------------------------------------------------
@app.command()
def status(ctx: typer.Context,
           target: Annotated[str | None, typer.Argument(help="KIND or KIND/NAME, e.g. caches or cache/sessions "
                                                             "(default: every rolecall kind).")] = None,
           all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
           watch: Annotated[bool, typer.Option("-w", "--watch", help="Redraw on every change.")] = False,
           output: Output = "table") -> None:
    """One table across the rolecall kinds: phase, targets, last action, users, what is in flight, the
    effective stopped/running state and why, and the conditions that are not fine."""
    cluster = _flags(ctx).cluster
    ref = parse(target, need_name=False) if target else None
    kinds = [ref.kind] if ref else list(KINDS)
    name = ref.name if ref else None
    if watch:
        watching.watch(cluster, kinds, name, all_namespaces, out)
        return
    found: list[tuple[Kind, dict[str, Any]]] = []
    for kind in kinds:
        if name:
            found.append((kind, cluster.get(kind, name)))
        else:
            found.extend((kind, o) for o in cluster.list_of(kind, all_namespaces)[0])
    if output in ("json", "yaml"):
        listing = {"apiVersion": "v1", "kind": "List", "items": [o for _, o in found]}
        out.out(json.dumps(listing, indent=2) if output == "json" else yaml.safe_dump(listing, sort_keys=False))
        return
    if not found:
        err.print(f"No rolecall resources found in {'any namespace' if all_namespaces else cluster.namespace}.")
        return
    out.print(views.table([views.row(k, o, all_namespaces) for k, o in found]))


@app.command()
def history(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME")],
            output: Output = "table") -> None:
    """The requests that ended (newest first): who asked, what triggered them, how they ended."""
    ref = parse(target)
    assert ref.name is not None
    obj = _flags(ctx).cluster.get(ref.kind, ref.name)
    if output in ("json", "yaml"):
        entries = (obj.get("status") or {}).get("history") or []
        out.out(json.dumps(entries, indent=2) if output == "json" else yaml.safe_dump(entries, sort_keys=False))
        return
    out.print(views.history_table(ref.kind, obj))


@app.command()
def users(ctx: typer.Context, target: Annotated[str, typer.Argument(help="web/NAME")],
          output: Output = "table", refresh: Annotated[bool, typer.Option(
              help="Ask the operator to read the pods now (else: the figures of its last refresh).")] = True,
          timeout: Timeout = "30s") -> None:
    """Current users of a web role and where the figure comes from (per pod with -o wide)."""
    seconds = _seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=(WEB_SERVER,))
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    obj = cluster.get(ref.kind, ref.name)
    if refresh:
        token = _token()
        obj = cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {REFRESH_ANNOTATION: token}}})

        def refreshed(o: dict[str, Any]) -> Step:
            if checks.role_status(ref.kind, o).last_handled_refresh_request == token:  # echoed once read
                return Step(ended=Ended(ExitCode.OK, ""), accepted=True)
            return Step()

        follow(cluster, ref.kind, obj, f"read {ref}", refreshed, seconds, _hint(ref, cluster.namespace))
        obj = cluster.get(ref.kind, ref.name)
    st = checks.role_status(ref.kind, obj)
    if output in ("json", "yaml"):
        figures = {"currentUsers": st.current_users, "source": st.current_users_source,
                   "activeConnections": st.active_connections, "refreshedAt": st.refreshed_at,
                   "pods": [p.dump() for p in st.pods or []]}
        out.out(json.dumps(figures, indent=2) if output == "json" else yaml.safe_dump(figures, sort_keys=False))
        return
    users_now = "unknown" if st.current_users is None else str(st.current_users)
    out.print(f"{ref}: {users_now} users (source: {st.current_users_source or 'none'}), "
              f"{st.active_connections if st.active_connections is not None else 'unknown'} connections, "
              f"read {views.ago(st.refreshed_at)}")
    if output == "wide":
        t = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("POD", "NODE", "HEALTHY", "USERS", "CONNECTIONS", "ERROR"):
            t.add_column(column)
        for p in st.pods or []:
            t.add_row(p.pod, p.node or "", "yes" if p.healthy else "no",
                      "" if p.current_users is None else str(p.current_users),
                      "" if p.active_connections is None else str(p.active_connections), p.error or "")
        out.print(t)


# --- requests by token: clear, compact ----------------------------------------------------------------------
@dataclass(frozen=True)
class TokenVerb:
    kind: Kind
    action: str
    annotation: str
    handled_field: str  # the status field (snake_case model attribute) that echoes the token


CLEAR = TokenVerb(CACHE_SERVER, "clear", CLEAR_ANNOTATION, "last_handled_clear_request")
COMPACT = TokenVerb(DATABASE_SERVER, "compact", COMPACT_ANNOTATION, "last_handled_compact_request")


PLAN_SECONDS = 30.0  # how long a question waits for the operator's dry run before falling back


def _targets_now(cluster: Cluster, obj: dict[str, Any]) -> str:
    """The running pods the selector matches now (the operator decides the final list when it acts)."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods = [p.metadata.name for p in cluster.pods(cluster.namespace, labels)
            if p.status.phase == "Running" and p.status.pod_ip] if labels else []
    return f"{len(pods)} running pods match its selector now: {', '.join(pods) or 'none'}"


def _plan(cluster: Cluster, verb: TokenVerb, ref: Ref, seconds: float) -> str:
    """What a real run would touch, from the operator's own dry run (it resolves the targets as it would
    for the run); without an answer, the pods the selector matches now, said as such."""
    assert ref.name is not None
    token = _token()
    obj = cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {dry_run_annotation(verb.action): token}}})
    try:
        return follow(cluster, ref.kind, obj, f"dry run of {verb.action} {ref}", checks.dry_run(ref.kind, token),
                      min(seconds, PLAN_SECONDS), _hint(ref, cluster.namespace)).message
    except Exit as e:
        if e.code is not ExitCode.TIMED_OUT:
            raise
        return f"no operator answered a dry run within {min(seconds, PLAN_SECONDS):g}s; {_targets_now(cluster, obj)}"


def _request(ctx: typer.Context, verb: TokenVerb, target: str, dry_run: bool, wait: bool, timeout: str,
             yes: bool, destructive: bool) -> None:
    seconds = _seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=(verb.kind,))
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    token = _token()
    key = dry_run_annotation(verb.action) if dry_run else verb.annotation
    body = {"metadata": {"annotations": {key: token}}}
    # A server-side dry run of the real request first: admission's verdict (exit 4) before anything is written.
    cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {verb.annotation: token}}}, dry_run=True)
    if destructive and not dry_run and sys.stdin.isatty() and not yes:
        _confirm(f"{verb.action} {ref} in {cluster.namespace}? {_plan(cluster, verb, ref, seconds)}.", yes)
    obj = cluster.patch(ref.kind, ref.name, body)
    err.print(f"{ref}: {key}={token}")
    if not wait:
        raise Exit(ExitCode.OK, f"requested; follow it with: {_hint(ref, cluster.namespace)}")
    check = checks.dry_run(ref.kind, token) if dry_run else checks.token(ref.kind, verb.handled_field, token)
    what = f"{verb.action} {ref}" + (" (dry run)" if dry_run else "")
    _end(follow(cluster, ref.kind, obj, what, check, seconds, _hint(ref, cluster.namespace)))


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


# --- stop, start, override ------------------------------------------------------------------------------
ROLE_KINDS = (CACHE_SERVER, WEB_SERVER, DATABASE_SERVER)


def _stop_or_start(ctx: typer.Context, target: str, stopped: bool, wait: bool, timeout: str, yes: bool) -> None:
    seconds = _seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=ROLE_KINDS)
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    obj = cluster.get(ref.kind, ref.name)
    until = "--stay-stopped-until" if stopped else "--keep-running-until"
    _warn_gitops(obj, ref, f"kubectl rolecall override {ref} {until} <time>")
    if stopped:
        st = checks.role_status(ref.kind, obj)
        workload = ((obj.get("spec") or {}).get("workloadRef") or {})
        cluster.patch(ref.kind, ref.name, {"spec": {"stopped": True}}, dry_run=True)
        _confirm(f"stop {ref} in {cluster.namespace}: scale {workload.get('kind', 'its workload')} "
                 f"{workload.get('name', '')} from {st.replicas} replicas to 0?", yes)
    obj = cluster.patch(ref.kind, ref.name, {"spec": {"stopped": stopped}})
    if not wait:
        raise Exit(ExitCode.OK, f"requested; follow it with: {_hint(ref, cluster.namespace)}")
    want = "Stopped" if stopped else "Running"
    check = checks.settled(ref.kind, obj["metadata"].get("generation"), want)
    _end(follow(cluster, ref.kind, obj, f"{'stop' if stopped else 'start'} {ref}", check, seconds,
                _hint(ref, cluster.namespace)))


@app.command()
def stop(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME (cache, web, db)")],
         wait: Wait = True, timeout: Timeout = "10m", yes: Yes = False) -> None:
    """Stop a role (spec.stopped: true): its workload is scaled to 0 and its replica count remembered; a web
    role drains first."""
    _stop_or_start(ctx, target, True, wait, timeout, yes)


@app.command()
def start(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME (cache, web, db)")],
          wait: Wait = True, timeout: Timeout = "10m") -> None:
    """Start a stopped role again (spec.stopped: false): the remembered replica count is restored."""
    _stop_or_start(ctx, target, False, wait, timeout, yes=True)


def _until(text: str) -> str:
    """An RFC 3339 time, or a duration from now (2h, 90m)."""
    if re.match(r"^\d{4}-", text):
        try:
            parse_time(text)
        except ValueError as e:
            raise Exit(ExitCode.USAGE, f"{text!r} is not an RFC 3339 time: {e}") from e
        return text
    try:
        seconds = duration_seconds(text)
    except ValueError as e:
        raise Exit(ExitCode.USAGE, f"{text!r} is neither an RFC 3339 time nor a duration like 2h: {e}") from e
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


@app.command()
def override(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME (cache, web, db)")],
             keep_running_until: Annotated[str | None, typer.Option(
                 help="Run until this time (RFC 3339, or a duration like 2h), whatever the run windows say.")] = None,
             stay_stopped_until: Annotated[str | None, typer.Option(
                 help="Stay stopped until this time (RFC 3339, or a duration like 2h).")] = None,
             remove: Annotated[bool, typer.Option("--remove", help="Drop both overrides.")] = False,
             wait: Wait = True, timeout: Timeout = "10m") -> None:
    """Override the run windows until a time with an annotation (which a GitOps sync leaves alone);
    spec.stopped: true still wins."""
    if sum(x is not None for x in (keep_running_until, stay_stopped_until)) + remove != 1:
        raise Exit(ExitCode.USAGE, "give exactly one of --keep-running-until, --stay-stopped-until, --remove")
    seconds = _seconds(timeout)
    ref = parse(target, kinds=ROLE_KINDS)
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    annotations: dict[str, str | None] = {OVERRIDE_RUNNING: None, OVERRIDE_STOPPED: None}
    want = None
    if keep_running_until:
        annotations[OVERRIDE_RUNNING], want = _until(keep_running_until), "Running"
    elif stay_stopped_until:
        annotations[OVERRIDE_STOPPED], want = _until(stay_stopped_until), "Stopped"
    obj = cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": annotations}})
    if want is None or not wait:
        raise Exit(ExitCode.OK, "overrides removed" if want is None else f"requested; follow it with: "
                                                                           f"{_hint(ref, cluster.namespace)}")
    settled = checks.settled(ref.kind, None, want)

    def check(o: dict[str, Any]) -> Step:
        st = checks.role_status(ref.kind, o)
        if st.run_state is None or st.run_state.decided_by != "Override":
            spec_stop = (o.get("spec") or {}).get("stopped") and want == "Running"
            if spec_stop:
                return Step(ended=Ended(ExitCode.STALLED, "spec.stopped is true, which beats the override: "
                                                                 f"kubectl rolecall start {ref}"), accepted=True)
            return Step(note="waiting for the operator")
        return settled(o)

    _end(follow(cluster, ref.kind, obj, f"override {ref}", check, seconds, _hint(ref, cluster.namespace)))


# --- schedules, cancel ------------------------------------------------------------------------------------
SCHEDULE_FIELD = {CACHE_SERVER.kind: "clearSchedule", DATABASE_SERVER.kind: "compactSchedule"}


def _suspend(ctx: typer.Context, target: str, suspended: bool) -> None:
    ref = parse(target, kinds=(CACHE_SERVER, DATABASE_SERVER, DATABASE_MAINTENANCE))
    assert ref.name is not None
    cluster = _flags(ctx).cluster
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


@app.command()
def cancel(ctx: typer.Context, target: Annotated[str, typer.Argument(help="cache/NAME, db/NAME or dbm/NAME")],
           token: Annotated[str | None, typer.Argument(help="The request to cancel (default: the running one).")]
           = None,
           wait: Wait = True, timeout: Timeout = "5m") -> None:
    """Cancel the request in progress: targets in flight finish, no new target (batch, step) starts."""
    seconds = _seconds(timeout)
    ref = parse(target, kinds=(CACHE_SERVER, DATABASE_SERVER, DATABASE_MAINTENANCE))
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    obj = cluster.get(ref.kind, ref.name)
    key = token or checks.run_key(ref.kind, obj)
    if key is None:
        raise Exit(ExitCode.OK, f"{ref} has no request in progress: nothing to cancel")
    obj = cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {CANCEL_ANNOTATION: key}}})
    err.print(f"{ref}: {CANCEL_ANNOTATION}={key}")
    if not wait:
        raise Exit(ExitCode.OK, f"requested; follow it with: {_hint(ref, cluster.namespace)}")
    _end(follow(cluster, ref.kind, obj, f"cancel {ref}", checks.cancelled(ref.kind, key), seconds,
                _hint(ref, cluster.namespace)))


# --- purge --------------------------------------------------------------------------------------------------
@app.command()
def purge(ctx: typer.Context, target: Annotated[str, typer.Argument(help="db/NAME")],
          table: Annotated[str, typer.Option(help="The table to delete old rows from.")],
          column: Annotated[str, typer.Option(help="The column holding each row's time.")],
          older_than: Annotated[str, typer.Option(help="Rows older than this are deleted, e.g. 30d.")],
          batch_size: Annotated[int, typer.Option(help="Rows per batch (each its own transaction).")] = 1000,
          max_rows: Annotated[int | None, typer.Option(help="Stop after this many rows.")] = None,
          timestamp_format: Annotated[str | None, typer.Option(
              help="SQLite only: unixSeconds, unixMilliseconds or iso8601.")] = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the rows a purge would delete.")]
          = False,
          wait: Wait = True, timeout: Timeout = "1h", yes: Yes = False) -> None:
    """Delete old rows in batches: creates a one-shot DatabaseMaintenance and follows it. On a terminal it
    first runs a dry run and asks, with the number of rows that would go."""
    seconds = _seconds(timeout)
    ref = parse(target, kinds=(DATABASE_SERVER,))
    assert ref.name is not None
    cluster = _flags(ctx).cluster
    cluster.get(ref.kind, ref.name)  # a clear error for a missing server, before anything is created
    clear_old: dict[str, Any] = {"table": table, "timestampColumn": column, "olderThan": older_than,
                                 "batchSize": batch_size}
    if max_rows is not None:
        clear_old["maxRows"] = max_rows
    if timestamp_format is not None:
        clear_old["timestampFormat"] = timestamp_format
    ask = not yes and not dry_run and sys.stdin.isatty()
    body = {"apiVersion": DATABASE_MAINTENANCE.api_version, "kind": DATABASE_MAINTENANCE.kind,
            "metadata": {"generateName": f"purge-{ref.name}-"[:50]},
            "spec": {"databaseServerRef": {"name": ref.name}, "operations": [{"clearOldData": clear_old}],
                     "dryRun": dry_run or ask, "ttlSecondsAfterFinished": 86400}}
    obj = cluster.create(DATABASE_MAINTENANCE, body)
    dbm = Ref(DATABASE_MAINTENANCE, obj["metadata"]["name"])
    err.print(f"created {dbm}")
    hint = _hint(dbm, cluster.namespace)
    if ask:
        plan = follow(cluster, DATABASE_MAINTENANCE, obj, f"purge {ref} (dry run)", checks.maintenance_run(True),
                      seconds, hint)
        if plan.code is not ExitCode.OK:
            _end(plan)
        _confirm(f"{plan.message}. Delete them?", yes=False)
        obj = cluster.patch(DATABASE_MAINTENANCE, dbm.name or "", {"spec": {"dryRun": False}})
    if not wait:
        raise Exit(ExitCode.OK, f"requested; follow it with: {hint}")
    _end(follow(cluster, DATABASE_MAINTENANCE, obj, f"purge {ref}" + (" (dry run)" if dry_run else ""),
                checks.maintenance_run(dry_run), seconds, hint))


# --- report ---------------------------------------------------------------------------------------------------
@app.command("report")
def report_(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME")],
            file: Annotated[Path | None, typer.Option("-f", "--file", help="Where to write the tar.gz.")] = None) \
        -> None:
    """A support bundle: the resource, its Events, its pods, the operator's recent log lines (tar.gz)."""
    ref = parse(target)
    assert ref.name is not None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = file or Path(f"rolecall-report-{ref.kind.plural}-{ref.name}-{stamp}.tar.gz")
    names = report.write(_flags(ctx).cluster, ref.kind, ref.name, path)
    raise Exit(ExitCode.OK, f"wrote {path}: {', '.join(names)}")


# --- the entry point -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Runs one command; usage errors exit 2 (the CLI library's own code), our Exit its code."""
    try:
        app(args=argv, prog_name="kubectl rolecall")
    except Exit as e:
        if e.message:
            (out if e.code is ExitCode.OK else err).print(e.message)
        return int(e.code)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        err.print("\ninterrupted")
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.OK)


def run() -> None:
    sys.exit(main())
