"""Spec and status pieces shared by the role kinds (targets, stop/start, runs, per-pod results)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from rolecall.api.schedule import CronSchedule, Duration, TimeRange, TimeZone, WindowDays
from rolecall.api.types import (
    MAX_NAME,
    RFC3339_PATTERN,
    Condition,
    LabelMap,
    LabelSelector,
    Model,
    WorkloadRef,
    checked_time,
)

MAX_POD_RESULTS = 20  # the last K per-pod results kept in status
MAX_FAILED_PODS = 50  # failed pods named in status; the count is exact even past this
MAX_NODES = 100
MAX_HISTORY = 50  # requests status.history may keep (historyLimit): counts only, far below etcd's object limit
DEFAULT_HISTORY = 10

_NONEMPTY_SELECTOR = ("(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                      "(has(self.matchExpressions) && size(self.matchExpressions) > 0)")

RequestTime = Annotated[
    str,
    AfterValidator(checked_time),
    WithJsonSchema({
        "type": "string", "maxLength": 40,
        "x-kubernetes-validations": [{
            # The pattern admits only dates that exist (not 2026-02-30) and demands an offset.
            "rule": f"self.matches('{RFC3339_PATTERN}')".replace("\\", "\\\\"),
            "message": "must be an RFC 3339 time with an offset, e.g. 2026-11-25T10:00:00Z or "
                       "2026-11-25T11:00:00+01:00 (on a date that exists)",
            "reason": "FieldValueInvalid"}],
    }),
]

IntOrPercent = Annotated[
    int | str,
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",
            "message": "must be a whole number of pods (1 or more) or a percentage of the targets from 1% to 100%",
            "reason": "FieldValueInvalid"}],
    }),
]


def target_selector() -> Any:
    return Field(
        description="Picks the target Pods in this resource's own namespace by label. Required and not empty "
                    "(an empty selector would pick every pod in the namespace).",
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": _NONEMPTY_SELECTOR,
            "message": "selector must not be empty: set matchLabels or matchExpressions to pick the target pods",
            "reason": "FieldValueRequired"}]})


class TargetsSpec(Model):
    """Which pods a role resource acts on, and how many at once."""

    selector: LabelSelector = target_selector()
    node_selector: LabelMap | None = Field(
        default=None,
        description="Only act on target pods running on nodes with all these labels (status groups results "
                    "per node).")
    concurrency: IntOrPercent = Field(
        default=10, description="How many pods are acted on at once: a number, or a percentage of the targets "
                                "(rounded up). Default 10.")
    timeout_seconds: int = Field(default=30, ge=1, le=3600,
                                 description="Time allowed for the action on one pod, per attempt.")


RUN_WINDOW_RULES: list[Any] = [{
    "rule": "self.windows.all(w, has(w.days) ? !has(w.cron) && !has(w.duration) : has(w.cron) && has(w.duration))",
    "message": "each window sets either days (e.g. 'Mon-Fri 07:00-20:00') or both cron and duration",
    "fieldPath": ".windows", "reason": "FieldValueInvalid"}]


class RunWindow(Model):
    """One window in which the role runs: days and a local time range, or a cron start and a duration."""

    days: WindowDays | None = Field(default=None, description="Days and a local time range, e.g. 'Mon-Fri "
                                                              "07:00-20:00' or '* 22:00-06:00' (wraps midnight).")
    cron: CronSchedule | None = Field(default=None, description="Or: when a window opens (5 cron fields, or 6 with "
                                                                "seconds last) ...")
    duration: Duration | None = Field(default=None, description="... and how long it stays open, e.g. 4h, 90m, 10s.")

    @model_validator(mode="after")
    def _one_form(self) -> RunWindow:
        if (self.days is not None) == (self.cron is not None or self.duration is not None) or (
                self.days is None and (self.cron is None or self.duration is None)):
            raise ValueError(RUN_WINDOW_RULES[0]["message"])
        return self


class RunWindows(Model):
    """When the role should run; outside every window rolecall stops it, inside one it starts it again."""

    time_zone: TimeZone | None = Field(default=None, description="IANA time zone of the windows (default UTC).")
    windows: list[RunWindow] = Field(min_length=1, max_length=16, description="The role runs while any is open.")




OVERRIDE_RUNNING = "rolecall.dev/keep-running-until"
OVERRIDE_STOPPED = "rolecall.dev/keep-stopped-until"


class StopSpec(Model):
    workload_ref: WorkloadRef | None = Field(
        default=None, description="The Deployment or StatefulSet that runs the target pods; needed by `stopped`.")
    stopped: bool = Field(
        default=False,
        description="true scales the workload to 0 and remembers its replica count (in status and as the "
                    "workload annotation rolecall.dev/remembered-replicas); false restores exactly that count. "
                    "true always wins over runWindows and the keep-running-until override.")
    run_windows: RunWindows | None = Field(
        default=None, json_schema_extra={"x-kubernetes-validations": RUN_WINDOW_RULES},
        description="Hibernation: outside every window the role is stopped (replicas remembered, web "
                    "connections drained first), inside one it is started again. An annotation "
                    f"{OVERRIDE_RUNNING} or {OVERRIDE_STOPPED} (an RFC 3339 time) overrides the windows until "
                    "then; spec.stopped: true beats both.")


STOP_NEEDS_WORKLOAD = {
    "rule": "!has(self.stopped) || !self.stopped || has(self.workloadRef)",
    "message": "stopped: true needs spec.workloadRef: rolecall stops a role by scaling its Deployment or "
               "StatefulSet to 0",
    "fieldPath": ".stopped",
    "reason": "FieldValueRequired",
}
WINDOWS_NEED_WORKLOAD = {
    "rule": "!has(self.runWindows) || has(self.workloadRef)",
    "message": "runWindows needs spec.workloadRef: outside its windows rolecall stops the role by scaling its "
               "Deployment or StatefulSet to 0",
    "fieldPath": ".runWindows",
    "reason": "FieldValueRequired",
}

Phase = Literal["Pending", "Running", "Stopping", "Stopped", "Starting", "Clearing", "Compacting", "Degraded",
                "Stalled"]


class PodResult(Model):
    pod: str = Field(max_length=MAX_NAME, description="Pod name.")
    uid: str | None = Field(default=None, max_length=64, description="Pod UID.")
    node: str | None = Field(default=None, description="Node the pod ran on.")
    outcome: Literal["Done", "Failed", "Skipped"] = Field(description="Done, Failed or Skipped.")
    message: str | None = Field(default=None, max_length=1024, description="The engine's answer or error.")
    at: str | None = Field(default=None, description="When the outcome was recorded.")


class NodeSummary(Model):
    node: str = Field(description="Node name.")
    targets: int = Field(default=0, description="Target pods on the node.")
    done: int = Field(default=0, description="Pods done on the node.")
    failed: int = Field(default=0, description="Pods failed on the node.")


class RunLedger(Model):
    """The request being carried out: written before acting, advanced in batches, so a restart resumes it.

    A target leaves `pending` only with an outcome: into `failed` (retried later unless permanent) or done
    (done = targets - pending - failed). Nothing is recorded for a target whose action was not seen to finish.
    """

    action: str = Field(description="The action, e.g. clear.")
    token: str | None = Field(default=None, description="The request annotation value this run handles, if any.")
    cleared_after: str | None = Field(default=None, description="The spec time this run satisfies, if any.")
    accepted_at: str = Field(description="When the operator accepted the request (microsecond precision).")
    requester: str | None = Field(default=None, description="Who asked (recorded at admission for this trigger).")
    requester_groups: list[str] | None = Field(default=None, max_length=64,
                                               description="The requester's groups at admission.")
    holder: str | None = Field(default=None, max_length=128,
                               description="The operator process that last wrote this run; another one resuming "
                                           "it reports the interruption.")
    targets: int = Field(default=0, description="Number of target pods (a DatabaseMaintenance: of its steps).")
    pending: list[str] = Field(default_factory=list, description="UIDs of target pods without an outcome yet (a "
                                                                 "DatabaseMaintenance: indexes of its steps).")
    failed: list[str] = Field(default_factory=list, description="UIDs of target pods that failed; retried with "
                                                                "backoff.")
    permanent: list[str] = Field(default_factory=list, description="UIDs of target pods that failed for a reason "
                                                                   "retrying cannot fix (never retried).")
    scheduled_at: str | None = Field(default=None, description="The schedule slot this run is for, if any.")
    deadline: str | None = Field(default=None, description="requestTimeoutSeconds after it was accepted: no target "
                                                            "starts after this.")
    waves_done: int | None = Field(default=None, description="Waves carried out so far (with waves set).")
    wave_resume_at: str | None = Field(default=None, description="When the next wave starts (kept here so a restart "
                                                                 "keeps the pause).")
    retries: int = Field(default=0, description="Retry passes over failed targets so far.")
    retry_at: str | None = Field(default=None, description="When failed targets are tried again (kept here so a "
                                                           "restart does not reset the backoff).")
    dry_run: bool | None = Field(default=None, description="A DatabaseMaintenance dry run: its steps report what "
                                                           "a real run would do and change nothing.")
    first_pass_done: bool = Field(default=False, description="Every target has had an outcome once; the request "
                                                              "is acknowledged and only failed targets are retried.")


class Waves(Model):
    """A guard for fan-out actions: a share of the targets at a time, then a pause, so that what sits behind
    them (a database refilling the caches) is not hit by every pod at once."""

    size: IntOrPercent = Field(description="Pods per wave: a number, or a percentage of the targets (rounded up).")
    pause_seconds: int = Field(ge=1, le=86400, description="The pause after each wave before the next one starts.")


RequestOutcome = Literal["Succeeded", "Failed", "Refused", "Stalled", "DryRun", "Cancelled", "TimedOut"]
CANCEL_ANNOTATION = "rolecall.dev/cancel"


def dry_run_annotation(action: str) -> str:
    """A dry run's request token: the targets are resolved and reported (status.lastDryRun), nothing touched."""
    return f"rolecall.dev/{action}-dry-run-requested-at"


