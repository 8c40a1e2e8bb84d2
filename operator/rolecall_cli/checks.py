"""When a request has ended, read from status through the API models: a token echoed with its outcome,
a stop or start settled under the new generation, a DatabaseMaintenance run finished. Each returns a
follow.Step; nothing here talks to the cluster."""

from __future__ import annotations

from typing import Any

from rolecall.api.kinds import DATABASE_MAINTENANCE, Kind
from rolecall.api.v1alpha1.common import RoleStatus
from rolecall.api.v1alpha1.database import DatabaseMaintenanceStatus
from rolecall_cli.exits import BY_OUTCOME, ExitCode
from rolecall_cli.follow import Check, Ended, Step


def role_status(kind: Kind, obj: dict[str, Any]) -> Any:
    return kind.status.model_validate(obj.get("status") or {})


def condition(st: Any, type_: str) -> Any:
    return next((c for c in st.conditions or [] if c.type == type_), None)


def _failures(st: RoleStatus) -> list[str]:
    return [f"{p.pod}: {p.message or p.outcome}" for p in st.failed_pods or []]


def token(kind: Kind, handled_field: str, value: str) -> Check:
    """A request token (clear-requested-at, compact-requested-at): accepted when status.run carries it,
    ended when handled_field echoes it; the outcome is status.lastRequest's."""

    def check(obj: dict[str, Any]) -> Step:
        st = role_status(kind, obj)
        if getattr(st, handled_field) == value:
            last = st.last_request
            if last is None or last.token != value:
                return Step(ended=Ended(ExitCode.OK, f"{value} was handled (a newer request has ended since)"),
                            accepted=True)
            code = BY_OUTCOME.get(last.outcome, ExitCode.TARGETS_FAILED)
            if code is ExitCode.TARGETS_FAILED:
                why = f"{last.message} The operator keeps retrying the failed pods (status.run.retryAt)."
            else:
                why = last.message
            return Step(ended=Ended(code, f"{last.outcome} ({last.reason}): {why}"), accepted=True,
                        done=(last.done or 0) + (last.failed or 0), total=last.targets, failures=_failures(st))
        run = st.run
        if run is None or run.token != value:
            return Step()
        done = run.targets - len(run.pending)
        note = f"{len(run.failed) + len(run.permanent)} failed" if run.failed or run.permanent else ""
        if run.wave_resume_at:
            note = f"next wave at {run.wave_resume_at}"
        return Step(accepted=True, done=done, total=run.targets, failures=_failures(st), note=note)

    return check


def dry_run(kind: Kind, value: str) -> Check:
    """A dry-run token: ended when status.lastDryRun carries it (the pods a real run would touch)."""

    def check(obj: dict[str, Any]) -> Step:
        st = role_status(kind, obj)
        plan = st.last_dry_run
        if plan is None or plan.token != value:
            return Step()
        pods = ", ".join(plan.pods or []) or "none"
        return Step(ended=Ended(ExitCode.OK, f"a real run would act on {plan.targets} pods: {pods}"), accepted=True,
                    done=plan.targets, total=plan.targets)

    return check


def settled(kind: Kind, generation: int | None, want: str) -> Check:
    """A stop or start (spec.stopped, or an override): ended when the operator has acted on `generation` and
    the phase is `want` (Stopped, Running), or when it is Stalled (a fight, a missing workload, an aborted
    drain)."""

    def check(obj: dict[str, Any]) -> Step:
        st = role_status(kind, obj)
        if generation is not None and (st.observed_generation or 0) < generation:
            return Step(note="waiting for the operator")
        stalled = condition(st, "Stalled")
        if stalled is not None and stalled.status == "True":
            return Step(ended=Ended(ExitCode.STALLED, f"Stalled ({stalled.reason}): {stalled.message}"),
                        accepted=True)
        replicas, ready = st.replicas or 0, st.ready_replicas or 0
        drain = getattr(st, "drain", None)
        note = f"phase {st.phase}"
        if drain is not None:
            note = f"draining: {drain.figure} {drain.value} (until {drain.deadline})"
        if st.phase == want == "Stopped":
            return Step(ended=Ended(ExitCode.OK, f"stopped; {st.remembered_replicas} replicas remembered"),
                        accepted=True, done=1, total=1)
        if st.phase == want == "Running" and ready >= replicas:
            return Step(ended=Ended(ExitCode.OK, f"running with {replicas} replicas ({ready} ready)"),
                        accepted=True, done=ready, total=replicas or None)
        total = (replicas or None) if want == "Running" else None
        return Step(accepted=True, done=ready if want == "Running" else 0, total=total, note=note)

    return check


