"""Acts on many targets at once, at most `limit` at a time, retrying each failure with backoff.

A failing target never stops the others; every target ends with exactly one outcome reported through
`on_outcome`, in completion order, so the caller can record progress as it happens.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Permanent(Exception):
    """A failure that retrying cannot fix (e.g. a host-networked pod); reported at once."""


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


async def fan_out(targets: Sequence[T], act: Callable[[T], Awaitable[str]], limit: int,
                  on_outcome: Callable[[Outcome[T]], Awaitable[None]], *, attempts: int = 3,
                  backoff: float = 0.5, timeout: float = 30) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(target: T) -> None:
        async with gate:
            outcome = await _with_retries(target, act, attempts, backoff, timeout)
        await on_outcome(outcome)

    await asyncio.gather(*(one(t) for t in targets))


async def _with_retries(target: T, act: Callable[[T], Awaitable[str]], attempts: int, backoff: float,
                        timeout: float) -> Outcome[T]:
    message = ""
    for attempt in range(1, attempts + 1):
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
            message = str(e) or type(e).__name__
        if attempt < attempts:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
    return Outcome(target, "Failed", message, attempts)