class HistorySpec(Model):
    history_limit: int = Field(default=DEFAULT_HISTORY, ge=1, le=MAX_HISTORY,
                               description=f"How many ended requests status.history keeps, newest first (1 to "
                                           f"{MAX_HISTORY}, default {DEFAULT_HISTORY}).")


DEFAULT_MAX_RETRIES = 5


class RequestLimits(HistorySpec):
    """Limits on a role's fan-out requests (clear, compact)."""

    request_timeout_seconds: int | None = Field(
        default=None, ge=1, le=604800,
        description="A request still running this long after it was accepted ends TimedOut: no target starts "
                    "after that, targets in flight finish (at most `concurrency`), and status counts the ones "
                    "not started. A timed-out or cancelled spec time is not asked again (set a new one). "
                    "Default: no limit.")
    max_retries: int = Field(
        default=DEFAULT_MAX_RETRIES, ge=0, le=100,
        description="Retry passes over failed targets (10 s, doubling to 5 min apart) before the request ends "
                    "Stalled with reason RetriesExhausted (default 5, about 5 minutes). A failure retrying cannot "
                    "fix (memcached -F, a Redis ACL, a missing table) ends it Stalled at once, reason "
                    "TargetsRefused. Either way the request is handled: a new token or spec time asks again.")


