"""When a request has ended, read from status through the API models: a token echoed with its outcome,
a stop or start settled under the new generation, a DatabaseMaintenance run finished. Each returns a
follow.Step; nothing here talks to the cluster."""

from __future__ import annotations

from typing import Any

from rolecall.api.kinds import DATABASE_MAINTENANCE, Kind
from rolecall.api.v1alpha1.common import RoleStatus
from rolecall_cli.exits import BY_OUTCOME, ExitCode
from rolecall_cli.follow import Check, Ended, Step


def status_of(kind: Kind, obj: dict[str, Any]) -> Any:
    """The object's status as the kind's model (every kind, DatabaseMaintenance too); absent fields as None."""
    return kind.status.model_validate(obj.get("status") or {})


def condition(st: Any, type_: str) -> Any:
    return next((c for c in st.conditions or [] if c.type == type_), None)


def _failures(st: RoleStatus) -> list[str]:
    return [f"{p.pod}: {p.message or p.outcome}" for p in st.failed_pods or []]


def token(kind: Kind, handled_field: str, annotation: str, value: str) -> Check:
    """A request token (clear-requested-at, compact-requested-at): accepted when status.run carries it,
    ended when handled_field echoes it; the outcome is status.lastRequest's. When someone sets a newer token
    before the operator took ours, the operator acts on that one only (it covers ours): follow that one."""
    following = [value]

    def check(obj: dict[str, Any]) -> Step:
        st = status_of(kind, obj)
        mine = following[-1]
        run = st.run
        if getattr(st, handled_field) != mine and (run is None or run.token != mine):
            newer = ((obj["metadata"].get("annotations") or {}).get(annotation))
            if newer and newer != mine:
                following.append(newer)
                mine = newer
        said = f"superseded by a newer request ({mine}), which covers it: " if mine != value else ""
        if getattr(st, handled_field) == mine:
            last = st.last_request
            if last is None or last.token != mine:
                outcome = next((h.outcome for h in st.history or [] if h.token == mine), "an outcome no longer shown")
                return Step(ended=Ended(BY_OUTCOME.get(outcome, ExitCode.OK), f"{said}{mine} ended {outcome}"),
                            accepted=True)
            code = BY_OUTCOME.get(last.outcome, ExitCode.TARGETS_FAILED)
            why = last.message
            if code is ExitCode.TARGETS_FAILED:
                why += " The operator keeps retrying the failed pods (status.run.retryAt)."
            return Step(ended=Ended(code, f"{said}{last.outcome} ({last.reason}): {why}"), accepted=True,
                        done=(last.done or 0) + (last.failed or 0), total=last.targets, failures=_failures(st))
        if run is None or run.token != mine:
            return Step(note=said.rstrip(": "))
        done = run.targets - len(run.pending)
        note = f"{len(run.failed) + len(run.permanent)} failed" if run.failed or run.permanent else ""
        if run.wave_resume_at:
            note = f"next wave at {run.wave_resume_at}"
        return Step(accepted=True, done=done, total=run.targets, failures=_failures(st), note=note)

    return check


def dry_run(kind: Kind, value: str) -> Check:
    """A dry-run token: ended when status.lastDryRun carries it (the pods a real run would touch)."""

    def check(obj: dict[str, Any]) -> Step:
        st = status_of(kind, obj)
        plan = st.last_dry_run
        if plan is None or plan.token != value:
            return Step()
        pods = ", ".join(plan.pods or []) or "none"
        return Step(ended=Ended(ExitCode.OK, f"a real run would act on {plan.targets} pods: {pods}"), accepted=True,
                    done=plan.targets, total=plan.targets)

    return check


