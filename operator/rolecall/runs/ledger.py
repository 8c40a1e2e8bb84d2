"""The request ledger's transitions, as pure functions (unit-tested without a cluster).

A target is in exactly one of: pending (no outcome yet in this pass), failed (retried later), permanent
(failed for good), or done (everything else, never listed). It leaves `pending` only with an outcome.
"""

from __future__ import annotations

from rolecall.api.v1alpha1.common import RunLedger

DONE, FAILED, SKIPPED = "Done", "Failed", "Skipped"


def record(run: RunLedger, uid: str, outcome: str, permanent: bool = False) -> bool:
    """Moves `uid` out of pending with its outcome; False if it was not pending (already recorded)."""
    if uid not in run.pending:
        return False
    run.pending.remove(uid)
    if outcome == FAILED:
        (run.permanent if permanent else run.failed).append(uid)
    return True


def done(run: RunLedger) -> int:
    return run.targets - len(run.pending) - len(run.failed) - len(run.permanent)


def failed(run: RunLedger) -> int:
    return len(run.failed) + len(run.permanent)


def start_retry_pass(run: RunLedger) -> None:
    """The failed (retryable) targets become pending again for one more pass."""
    run.pending = sorted(set(run.pending) | set(run.failed))
    run.failed = []


def finished_pass(run: RunLedger) -> bool:
    return not run.pending


def retry_delay(retries: int, first: float = 10.0, longest: float = 300.0) -> float:
    """Backoff before retry pass number `retries` (1-based): 10 s, doubling, at most 5 minutes."""
    return float(min(longest, first * 2 ** max(0, retries - 1)))