def maintenance_run(dry_run: bool) -> Check:
    """A one-shot DatabaseMaintenance: ended at phase Succeeded (a dry run: with its plan), Failed or
    Cancelled; progress is rows deleted of rows matched."""

    def check(obj: dict[str, Any]) -> Step:
        st = DatabaseMaintenanceStatus.model_validate(obj.get("status") or {})
        matched = sum(r.matched_at_start or 0 for r in st.operations or [])
        deleted = sum(r.rows_deleted or 0 for r in st.operations or [])
        if st.phase in (None, "Pending", "Queued"):
            return Step(accepted=st.phase == "Queued", note=st.phase or "")
        ended = None
        if st.phase == "Succeeded" and (st.dry_run or False) == dry_run:
            complete = condition(st, "Complete")
            ended = Ended(ExitCode.OK, complete.message if complete else "succeeded")
        elif st.phase == "Failed":
            stalled = condition(st, "Stalled")
            failed = condition(st, "Failed")
            code = ExitCode.STALLED if stalled is not None and stalled.status == "True" else ExitCode.TARGETS_FAILED
            ended = Ended(code, f"Failed ({failed.reason if failed else 'RunFailed'}): "
                                f"{failed.message if failed else ''}")
        elif st.phase == "Cancelled":
            ended = Ended(ExitCode.CANCELLED, f"Cancelled: {st.rows_deleted or 0} rows deleted before that")
        if dry_run:  # a plan: its rows are counted, none deleted
            return Step(ended=ended, accepted=True, done=matched, total=matched or None, note="rows counted")
        return Step(ended=ended, accepted=True, done=deleted, total=matched or None, note=f"{deleted} rows deleted")

    return check


def run_key(kind: Kind, obj: dict[str, Any]) -> str | None:
    """What rolecall.dev/cancel must name to cancel what runs now: the run's token, spec time or slot."""
    if kind is DATABASE_MAINTENANCE:
        st = DatabaseMaintenanceStatus.model_validate(obj.get("status") or {})
        return st.scheduled_at if st.phase == "Running" else None
    run = role_status(kind, obj).run
    return (run.token or run.cleared_after or run.scheduled_at) if run is not None else None


def cancelled(kind: Kind, key: str) -> Check:
    """A cancel: ended when no run carries `key` any more; OK when it ended Cancelled."""

    def check(obj: dict[str, Any]) -> Step:
        if run_key(kind, obj) == key:
            return Step(accepted=True, note="targets in flight finish")
        detail = ""
        if kind is DATABASE_MAINTENANCE:
            st = DatabaseMaintenanceStatus.model_validate(obj.get("status") or {})
            outcome = st.phase or "Unknown"
            detail = f"{st.rows_deleted or 0} rows deleted"
        else:
            last = role_status(kind, obj).last_request
            outcome = last.outcome if last is not None else "Unknown"
            if last is not None:
                detail = f"{last.done or 0} pods done, {last.not_started or 0} never started"
        if outcome == "Cancelled":
            return Step(ended=Ended(ExitCode.OK, f"cancelled: {detail}"), accepted=True)
        code = BY_OUTCOME.get(outcome, ExitCode.TARGETS_FAILED)
        return Step(ended=Ended(code, f"the request ended {outcome} before the cancel took effect ({detail})"),
                    accepted=True)

    return check
