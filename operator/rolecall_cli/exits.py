"""Exit codes: one per way a request can end, so scripts can branch on them (documented in the README)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # succeeded (or skipped, e.g. Redis replicas), or nothing to wait for
    TARGETS_FAILED = 1  # some targets failed; the operator keeps retrying them
    USAGE = 2  # a bad argument or reference
    TIMED_OUT = 3  # --timeout passed before the request ended: it goes on (or no operator acknowledged it yet)
    REFUSED = 4  # admission or RBAC refused the change, or the operator refused the requester
    STALLED = 5  # the operator cannot make progress until something is fixed
    CANCELLED = 6  # the request was cancelled (rolecall.dev/cancel)
    API = 7  # the Kubernetes API failed (unreachable, 5xx), the object went away, or its status is unreadable
    REQUEST_TIMED_OUT = 8  # the request itself ran out of time (requestTimeoutSeconds, a maintenance's timeoutSeconds)
    INTERNAL = 9  # an error in the plugin itself (a bug): what failed is printed
    INTERRUPTED = 130  # Ctrl-C: the request keeps running


# status.lastRequest.outcome (and a DatabaseMaintenance phase) -> exit code
BY_OUTCOME = {
    "Succeeded": ExitCode.OK, "DryRun": ExitCode.OK, "Failed": ExitCode.TARGETS_FAILED,
    "Refused": ExitCode.REFUSED, "Stalled": ExitCode.STALLED, "Cancelled": ExitCode.CANCELLED,
    "TimedOut": ExitCode.REQUEST_TIMED_OUT,
}


class Exit(Exception):
    """Ends the command with this code after printing the message (to stderr unless the code is OK)."""

    def __init__(self, code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