class LastRequest(Model):
    """The last request that ended (acknowledged), with its outcome: the same shape on every kind.

    Acknowledged is not succeeded: a request that partly failed, was refused or stalled is acknowledged too
    (its token echoed, so waiting clients end) and says here how it ended.
    """

    action: str = Field(max_length=32, description="The action, e.g. clear, compact, refresh.")
    token: str | None = Field(default=None, max_length=256,
                              description="The request annotation value, copied verbatim (absent for spec times).")
    requested_after: str | None = Field(default=None, max_length=40,
                                        description="The spec time (clearedAfter, compactedAfter) it satisfies.")
    scheduled_at: str | None = Field(default=None, max_length=40,
                                     description="The schedule slot it ran for (a scheduled request).")
    outcome: RequestOutcome = Field(description="Succeeded, Failed (some targets failed; they are retried), "
                                                "Refused (the requester lacks the right), Stalled (retrying "
                                                "cannot help until something is fixed), Cancelled or TimedOut "
                                                "(no target started after that; see notStarted).")
    reason: str = Field(max_length=128, description="A CamelCase reason from the documented list.")
    message: str = Field(default="", max_length=2048, description="What happened, for people.")
    accepted_at: str | None = Field(default=None, description="When the operator accepted it.")
    finished_at: str | None = Field(default=None, description="When it was acknowledged (or last updated).")
    targets: int | None = Field(default=None, description="Target pods.")
    done: int | None = Field(default=None, description="Targets done.")
    failed: int | None = Field(default=None, description="Targets failed.")
    not_started: int | None = Field(default=None, description="Targets never started (a cancelled or timed-out "
                                                              "request).")
    retry_at: str | None = Field(default=None, description="A request by spec time that did not succeed is tried "
                                                           "again at this time.")
    attempts: int | None = Field(default=None, description="How often a request by spec time was tried.")
    observed_generation: int | None = Field(default=None, description="The spec generation it ended under.")


