"""The verbs that stop and start a role: spec.stopped (stop, start) and the run-window overrides."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import typer

from rolecall.api.kinds import CACHE_SERVER, DATABASE_SERVER, WEB_SERVER
from rolecall.api.types import parse_time
from rolecall.api.v1alpha1.common import OVERRIDE_RUNNING, OVERRIDE_STOPPED
from rolecall_cli import checks
from rolecall_cli.app import Timeout, Wait, Yes, app, confirm, end, err, flags, requested, seconds
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import Ended, Step, follow
from rolecall_cli.refs import Ref, parse

ROLE_KINDS = (CACHE_SERVER, WEB_SERVER, DATABASE_SERVER)
# Label and annotation keys that say Argo CD or Flux applies this resource from Git.
GITOPS_MARKERS = ("argocd.argoproj.io/instance", "argocd.argoproj.io/tracking-id", "kustomize.toolkit.fluxcd.io/name",
                  "helm.toolkit.fluxcd.io/name")


def _warn_gitops(obj: dict[str, Any], ref: Ref, instead: str) -> None:
    meta = obj["metadata"]
    keys = set(meta.get("labels") or {}) | set(meta.get("annotations") or {})
    found = [k for k in GITOPS_MARKERS if k in keys]
    if found:
        err.print(f"warning: {ref} is applied by GitOps ({', '.join(found)}): Git will put spec "
                  f"back on the next sync, and rolecall then reports the fight (Stalled, ReplicasFought). To stop "
                  f"it for a while without a commit, use an annotation, which a sync leaves alone: {instead}")


def _stop_or_start(ctx: typer.Context, target: str, stopped: bool, wait: bool, timeout: str, yes: bool) -> None:
    limit = seconds(timeout)  # a wrong argument ends the command before anything is written
    ref = parse(target, kinds=ROLE_KINDS)
    assert ref.name is not None
    f = flags(ctx)
    obj = f.cluster.get(ref.kind, ref.name)
    until = "--stay-stopped-until" if stopped else "--keep-running-until"
    _warn_gitops(obj, ref, f"kubectl rolecall override {ref} {until} <time>")
    if stopped:
        st = checks.status_of(ref.kind, obj)
        workload = ((obj.get("spec") or {}).get("workloadRef") or {})
        f.cluster.patch(ref.kind, ref.name, {"spec": {"stopped": True}}, dry_run=True)  # admission's verdict first
        confirm(f"stop {ref} in {f.cluster.namespace}: scale {workload.get('kind', 'its workload')} "
                f"{workload.get('name', '')} from {st.replicas} replicas to 0?", yes)
    obj = f.cluster.patch(ref.kind, ref.name, {"spec": {"stopped": stopped}})
    if not wait:
        requested(f.hint(ref))
    want = "Stopped" if stopped else "Running"
    check = checks.settled(ref.kind, obj["metadata"].get("generation"), want)
    end(follow(f.cluster, ref.kind, obj, f"{'stop' if stopped else 'start'} {ref}", check, limit, f.hint(ref)))


@app.command()
def stop(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME (cache, web, db)")],
         wait: Wait = True, timeout: Timeout = "10m", yes: Yes = False) -> None:
    """Stop a role (spec.stopped: true): its workload is scaled to 0 and its replica count remembered; a web
    role drains first."""
    _stop_or_start(ctx, target, True, wait, timeout, yes)


@app.command()
def start(ctx: typer.Context, target: Annotated[str, typer.Argument(help="KIND/NAME (cache, web, db)")],
          wait: Wait = True, timeout: Timeout = "10m") -> None:
    """Start a stopped role again (spec.stopped: false): the remembered replica count is restored. A role that
    a run window or an override holds stopped ends at once with 5 and says so."""
    _stop_or_start(ctx, target, False, wait, timeout, yes=True)


def _until(text: str, flag: str) -> str:
    """A future time: RFC 3339, or a duration from now (2h, 90m). A past one would be ignored: refused."""
    if re.match(r"^\d{4}-", text):
        try:
            at = parse_time(text)
        except ValueError as e:
            raise Exit(ExitCode.USAGE, f"{flag} {text!r} is not an RFC 3339 time: {e}") from e
    else:
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds(text, flag))
        text = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    if at <= dt.datetime.now(dt.UTC):
        raise Exit(ExitCode.USAGE, f"{flag} {text} has passed: an override until then would change nothing")
    return text


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
    limit = seconds(timeout)
    ref = parse(target, kinds=ROLE_KINDS)
    assert ref.name is not None
    f = flags(ctx)
    annotations: dict[str, str | None] = {OVERRIDE_RUNNING: None, OVERRIDE_STOPPED: None}
    want = None
    if keep_running_until:
        annotations[OVERRIDE_RUNNING], want = _until(keep_running_until, "--keep-running-until"), "Running"
    elif stay_stopped_until:
        annotations[OVERRIDE_STOPPED], want = _until(stay_stopped_until, "--stay-stopped-until"), "Stopped"
    obj = f.cluster.patch(ref.kind, ref.name, {"metadata": {"annotations": annotations}})
    if want is None:
        raise Exit(ExitCode.OK, "overrides removed: the run windows decide again")
    if not wait:
        requested(f.hint(ref))
    settled = checks.settled(ref.kind, None, want)

    def check(o: dict[str, Any]) -> Step:
        if (o.get("spec") or {}).get("stopped"):  # spec.stopped beats every override
            if want == "Running":
                return Step(ended=Ended(ExitCode.STALLED, "spec.stopped is true, which beats the override: "
                                                          f"kubectl rolecall start {ref}"), accepted=True)
            return Step(ended=Ended(ExitCode.OK, "spec.stopped is true and holds it stopped already; the override "
                                                 "applies once spec.stopped is false"), accepted=True)
        st = checks.status_of(ref.kind, o)
        if st.run_state is None or st.run_state.decided_by != "Override":
            return Step(note="waiting for the operator")
        return settled(o)

    end(follow(f.cluster, ref.kind, obj, f"override {ref}", check, limit, f.hint(ref)))
