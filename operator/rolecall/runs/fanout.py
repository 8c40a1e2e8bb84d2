"""Acts on many targets at once, at most `limit` at a time, retrying each failure with backoff.

A failing target never stops the others: every target that is acted on ends with exactly one outcome,
reported through `on_outcome` in completion order, so the caller can record progress as it happens.
What aborts the whole fan-out is an exception outside a target's own action: `on_outcome` failing (a
progress write that did not reach the apiserver) or `before_act` refusing (this process may no longer
lead). Then every sibling is cancelled and awaited before the exception propagates, so nothing keeps
acting or reporting behind the caller's back, and no outcome is reported that was not seen to finish.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rolecall import kube
from rolecall.leadership import NotLeader

T = TypeVar("T")


class Permanent(Exception):
    """A failure that retrying cannot fix (e.g. a host-networked pod); reported at once."""


class Halt(Exception):
    """Raised by `before_act`: start no more targets (a cancel, a deadline). Targets in flight finish and are
    recorded; the ones not started get no outcome and stay pending."""


class Skip(Exception):
    """The target needs no action (e.g. a Redis replica); reported as skipped with the message."""


@dataclass
class Outcome(Generic[T]):
    target: T
    status: str  # "Done", "Failed" or "Skipped"
    message: str
    attempts: int
    permanent: bool = False  # Failed for a reason retrying cannot fix


def limit_of(concurrency: int | str, targets: int) -> int:
    """A number of pods, or a percentage of the targets rounded up; always at least 1."""
    if isinstance(concurrency, str) and concurrency.endswith("%"):
        return max(1, math.ceil(targets * int(concurrency[:-1]) / 100))
    return max(1, int(concurrency))


async def _nothing(target: object) -> None:
    return None


async def fan_out(targets: Sequence[T], act: Callable[[T], Awaitable[str]], limit: int,
                  on_outcome: Callable[[Outcome[T]], Awaitable[None]], *, attempts: int = 3,
                  backoff: float = 0.5, timeout: float = 30,
                  before_act: Callable[[T], Awaitable[None]] = _nothing) -> None:
    """`before_act(target)` runs before every attempt on a target: it may wait (e.g. for a progress write to
    land) or raise (e.g. this process may no longer act), which aborts the fan-out. When it returns, the
    attempt starts: it is the place to count the target as in flight."""
    gate = asyncio.Semaphore(limit)

    async def one(target: T) -> None:
        async with gate:
            try:
                outcome = await _with_retries(target, act, attempts, backoff, timeout, before_act)
            except Halt:
                return  # not started (or not retried): no outcome, it stays pending
        await on_outcome(outcome)

    try:
        async with asyncio.TaskGroup() as group:
            for t in targets:
                group.create_task(one(t))
    except BaseExceptionGroup as eg:
        # Re-raise the first cause as itself, so callers can catch NotLeader or Unavailable by type.
        first = eg.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from eg


async def _with_retries(target: T, act: Callable[[T], Awaitable[str]], attempts: int, backoff: float,
                        timeout: float, before_act: Callable[[T], Awaitable[None]]) -> Outcome[T]:
    message = ""
    for attempt in range(1, attempts + 1):
        try:
            await before_act(target)  # outside the try below: its exceptions abort the fan-out, they are no outcome
        except Halt:
            if attempt == 1:
                raise  # never started: no outcome
            return Outcome(target, "Failed", f"{message} (not retried: {_reason(attempt)})", attempt - 1)
        try:
            answer = await asyncio.wait_for(act(target), timeout)
            return Outcome(target, "Done", answer, attempt)
        except Skip as e:
            return Outcome(target, "Skipped", str(e), attempt)
        except Permanent as e:
            return Outcome(target, "Failed", str(e), attempt, permanent=True)
        except TimeoutError:
            message = f"timed out after {timeout:g}s"
        except Exception as e:
            if _aborts(e):
                raise
            message = str(e) or type(e).__name__
        if attempt < attempts:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
    return Outcome(target, "Failed", message, attempts)


def _reason(attempt: int) -> str:
    return f"the request was stopped after attempt {attempt - 1}"


def _aborts(e: Exception) -> bool:
    """Failures that are not about the target: the apiserver is unreachable (so no outcome could be
    recorded either) or this process may no longer act. They abort the fan-out instead of failing a target."""
    if isinstance(e, kube.ApiException):
        return e.status is not None and (e.status >= 500 or e.status == 429)
    return isinstance(e, kube.Unavailable | NotLeader)