def settled(kind: Kind, generation: int | None, want: str) -> Check:
    """A stop or start (spec.stopped, or an override): ended when the operator has acted on `generation` and
    the phase is `want` (Stopped, Running; Degraded counts as running once its pods are ready), or when it is
    Stalled (a fight, a missing workload, an aborted drain), or when a higher rule holds it the other way
    (spec.stopped, an override or a run window: nothing will change until that does)."""

    def check(obj: dict[str, Any]) -> Step:
        st = status_of(kind, obj)
        if generation is not None and (st.observed_generation or 0) < generation:
            return Step(note="waiting for the operator")
        stalled = condition(st, "Stalled")
        if stalled is not None and stalled.status == "True":
            return Step(ended=Ended(ExitCode.STALLED, f"Stalled ({stalled.reason}): {stalled.message}"),
                        accepted=True)
        held = st.run_state
        if held is not None and held.desired != want:
            hint = ("kubectl rolecall override KIND/NAME --keep-running-until <time>" if want == "Running"
                    else "kubectl rolecall stop KIND/NAME")
            return Step(ended=Ended(ExitCode.STALLED, f"held {held.desired.lower()} by {held.decided_by}: "
                                                      f"{held.reason} (to override: {hint})"), accepted=True)
        replicas, ready = st.replicas or 0, st.ready_replicas or 0
        drain = getattr(st, "drain", None)
        note = f"phase {st.phase}"
        if drain is not None:
            note = f"draining: {drain.figure} {drain.value} (until {drain.deadline})"
        if st.phase == want == "Stopped":
            return Step(ended=Ended(ExitCode.OK, f"stopped; {st.remembered_replicas} replicas remembered"),
                        accepted=True, done=1, total=1)
        if want == "Running" and st.phase in ("Running", "Degraded") and ready >= replicas:
            degraded = condition(st, "Degraded") if st.phase == "Degraded" else None
            also = f"; Degraded ({degraded.reason}): {degraded.message}" if degraded is not None else ""
            return Step(ended=Ended(ExitCode.OK, f"running with {replicas} replicas ({ready} ready){also}"),
                        accepted=True, done=ready, total=replicas or None)
        total = (replicas or None) if want == "Running" else None
        return Step(accepted=True, done=ready if want == "Running" else 0, total=total, note=note)

    return check


def maintenance_run(dry_run: bool) -> Check:
    """A one-shot DatabaseMaintenance: ended at phase Succeeded (a dry run: with its plan), Failed or
    Cancelled; progress is rows deleted of rows matched."""

    def check(obj: dict[str, Any]) -> Step:
        st = status_of(DATABASE_MAINTENANCE, obj)
        matched = sum(r.matched_at_start or 0 for r in st.operations or [])
        deleted = sum(r.rows_deleted or 0 for r in st.operations or [])
        if st.phase in (None, "Pending", "Queued"):
            return Step(accepted=st.phase == "Queued", note=st.phase or "")
        ended = None
        if st.phase == "Succeeded" and (st.dry_run or False) == dry_run:
            complete = condition(st, "Complete")
            ended = Ended(ExitCode.OK, complete.message if complete else "succeeded")
        elif st.phase == "Failed":  # a one-shot run is not tried again (like a Job): stalled, or refused
            failed = condition(st, "Failed")
            reason = failed.reason if failed else "RunFailed"
            code = ExitCode.REFUSED if reason == "RequesterNotAllowed" else ExitCode.REQUEST_TIMED_OUT \
                if reason == "TimedOut" else ExitCode.STALLED
            ended = Ended(code, f"Failed ({reason}): {failed.message if failed else ''}")
        elif st.phase == "Cancelled":
            ended = Ended(ExitCode.CANCELLED, f"Cancelled: {st.rows_deleted or 0} rows deleted before that")
        if dry_run:  # a plan: its rows are counted, none deleted
            return Step(ended=ended, accepted=True, done=matched, total=matched or None, note="rows counted")
        return Step(ended=ended, accepted=True, done=deleted, total=matched or None, note=f"{deleted} rows deleted")

    return check


def run_key(kind: Kind, obj: dict[str, Any]) -> str | None:
    """What rolecall.dev/cancel must name to cancel what runs now: the run's token, spec time or slot."""
    if kind is DATABASE_MAINTENANCE:
        st = status_of(DATABASE_MAINTENANCE, obj)
        return st.scheduled_at if st.phase == "Running" else None
    run = status_of(kind, obj).run
    return (run.token or run.cleared_after or run.scheduled_at) if run is not None else None


def cancelled(kind: Kind, key: str) -> Check:
    """A cancel: ended when no run carries `key` any more; OK when it ended Cancelled."""

    def check(obj: dict[str, Any]) -> Step:
        if run_key(kind, obj) == key:
            return Step(accepted=True, note="targets in flight finish")
        detail = ""
        if kind is DATABASE_MAINTENANCE:
            st = status_of(DATABASE_MAINTENANCE, obj)
            outcome = st.phase or "Unknown"
            detail = f"{st.rows_deleted or 0} rows deleted"
        else:
            last = status_of(kind, obj).last_request
            outcome = last.outcome if last is not None else "Unknown"
            if last is not None:
                detail = f"{last.done or 0} pods done, {last.not_started or 0} never started"
        if outcome == "Cancelled":
            return Step(ended=Ended(ExitCode.OK, f"cancelled: {detail}"), accepted=True)
        code = BY_OUTCOME.get(outcome, ExitCode.TARGETS_FAILED)
        return Step(ended=Ended(code, f"the request ended {outcome} before the cancel took effect ({detail})"),
                    accepted=True)

    return check
