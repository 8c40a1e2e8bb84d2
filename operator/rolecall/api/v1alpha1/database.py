"""DatabaseServer and DatabaseMaintenance: compact, clear old rows, stop, start and watch PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, model_validator

from rolecall.api.schedule import CronSchedule, TimeZone
from rolecall.api.types import MAX_NAME, Condition, Duration, Model, ObjectName, SecretKeyRef
from rolecall.api.v1alpha1.common import (
    STOP_NEEDS_WORKLOAD,
    WINDOWS_NEED_WORKLOAD,
    RequestLimits,
    RequestStatus,
    RequestTime,
    RoleStatus,
    ScheduleSpec,
    StopSpec,
    TargetsSpec,
)

COMPACT_ANNOTATION = "rolecall.dev/compact-requested-at"
MAX_OPERATIONS = 16

# SQL identifiers are validated here and still quoted by the driver (psycopg sql.Identifier) or, for the
# sqlite3 CLI, double-quoted: the pattern admits no quote, so quoting cannot be escaped.
Identifier = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 63,
    "x-kubernetes-validations": [{
        "rule": "self.matches('^[A-Za-z_][A-Za-z0-9_]*$')",
        "message": "must be a plain SQL identifier: a letter or _, then letters, digits or _ (at most 63), "
                   "e.g. events or created_at",
        "reason": "FieldValueInvalid"}]})]

# A table as clearOldData names it: `events`, or `archive.events` in another schema (each part validated like an
# identifier, then quoted by the driver as a schema-qualified name).
QualifiedTable = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 127,
    "x-kubernetes-validations": [{
        "rule": "self.matches('^([A-Za-z_][A-Za-z0-9_]{0,62}[.])?[A-Za-z_][A-Za-z0-9_]{0,62}$')",
        "message": "must be a table name, optionally schema-qualified: plain SQL identifiers (a letter or _, then "
                   "letters, digits or _, at most 63 each), e.g. events or archive.events",
        "reason": "FieldValueInvalid"}]})]

SqlitePath = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 1024,
    "x-kubernetes-validations": [
        {"rule": "self.startsWith('/')", "message": "must be an absolute path inside the pod, e.g. /data/app.db",
         "reason": "FieldValueInvalid"},
        {"rule": "self.matches('^[A-Za-z0-9._/+-]+$')",
         "message": "may hold only letters, digits and . _ / + - (no spaces, quotes or shell characters)",
         "reason": "FieldValueInvalid"},
        {"rule": "!self.contains('/../') && !self.endsWith('/..')", "message": "must not contain ..",
         "reason": "FieldValueInvalid"}]})]

class DatabaseServerSpec(TargetsSpec, StopSpec, RequestLimits):
    """The desired state of a database role: where it runs, whether it is stopped, when it was compacted."""

    engine: Literal["postgresql", "sqlite"] = Field(description="The database engine: postgresql or sqlite.")
    port: int | None = Field(default=None, ge=1, le=65535, description="PostgreSQL's port on each pod (default 5432).")
    database: str | None = Field(
        default=None, max_length=63, description="PostgreSQL: the database to act on (default postgres).")
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="PostgreSQL: user (usernameKey, default postgres) and password from a Secret "
                                  "in this namespace.")
    path: SqlitePath | None = Field(
        default=None, description="SQLite: absolute path of the database file inside the pod. Reached through "
                                  "pod exec with the sqlite3 CLI, which the container image must contain (many "
                                  "application images do not).")
    container: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                  description="SQLite: the container to exec into (default: the pod's first).")
    compacted_after: RequestTime | None = Field(
        default=None,
        description="The database has been compacted at or after this time (PostgreSQL VACUUM (ANALYZE), SQLite "
                    "VACUUM). Re-applying the same value never compacts again; a future time waits until then.")
    compact_schedule: ScheduleSpec | None = Field(
        default=None,
        description="Compact on a schedule: each slot compacts once, like a compact-requested-at token set at that "
                    "time. Setting or changing it is a compaction request (admission checks the right); before "
                    "each slot runs, the recorded compact requester must still hold it.")
    status_interval_seconds: int = Field(
        default=60, ge=10, le=86400, description="How often size and connection figures are refreshed.")
    timeout_seconds: int = Field(default=600, ge=1, le=86400,
                                 description="statement_timeout of each action (a compaction may be slow).")


DATABASE_RULES = [
    STOP_NEEDS_WORKLOAD,
    WINDOWS_NEED_WORKLOAD,
    {"rule": "self.engine != 'sqlite' || has(self.path)",
     "message": "engine sqlite needs spec.path: the database file inside the pod, e.g. /data/app.db",
     "fieldPath": ".path", "reason": "FieldValueRequired"},
    {"rule": "self.engine != 'postgresql' || !has(self.path)",
     "message": "spec.path is for SQLite; PostgreSQL is reached at the pod IP (spec.database names the database)",
     "fieldPath": ".path", "reason": "FieldValueForbidden"},
]


class TableFigures(Model):
    table: str = Field(max_length=MAX_NAME, description="Schema-qualified table name.")
    dead_tuples: int = Field(description="PostgreSQL's estimate of dead rows (n_dead_tup).")
    live_tuples: int = Field(description="PostgreSQL's estimate of live rows (n_live_tup).")


class BatchRecord(Model):
    """A batch whose DELETE ran and whose COMMIT was not yet confirmed: recorded before the COMMIT, settled after
    a crash by asking the database (PostgreSQL: the transaction's status; SQLite: the rowid range)."""

    action: Literal["delete", "detach", "drop"] = Field(
        default="delete", description="delete (rows of one table), detach or drop (a partition entirely older than "
                                      "the cut-off, with wholePartitions DetachAndDrop).")
    part: str = Field(max_length=MAX_NAME, description="The physical table (partition, child) it deletes from.")
    receipt: str = Field(max_length=64, description="The engine's record of it, e.g. txid:1234 or rowid:10..20.")
    rows: int = Field(description="Rows its DELETE deleted (counted only once it is known to have committed).")


class OperationResult(Model):
    """What one operation did (one entry per spec.operations item, in order)."""

    type: Literal["compact", "clearOldData"] = Field(description="compact or clearOldData.")
    target: str | None = Field(default=None, max_length=512, description="Table(s) acted on, if any.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"] = Field(
        default="Pending", description="Where the operation is (Cancelled: the run was cancelled while it ran).")
    cutoff: str | None = Field(default=None, max_length=64,
                               description="clearOldData: rows older than this are deleted (computed once by the "
                                           "database, or spec cutoff; in the column's terms for SQLite).")
    matched_at_start: int | None = Field(default=None, description="clearOldData: rows older than the cut-off "
                                                                   "when it was computed (a dry run: the rows a "
                                                                   "real run would delete now, before maxRows).")
    null_rows: int | None = Field(default=None, description="clearOldData: rows whose time is NULL (never deleted).")
    parts: int | None = Field(default=None, description="clearOldData: physical tables (the table, its partitions "
                                                        "or children) rows are deleted from.")
    notes: list[str] | None = Field(default=None, max_length=16,
                                    description="clearOldData: what deleting sets off (cascading foreign keys, "
                                                "triggers, row-level security), found before anything is deleted.")
    remaining: int | None = Field(default=None, description="clearOldData: rows older than the cut-off left.")
    rows_deleted: int | None = Field(default=None, description="clearOldData: the rows the committed batches "
                                                               "deleted (the sum of their row counts).")
    batches: int | None = Field(default=None, description="clearOldData: batches committed so far.")
    partitions_dropped: int | None = Field(default=None, description="clearOldData with wholePartitions "
                                                                     "DetachAndDrop: partitions dropped (their rows "
                                                                     "are in rowsDeleted).")
    pending_batch: BatchRecord | None = Field(default=None, description="clearOldData: a batch whose COMMIT is not "
                                                                        "confirmed yet (see BatchRecord).")
    bytes_before: int | None = Field(default=None, description="Size before (table(s) or database file).")
    bytes_after: int | None = Field(default=None, description="Size after.")
    started_at: str | None = Field(default=None, description="When the operation started.")
    completed_at: str | None = Field(default=None, description="When it ended.")
    duration_seconds: float | None = Field(default=None, description="How long it took.")
    error: str | None = Field(default=None, max_length=1024, description="Why it failed.")


class DatabaseServerStatus(RoleStatus):
    primary: str | None = Field(default=None, max_length=MAX_NAME,
                                description="The pod acted on (PostgreSQL: the one primary).")
    size_bytes: int | None = Field(default=None, description="Size on disk (database or file).")
    connections: int | None = Field(default=None, description="PostgreSQL: sessions in pg_stat_activity.")
    largest_tables: list[TableFigures] | None = Field(
        default=None, max_length=5, description="PostgreSQL: the largest tables with dead-tuple estimates.")
    refreshed_at: str | None = Field(default=None, description="When these figures last changed.")
    last_compacted_at: str | None = Field(default=None, description="When the last compaction began.")
    last_handled_compact_request: str | None = Field(
        default=None, description=f"The last {COMPACT_ANNOTATION} value handled, copied verbatim.")
    last_compaction: OperationResult | None = Field(default=None, description="The last compaction's result.")
    last_clear_old_data: OperationResult | None = Field(
        default=None, description="The last clearOldData result of a DatabaseMaintenance on this database.")


class DatabaseServer(Model):
    """A database role (PostgreSQL or SQLite pods): compact, stop, start, size and connections."""

    spec: DatabaseServerSpec
    status: DatabaseServerStatus | None = None


# --- DatabaseMaintenance ------------------------------------------------------------------------------

class Compact(Model):
    full: bool = Field(default=False, description="PostgreSQL: VACUUM FULL (rewrites tables, takes an ACCESS "
                                                  "EXCLUSIVE lock) instead of VACUUM (ANALYZE).")
    tables: list[Identifier] | None = Field(default=None, max_length=32,
                                            description="Only these tables (default: the whole database).")


MAX_ROWS_WITH_DROPS = ("clearOldData's maxRows cannot be combined with wholePartitions DetachAndDrop: a partition "
                       "is dropped whole, whatever its rows")


class ClearOldData(Model):
    table: QualifiedTable = Field(
        description="The table to delete old rows from: events, or schema.table (default: the search path). A "
                    "partitioned table or one with inheritance children is cleared in each partition or child "
                    "(rows are identified within their own physical table, and every DELETE checks the cut-off "
                    "again). Views, materialized views and foreign tables are refused.")
    timestamp_column: Identifier = Field(
        description="The column holding each row's time: PostgreSQL timestamp with or without time zone (the "
                    "latter read as UTC), date (old when the whole UTC day is before the cut-off), or an integer "
                    "with timestampFormat. Rows whose time is NULL are never deleted (status counts them).")
    older_than: Duration | None = Field(
        default=None, description="Rows older than this before the run started are deleted, e.g. 30d. Set this or "
                                  "cutoff.")
    cutoff: RequestTime | None = Field(
        default=None,
        description="Instead of olderThan: delete rows older than this fixed time, e.g. the cutoff a dry run "
                    "recorded (status.operations[].cutoff), so the real run deletes what the plan counted.")
    batch_size: int = Field(default=1000, ge=1, le=100000,
                            description="Rows deleted per batch; each batch is its own transaction.")
    max_rows: int | None = Field(default=None, ge=1, description="Stop after deleting this many rows (not with "
                                                                "wholePartitions DetachAndDrop: a partition is "
                                                                "dropped whole).")
    whole_partitions: Literal["Delete", "DetachAndDrop"] = Field(
        default="Delete",
        description="PostgreSQL, a table range-partitioned on timestampColumn: what to do with partitions entirely "
                    "older than the cut-off (upper bound at or before it). Delete (default): their rows are deleted "
                    "in batches like any other. DetachAndDrop: each is detached (CONCURRENTLY on PostgreSQL 14 or "
                    "later without a default partition; otherwise with a brief ACCESS EXCLUSIVE lock on the parent) "
                    "and dropped, as pg_partman's retention does: fast and without dead rows, but the partition "
                    "table is gone. A dry run names them, with their rows and the lock.")
    timestamp_format: Literal["unixSeconds", "unixMilliseconds", "iso8601"] | None = Field(
        default=None,
        description="How the column stores time. SQLite (required there): unixSeconds, unixMilliseconds or iso8601 "
                    "(UTC text such as 2026-11-25T10:00:00Z); SQLite compares INTEGER and TEXT without error, so a "
                    "column whose values do not match is refused before anything is deleted. PostgreSQL: only for "
                    "integer columns (unixSeconds or unixMilliseconds; a value of the other magnitude is refused).")


    @model_validator(mode="after")
    def _one_cutoff(self) -> ClearOldData:
        if (self.older_than is None) == (self.cutoff is None):
            raise ValueError("clearOldData sets exactly one of olderThan (e.g. 30d) or cutoff (a fixed RFC 3339 time)")
        if self.max_rows is not None and self.whole_partitions == "DetachAndDrop":
            raise ValueError(MAX_ROWS_WITH_DROPS)
        return self


class Operation(Model):
    """One step: set exactly one of compact or clearOldData."""

    compact: Compact | None = Field(default=None, description="Compact the database (VACUUM).")
    clear_old_data: ClearOldData | None = Field(default=None, description="Delete rows older than a cut-off.")


class DatabaseServerRef(Model):
    name: ObjectName = Field(description="Name of a DatabaseServer in this namespace.")


IMMUTABLE_FIELDS = ("databaseServerRef", "operations", "schedule", "timeZone", "window", "timeoutSeconds",
                    "ttlSecondsAfterFinished")


def _same(field: str) -> str:
    return f"(has(self.{field}) == has(oldSelf.{field})) && (!has(self.{field}) || self.{field} == oldSelf.{field})"


class DatabaseMaintenanceSpec(Model):
    """One maintenance job (like a Job), or a recurring one with a schedule (like a CronJob)."""

    database_server_ref: DatabaseServerRef = Field(description="The DatabaseServer to act on.")
    operations: list[Operation] = Field(min_length=1, max_length=MAX_OPERATIONS,
                                        description="Steps run in order; a failed step stops the run.")
    schedule: CronSchedule | None = Field(
        default=None,
        description="Cron schedule that makes this recurring, e.g. '0 3 * * *'. Runs missed while the operator "
                    "was down are run once, not once per missed time.")
    time_zone: TimeZone | None = Field(
        default=None, description="IANA time zone of the schedule and window (default UTC), one of the names of "
                                  "the tzdata package the operator ships with, e.g. Europe/Berlin.")
    window: str | None = Field(
        default=None, max_length=11, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Allowed start times, HH:MM-HH:MM in timeZone (may wrap midnight). A run due outside it "
                    "waits for the window to open.")
    suspend: bool = Field(default=False, description="true: no new scheduled runs start (a running one finishes).")
    dry_run: bool = Field(
        default=False,
        description="true: every run is a dry run: clearOldData reports its cut-off (computed by the database), "
                    "the rows older than it and the table size; compact reports the size; nothing is deleted or "
                    "compacted. May be changed after creation: setting it to false after a one-shot dry run runs "
                    "the operations for real (admission checks the run right again).")
    timeout_seconds: int = Field(default=3600, ge=1, le=604800,
                                 description="Limit for a whole run; also each statement's statement_timeout.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete this one-shot maintenance this long after it finished.")


MAINTENANCE_RULES = [
    {"rule": "self.operations.all(o, (has(o.compact) ? 1 : 0) + (has(o.clearOldData) ? 1 : 0) == 1)",
     "message": "each operation sets exactly one of compact or clearOldData", "fieldPath": ".operations",
     "reason": "FieldValueInvalid"},
    {"rule": " && ".join(_same(f) for f in IMMUTABLE_FIELDS),
     "message": "spec is immutable after creation, except suspend and dryRun: create a new DatabaseMaintenance "
                "instead"},
    {"rule": "self.operations.all(o, !has(o.clearOldData) || has(o.clearOldData.olderThan) != "
             "has(o.clearOldData.cutoff))",
     "message": "each clearOldData sets exactly one of olderThan (e.g. 30d) or cutoff (a fixed RFC 3339 time)",
     "fieldPath": ".operations", "reason": "FieldValueInvalid"},
    {"rule": "self.operations.all(o, !has(o.clearOldData) || !has(o.clearOldData.maxRows) || "
             "!has(o.clearOldData.wholePartitions) || o.clearOldData.wholePartitions != 'DetachAndDrop')",
     "message": MAX_ROWS_WITH_DROPS, "fieldPath": ".operations", "reason": "FieldValueInvalid"},
    {"rule": "has(self.schedule) || !has(self.window)", "message": "window needs a schedule",
     "fieldPath": ".window", "reason": "FieldValueForbidden"},
]

MaintenancePhase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]


