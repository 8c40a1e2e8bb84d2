"""What `status` and `history` show: one row per resource across the four kinds, read through the API
models. Only what a person needs first: the phase, what is in flight, the last action and its outcome,
the effective stopped/running state and why, and the conditions that are not fine."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Table

from rolecall.api.kinds import DATABASE_MAINTENANCE, WEB_SERVER, Kind
from rolecall.api.types import parse_time
from rolecall_cli.checks import status_of

COLUMNS = ("NAME", "PHASE", "TARGETS", "LAST", "USERS", "CONNS", "IN-FLIGHT", "STATE", "NOT-FINE")


def ago(when: str | None, now: dt.datetime | None = None) -> str:
    if not when:
        return ""
    seconds = int(((now or dt.datetime.now(dt.UTC)) - parse_time(when)).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _not_fine(conditions: list[Any] | None) -> str:
    bad = []
    for c in conditions or []:
        if (c.type in ("Stalled", "Degraded", "Failed") and c.status == "True") or \
                (c.type not in ("Ready", "Reconciling", "Stalled", "Degraded", "Failed", "Complete", "Queued",
                                "Suspended") and c.status == "Unknown"):
            bad.append(f"{c.type}: {c.reason}")
    return "; ".join(bad)


def row(kind: Kind, obj: dict[str, Any], with_namespace: bool) -> tuple[str, ...]:
    meta = obj["metadata"]
    name = f"{kind.short_names[0]}/{meta['name']}"
    if with_namespace:
        name = f"{meta['namespace']}/{name}"
    if kind is DATABASE_MAINTENANCE:
        return (name, *_maintenance(obj))
    st = status_of(kind, obj)
    if (st.observed_generation or 0) < meta.get("generation", 0):
        phase = f"{st.phase or 'Pending'} (not yet observed)"
    else:
        phase = st.phase or "Pending"
    last = ""
    if st.last_request is not None:
        lr = st.last_request
        last = f"{lr.action} {lr.outcome} {ago(lr.finished_at)}".strip()
    users = conns = ""
    if kind is WEB_SERVER:
        users = "" if getattr(st, "current_users", None) is None else str(st.current_users)
        conns = "" if getattr(st, "active_connections", None) is None else str(st.active_connections)
    elif getattr(st, "connections", None) is not None:
        conns = str(st.connections)
    flight = ""
    if st.run is not None:
        run = st.run
        flight = f"{run.action} {run.targets - len(run.pending)}/{run.targets}"
        if run.wave_resume_at:
            flight += f", next wave {ago(run.wave_resume_at)}"
    drain = getattr(st, "drain", None)
    if drain is not None and drain.aborted_at is None:
        flight = f"draining: {drain.figure} {drain.value}"
    state = ""
    if st.run_state is not None:
        rs = st.run_state
        state = f"{rs.desired} by {rs.decided_by}" + (f" until {rs.until}" if rs.until else "")
    elif (obj.get("spec") or {}).get("stopped"):
        state = "Stopped by Spec"
    targets = "" if st.targets is None else str(st.targets)
    return (name, phase, targets, last, users, conns, flight, state, _not_fine(st.conditions))


def _maintenance(obj: dict[str, Any]) -> tuple[str, ...]:
    st = status_of(DATABASE_MAINTENANCE, obj)
    spec = obj.get("spec") or {}
    last = ""
    if st.completed_at:
        last = f"{st.summary or 'run'} {st.phase} {ago(st.completed_at)}"
    flight = ""
    if st.phase == "Running":
        flight = f"{st.summary}: {st.rows_deleted or sum(r.rows_deleted or 0 for r in st.operations or [])} rows"
    state = "Suspended" if spec.get("suspend") else (f"next run {ago(st.next_run_at)}" if st.next_run_at else "")
    return (st.phase or "Pending", "", last, "", "", flight, state, _not_fine(st.conditions))


def table(rows: list[tuple[str, ...]]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for column in COLUMNS:
        t.add_column(column, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def history_table(kind: Kind, obj: dict[str, Any]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    if kind is DATABASE_MAINTENANCE:
        st = status_of(DATABASE_MAINTENANCE, obj)
        for column in ("STARTED", "TRIGGER", "REQUESTER", "OUTCOME", "STEPS DONE", "ROWS", "RECLAIMED", "DRY RUN"):
            t.add_column(column, overflow="fold")
        for r in st.history or []:
            t.add_row(r.accepted_at or r.finished_at or "", r.trigger, r.requester or "", r.outcome,
                      "" if r.targets is None else f"{r.done or 0} of {r.targets}",
                      "" if r.rows_deleted is None else str(r.rows_deleted),
                      "" if r.bytes_reclaimed is None else str(r.bytes_reclaimed), "yes" if r.dry_run else "")
        return t
    role = status_of(kind, obj)
    for column in ("FINISHED", "ACTION", "TRIGGER", "REQUESTER", "OUTCOME", "TARGETS", "DONE", "FAILED", "FAILED PODS",
                   "REPLICAS"):
        t.add_column(column, overflow="fold")
    for h in role.history or []:
        t.add_row(h.finished_at or "", h.action + (" (dry run)" if h.dry_run else ""), h.trigger,
                  h.requester or "", h.outcome, *("" if v is None else str(v) for v in (h.targets, h.done, h.failed)),
                  ", ".join(h.failed_pods or []), "" if h.replicas is None else str(h.replicas))
    return t