class ScheduleSpec(Model):
    """A cron schedule for one action: every slot is a request, as if someone had asked at that time."""

    cron: CronSchedule = Field(description="When: 5 cron fields (minute hour day-of-month month day-of-week), or 6 "
                                           "with seconds last, e.g. '0 3 * * *' or '* * * * * */10' (every 10 s).")
    time_zone: TimeZone | None = Field(default=None, description="IANA time zone of the cron fields (default UTC), "
                                                                 "one of the names of the tzdata package the "
                                                                 "operator ships with, e.g. Europe/Berlin.")
    starting_deadline_seconds: int | None = Field(
        default=None, ge=1, le=31536000,
        description="A slot the operator gets to later than this after its time is recorded as missed and not "
                    "run. Default: the latest missed slot runs once, however late (earlier ones never).")
    suspend: bool = Field(default=False, description="true: no new slot starts (a running one finishes). Slots "
                                                     "passing while suspended are never run.")
    start_window: TimeRange | None = Field(
        default=None, description="Local times (HH:MM-HH:MM in timeZone, may wrap midnight) in which a due slot may "
                                  "start; a slot due outside it waits for the window to open (the latest such "
                                  "slot runs once).")
    dry_run: bool = Field(default=False, description="true: every slot is a dry run (the targets are reported, "
                                                     "nothing is changed): preview a new schedule.")


class ScheduleStatus(Model):
    """Where a schedule stands (one per scheduled action)."""

    action: str = Field(max_length=32, description="The scheduled action, e.g. clear.")
    cron: str = Field(max_length=128, description="The schedule these figures are for.")
    time_zone: str | None = Field(default=None, max_length=64, description="Its time zone.")
    since: str = Field(description="When the operator first saw this schedule: slots before it never run.")
    last_schedule_time: str | None = Field(default=None, description="The latest slot handled (run, or missed).")
    next_schedule_time: str | None = Field(default=None, description="The next slot.")
    missed: int = Field(default=0, description="Slots that passed without a run (operator down, suspended, "
                                               "starting deadline), counted up to 1000 per gap.")
    suspended: bool = Field(default=False, description="spec suspend is true.")
    waits_for_window: str | None = Field(default=None, description="A due slot waits for startWindow to open at "
                                                                   "this time.")


HistoryTrigger = Literal["Annotation", "SpecTime", "Schedule", "Create", "Spec", "Window", "Override"]


class HistoryEntry(Model):
    """One ended request: counts and failed pod names only, so the history stays small."""

    action: str = Field(max_length=32, description="The action, e.g. clear.")
    trigger: HistoryTrigger = Field(description="What asked: Annotation (a token), SpecTime, Schedule, Create (a "
                                                "one-shot DatabaseMaintenance: its creation, or dryRun turned "
                                                "false); for a stop or start: Spec (spec.stopped), Window "
                                                "(runWindows) or Override.")
    token: str | None = Field(default=None, max_length=256, description="The annotation token, if any.")
    requested_after: str | None = Field(default=None, max_length=40, description="The spec time, if any.")
    scheduled_at: str | None = Field(default=None, max_length=40, description="The schedule slot, if any.")
    requester: str | None = Field(default=None, max_length=256, description="Who asked (recorded at admission).")
    accepted_at: str | None = Field(default=None, description="When it was accepted.")
    finished_at: str | None = Field(default=None, description="When it ended.")
    targets: int | None = Field(default=None, description="Target pods.")
    done: int | None = Field(default=None, description="Targets done.")
    failed: int | None = Field(default=None, description="Targets failed.")
    failed_pods: list[str] | None = Field(default=None, max_length=5, description="Up to 5 failed pods by name.")
    replicas: int | None = Field(default=None, description="A stop: the replicas scaled from; a start: scaled to.")
    dry_run: bool = Field(default=False, description="A dry run: nothing was changed.")
    rows_deleted: int | None = Field(default=None, description="A DatabaseMaintenance: rows its clearOldData steps "
                                                               "deleted (committed batches).")
    bytes_reclaimed: int | None = Field(default=None, description="A DatabaseMaintenance: bytes its compact steps "
                                                                  "freed.")
    outcome: str = Field(max_length=32, description="How it ended: Succeeded, Failed, Refused, Stalled, DryRun, "
                                                   "Cancelled, TimedOut.")