class DatabaseMaintenanceStatus(RequestStatus):
    """A run on the request core (status.run is its ledger, lastRequest and history how runs ended), and the
    current or last run's steps."""

    phase: MaintenancePhase | None = Field(default=None, description="Pending, Queued, Running, Succeeded, Failed, "
                                                                    "Cancelled (rolecall.dev/cancel named the run's "
                                                                    "scheduledAt).")
    summary: str | None = Field(default=None, max_length=256,
                                description="The operations in short, e.g. clearOldData(events) + compact.")
    observed_generation: int | None = Field(default=None, description="The spec generation last acted on.")
    scheduled_at: str | None = Field(default=None, description="The schedule slot of the current or last run (a "
                                                                "one-shot: when it was accepted); "
                                                                "rolecall.dev/cancel names it to cancel the run.")
    started_at: str | None = Field(default=None, description="When the current or last run started.")
    completed_at: str | None = Field(default=None, description="When it ended.")
    operations: list[OperationResult] | None = Field(default=None, max_length=MAX_OPERATIONS,
                                                     description="Per-operation results of that run.")
    rows_deleted: int | None = Field(default=None, description="Rows deleted by that run.")
    bytes_reclaimed: int | None = Field(default=None, description="Bytes freed by that run's compactions.")
    dry_run: bool | None = Field(default=None, description="That run is (was) a dry run: operations[] hold the plan "
                                                           "(cutoff, matchedAtStart, bytesBefore); nothing changed.")
    next_run_at: str | None = Field(default=None, description="Recurring: when the next run is due.")
    last_handled_run: str | None = Field(default=None, max_length=16,
                                         description="A one-shot: the run handled last, dryRun or run (a real run "
                                                     "is never repeated).")
    conditions: list[Condition] | None = Field(default=None, max_length=16,
                                               description="Complete, Failed, Queued, Suspended, Ready, "
                                                           "Reconciling, Stalled.")

    @model_validator(mode="before")
    @classmethod
    def _history_of_the_previous_build(cls, data: Any) -> Any:
        """History entries written by the build before the request core ({scheduledAt, phase, startedAt, ...})
        are read as history entries, so an upgraded operator can read (and resume) what it left."""
        if isinstance(data, dict) and isinstance(data.get("history"), list):
            data = {**data, "history": [_entry_of_previous_build(h) if isinstance(h, dict) and "action" not in h
                                        else h for h in data["history"]]}
        return data


def _entry_of_previous_build(record: dict[str, Any]) -> dict[str, Any]:
    phase, dry = record.get("phase"), bool(record.get("dryRun"))
    outcome = "DryRun" if phase == "Succeeded" and dry else phase if phase in ("Succeeded", "Cancelled") else "Failed"
    return {"action": "run", "trigger": record.get("trigger") or "Create", "scheduledAt": record.get("scheduledAt"),
            "requester": record.get("requester"), "acceptedAt": record.get("startedAt"),
            "finishedAt": record.get("completedAt"), "outcome": outcome, "dryRun": dry,
            "rowsDeleted": record.get("rowsDeleted"), "bytesReclaimed": record.get("bytesReclaimed")}


class DatabaseMaintenance(Model):
    """A maintenance job on a DatabaseServer: compact and clear old data, once or on a schedule."""

    spec: DatabaseMaintenanceSpec
    status: DatabaseMaintenanceStatus | None = None


SERVER_SPEC_RULES = DATABASE_RULES
