"""The closed list of reasons rolecall puts in `Stalled` and `Reconciling`, and how exceptions map to them.

Any exception in a reconcile lands in `Stalled` (retrying cannot help until something is fixed) or in
`Reconciling` (it is retried with backoff) with one of these reasons and a Warning Event, never in a log
line alone. The README's status table lists the same reasons (a unit test keeps them in step).
"""

from __future__ import annotations

import json

import pydantic

from rolecall import kube
from rolecall.engines.database import BatchUnsettled

# Stalled=True: a person has to act (fix the spec, create the object, grant the right). rolecall still looks
# again with backoff (up to 5 minutes), since a fix may not touch the resource itself.
STALLED = {
    "WorkloadNotFound": "spec.workloadRef names a Deployment or StatefulSet that does not exist",
    "OwnedByController": "the workload is owned by another controller, which would undo a scale",
    "SecretNotFound": "spec.credentialsSecretRef names a Secret that does not exist",
    "SecretKeyMissing": "the Secret lacks the key spec.credentialsSecretRef names",
    "RequesterNotAllowed": "the user who asked lacks the right now (checked again just before acting)",
    "NoRecordedRequester": "no requester was recorded at admission for this request",
    "AdmissionPoliciesMissing": "rolecall's admission policies are not installed: it refuses to act",
    "InvalidSpec": "the spec is one the operator cannot act on, and the schema could not refuse it",
    "OperatorForbidden": "the operator's own ServiceAccount lacks a right it needs",
    "DatabaseServerNotFound": "spec.databaseServerRef names a DatabaseServer that does not exist",
    "DrainAborted": "a web stop's drain timed out with drainOnTimeout abort: the workload keeps running until "
                    "the spec changes or the role should run again",
    "ReplicasFought": "another client (e.g. Argo CD, Flux) scaled the stopped workload up again; rolecall does "
                      "not scale it again until the spec changes or the role should run again",
    "ScheduleNeverFires": "the schedule names no time that exists (e.g. 30 February)",
    "TargetsRefused": "targets failed for a reason retrying cannot fix (memcached -F, a Redis ACL, a missing table, "
                      "wrong credentials, a host-network pod); the message names each and what to change; a new "
                      "token or spec time asks again",
    "RetriesExhausted": "targets still failed after spec.maxRetries retry passes; the message names them and their "
                        "errors; a new token or spec time asks again",
    "RunFailed": "a one-shot DatabaseMaintenance run failed (status.operations says which step and why); "
                 "create a new one to try again",
    "InternalError": "an unexpected error in rolecall itself (a bug: please report it with the message)",
}
# Degraded=True: the role works in part (some targets failed or cannot be read); it is retried or re-read.
DEGRADED = {
    "PodsFailed": "some target pods failed the last action (named in the message and status.failedPods)",
    "NoTargetPods": "no running pod matches spec.selector",
    "NoPrimary": "none of the PostgreSQL pods is a primary",
    "SeveralPrimaries": "more than one PostgreSQL pod is a primary: rolecall will not guess",
    "SeveralPods": "more than one pod matches a SQLite DatabaseServer",
    "DatabaseUnreachable": "the database did not answer",
    "StatusPageUnavailable": "a web pod's status page could not be read",
    "UserCountUnavailable": "a web pod's user count could not be read",
}
# Reconciling=True: work is under way, or is retried with backoff.
RECONCILING = {
    "Clearing": "a cache clear is being carried out",
    "Compacting": "a compaction is being carried out",
    "Running": "a maintenance run is being carried out",
    "Queued": "a maintenance waits for another one on the same database",
    "WaitingForWave": "a request in waves (e.g. clearWaves) pauses between two waves",
    "RetryingFailedTargets": "some targets failed; they are retried with backoff",
    "ResumingInterruptedRun": "a run interrupted by a restart or takeover is being resumed",
    "Stopping": "the workload is being scaled to 0",
    "WaitingForDrain": "a stop waits for connections (or users, spec.drainOn) to fall to drainThreshold",
    "Starting": "the workload was scaled up and its pods are not all ready yet",
    "ApiServerUnavailable": "the Kubernetes API did not answer; retrying with backoff",
    "SettlingBatch": "a clearOldData batch's COMMIT was not confirmed; the run goes on once the database says "
                     "whether it committed",
}


class Stall(Exception):
    """Retrying cannot help until a person fixes something: the reason is one of STALLED."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in STALLED, reason
        super().__init__(message)
        self.reason = reason


def classify(e: BaseException) -> tuple[bool, str, str]:
    """(stalled, reason, message) for an exception that ended a reconcile."""
    if isinstance(e, Stall):
        return True, e.reason, str(e)
    if isinstance(e, pydantic.ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:3])
        return True, "InvalidSpec", f"the spec cannot be used: {problems}"
    if isinstance(e, kube.Unavailable):
        return False, "ApiServerUnavailable", str(e)
    if isinstance(e, BatchUnsettled):
        return False, "SettlingBatch", str(e)
    if isinstance(e, kube.ApiException):
        status, text = e.status or 0, f"{e.status} {e.reason}: {_api_message(e)}"
        if status >= 500 or status == 429:
            return False, "ApiServerUnavailable", f"the Kubernetes API answered {text}"
        if status == 403:
            return True, "OperatorForbidden", f"the Kubernetes API refused the operator: {text}"
        if status in (400, 422):
            return True, "InvalidSpec", f"the Kubernetes API refused what the spec asks for: {text}"
    return True, "InternalError", f"{type(e).__name__}: {e}"[:1024]


def _api_message(e: kube.ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)