class DryRunPlan(Model):
    """What a real run of the action would touch now (a dry run changes nothing)."""

    action: str = Field(max_length=32, description="The action previewed, e.g. clear.")
    token: str = Field(max_length=256, description="The <action>-dry-run-requested-at value, copied verbatim.")
    planned_at: str = Field(description="When the targets were resolved.")
    targets: int = Field(description="How many target pods a real run would act on.")
    pods: list[str] | None = Field(default=None, max_length=100, description="Those pods by name (the first 100).")


class RunState(Model):
    """The effective run state and which rule decided it (spec.stopped > override > windows > running)."""

    desired: Literal["Running", "Stopped"] = Field(description="What rolecall holds the role's workload at now.")
    decided_by: Literal["Spec", "Override", "Window", "Default"] = Field(
        description="Spec (stopped: true), Override (keep-running-until / keep-stopped-until), Window (runWindows), "
                    "Default (running).")
    reason: str = Field(max_length=512, description="Why, for people.")
    until: str | None = Field(default=None, description="When this decision changes by itself (a window opens or "
                                                        "closes, an override expires).")


class ReplicasFight(Model):
    """A stop undone by another client (e.g. Argo CD or Flux putting Git's replicas back): rolecall reports it
    and does not scale again under this spec generation, so the two never take turns."""

    manager: str = Field(max_length=256, description="The field manager that set spec.replicas (managedFields).")
    replicas: int = Field(description="The replicas it set.")
    detected_at: str = Field(description="When rolecall saw it.")
    generation: int | None = Field(default=None, description="The spec generation it was seen under: a new one "
                                                             "(or the role running again) lets rolecall stop again.")


class RequestStatus(Model):
    """Status fields of every kind whose actions run on the request core."""

    run: RunLedger | None = Field(default=None, description="The request in progress (the ledger).")
    last_request: LastRequest | None = Field(default=None, description="The last request that ended, and how.")
    history: list[HistoryEntry] | None = Field(default=None, max_length=MAX_HISTORY,
                                               description="The last requests that ended (spec historyLimit, "
                                                           "default 10), newest first (a retried request keeps "
                                                           "one entry).")
    last_dry_run: DryRunPlan | None = Field(default=None, description="The last dry run handled, and its plan.")
    schedules: list[ScheduleStatus] | None = Field(default=None, max_length=8,
                                                   description="Per scheduled action: last and next slot.")


class RoleStatus(RequestStatus):
    """Status fields every role kind has."""

    phase: Phase | None = Field(default=None, description="What the role is doing now.")
    observed_generation: int | None = Field(default=None, description="The spec generation last acted on.")
    replicas: int | None = Field(default=None, description="Replicas of the workload now (desired).")
    ready_replicas: int | None = Field(default=None, description="Ready replicas of the workload.")
    remembered_replicas: int | None = Field(
        default=None, description="Replicas the workload had before it was stopped; restored on start.")
    targets: int | None = Field(default=None, description="Target pods of the last action.")
    done: int | None = Field(default=None, description="Pods done in the last action.")
    failed: int | None = Field(default=None, description="Pods failed in the last action.")
    failed_pods: list[PodResult] | None = Field(
        default=None, max_length=MAX_FAILED_PODS, description="Failed pods by name with the engine's error.")
    recent_results: list[PodResult] | None = Field(
        default=None, max_length=MAX_POD_RESULTS, description=f"The last {MAX_POD_RESULTS} per-pod results.")
    nodes: list[NodeSummary] | None = Field(default=None, max_length=MAX_NODES,
                                            description="Results of the last action grouped per node.")
    replicas_fought: ReplicasFight | None = Field(
        default=None, description="A stop another client undid, if any (Stalled, reason ReplicasFought).")
    run_state: RunState | None = Field(default=None, description="With runWindows or an override: the effective "
                                                                 "run state and why.")
    conditions: list[Condition] | None = Field(default=None, max_length=16,
                                               description="Ready, Reconciling, Stalled, Degraded, and per action "
                                                           "Cleared, Stopped, ...")
