"""The verbs that read: status (one table across the kinds, or a watch), history, users and report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rolecall.api.kinds import KINDS, WEB_SERVER, Kind
from rolecall.api.v1alpha1.webserver import REFRESH_ANNOTATION
from rolecall_cli import checks, report, views, watching
from rolecall_cli.app import Format, Output, Timeout, app, dump, err, flags, out, seconds, token
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import Ended, Step, follow
from rolecall_cli.refs import parse


@app.command()
def status(ctx: typer.Context,
           target: Annotated[str | None, typer.Argument(help="KIND or KIND/NAME, e.g. caches or cache/sessions "
                                                             "(default: every rolecall kind).")] = None,
           all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
           watch: Annotated[bool, typer.Option("-w", "--watch", help="Redraw on every change.")] = False,
           output: Output = Format.table) -> None:
    """One table across the rolecall kinds: phase, targets, last action, users, what is in flight, the
    effective stopped/running state and why, and the conditions that are not fine."""
    cluster = flags(ctx).cluster
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
    if dump({"apiVersion": "v1", "kind": "List", "items": [o for _, o in found]}, output):
        return
    if not found:
        err.print(f"No rolecall resources found in {'any namespace' if all_namespaces else cluster.namespace}.")
        return
    out.print(views.table([views.row(k, o, all_namespaces) for k, o in found]))


@app.command()
def history(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME")],
            output: Output = Format.table) -> None:
    """The requests that ended (newest first): who asked, what triggered them, how they ended."""
    ref = parse(target)
    assert ref.name is not None
    obj = flags(ctx).cluster.get(ref.kind, ref.name)
    if not dump((obj.get("status") or {}).get("history") or [], output):
        out.print(views.history_table(ref.kind, obj))


@app.command()
def users(ctx: typer.Context, target: Annotated[str, typer.Argument(help="web/NAME")],
          output: Output = Format.table, refresh: Annotated[bool, typer.Option(
              help="Ask the operator to read the pods now (else: the figures of its last refresh).")] = True,
          timeout: Timeout = "30s") -> None:
    """Current users of a web role and where the figure comes from (per pod with -o wide). Without an
    answer from the operator it shows the last figures, says how old they are, and exits 3."""
    wait = seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=(WEB_SERVER,))
    assert ref.name is not None
    f = flags(ctx)
    obj = f.cluster.get(ref.kind, ref.name)
    stale: Exit | None = None
    if refresh:
        value = token()
        obj = f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": {REFRESH_ANNOTATION: value}}})

        def refreshed(o: dict[str, Any]) -> Step:
            if checks.status_of(ref.kind, o).last_handled_refresh_request == value:  # echoed once read
                return Step(ended=Ended(ExitCode.OK, ""), accepted=True)
            return Step()

        try:
            follow(f.cluster, ref.kind, obj, f"read {ref}", refreshed, wait, f.hint(ref))
        except Exit as e:
            if e.code is not ExitCode.TIMED_OUT:
                raise
            stale = Exit(ExitCode.TIMED_OUT, f"no operator read the pods within {wait:g}s: these are the figures "
                                             "of its last refresh")
        obj = f.cluster.get(ref.kind, ref.name)
    st = checks.status_of(ref.kind, obj)
    figures = {"currentUsers": st.current_users, "source": st.current_users_source,
               "activeConnections": st.active_connections, "refreshedAt": st.refreshed_at,
               "pods": [p.dump() for p in st.pods or []]}
    if not dump(figures, output):
        users_now = "unknown" if st.current_users is None else str(st.current_users)
        out.print(f"{ref}: {users_now} users (source: {st.current_users_source or 'none'}), "
                  f"{st.active_connections if st.active_connections is not None else 'unknown'} connections, "
                  f"read {views.ago(st.refreshed_at) or 'never'}")
        if output is Format.wide:
            out.print(_per_pod(st))
    if stale is not None:
        raise stale


def _per_pod(st: Any) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("POD", "NODE", "HEALTHY", "USERS", "CONNECTIONS", "ERROR"):
        t.add_column(column)
    for p in st.pods or []:
        t.add_row(p.pod, p.node or "", "yes" if p.healthy else "no",
                  "" if p.current_users is None else str(p.current_users),
                  "" if p.active_connections is None else str(p.active_connections), p.error or "")
    return t


@app.command("report")
def report_(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME")],
            file: Annotated[Path | None, typer.Option("-f", "--file", help="Where to write the tar.gz.")] = None) \
        -> None:
    """A support bundle: the resource, its Events, its pods, the operator's recent log lines (tar.gz)."""
    ref = parse(target)
    assert ref.name is not None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = file or Path(f"rolecall-report-{ref.kind.plural}-{ref.name}-{stamp}.tar.gz")
    names = report.write(flags(ctx).cluster, ref.kind, ref.name, path)
    raise Exit(ExitCode.OK, f"wrote {path}: {', '.join(names)}")
