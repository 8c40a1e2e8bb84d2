"""Phase, Ready, Reconciling and Stalled: computed in one place from what a reconcile found, before every
status write, so every write (intent, progress, outcome) carries conditions that agree with it.

kstatus (Flux `wait: true`, Argo CD, `kubectl wait`) reads Reconciling, Stalled and observedGeneration:
| situation                                         | Reconciling | Stalled | Ready |
| an action under way                               | True        | False   | False |
| some targets failed, retried with backoff         | True        | False   | False |
| retrying cannot help (the reason says what to fix)| False       | True    | False |
| idle (a future clearedAfter waits on its timer)   | False       | False   | True  |
"""

from __future__ import annotations

from typing import Any

from rolecall.api.v1alpha1.common import LastRequest, RoleStatus


def stalled_by(last: LastRequest | None, generation: int | None) -> tuple[str, str] | None:
    """A request refused or stalled under the current spec keeps the object Stalled until the next request
    (or a spec change) says otherwise: retrying it as it is cannot help."""
    if last is None or last.outcome not in ("Refused", "Stalled") or last.observed_generation != generation:
        return None
    return last.reason, last.message


def summarize(ctx: Any) -> None:
    s = ctx.out.status
    gen = ctx.generation
    # A request under way (status.run) is not stalled by how the one before it ended.
    ended = None if getattr(s, "run", None) is not None else getattr(s, "last_request", None)
    stalled = ctx.stalled or stalled_by(ended, gen)
    busy = None if stalled else ctx.busy
    _reconciling_and_stalled(ctx, busy, stalled)
    s.observed_generation = gen
    if not isinstance(s, RoleStatus):
        # e.g. a DatabaseMaintenance: its phase and Complete/Failed are its own, like a Job's.
        why = stalled or busy
        if why:
            ctx.condition("Ready", False, why[0], why[1])
        else:
            ctx.condition("Ready", True, "Idle", f"The {ctx.kind.kind} is waiting for nothing.")
        return
    phase: Any
    if stalled:
        phase = "Stalled"
    elif ctx.busy_phase:
        phase = ctx.busy_phase
    elif ctx.stopping:
        phase = "Stopping"
    elif ctx.starting:
        phase = "Starting"
    elif ctx.condition_status("Stopped") == "True":
        phase = "Stopped"  # by spec.stopped, a run window or an override: the workload is at 0 as decided
    elif ctx.condition_status("Degraded") == "True":
        phase = "Degraded"
    else:
        phase = "Running"
    s.phase = phase
    what = ctx.kind.kind
    if phase == "Running" and not busy:
        ctx.condition("Ready", True, "Running", f"The {what} is running and nothing is pending.")
    elif phase == "Stopped" and not busy:
        ctx.condition("Ready", True, "Stopped", f"The {what} is stopped, as requested.")
    else:
        ctx.condition("Ready", False, phase, (stalled or busy or (phase, f"The {what} is {phase.lower()}."))[1])


def _reconciling_and_stalled(ctx: Any, busy: tuple[str, str] | None, stalled: tuple[str, str] | None) -> None:
    if stalled:
        ctx.condition("Stalled", True, stalled[0], stalled[1])
    else:
        ctx.condition("Stalled", False, "NotStalled", "Nothing stands in the way.")
    if busy:
        ctx.condition("Reconciling", True, busy[0], busy[1])
    else:
        ctx.condition("Reconciling", False, "Idle", "Nothing is under way.")
