"""Act only inside the renew deadline, without dropping work (leadership.py defines "renewed in time").

Every side effect passes the write guard first (`kube.check_write_guard`; the API client checks it before
each write). When the guard refuses while this process's term goes on (a renewal sent in time has not been
handled yet: a busy event loop), the work waits for acting to resume and goes on from where it was, so
nothing in flight is dropped and done again. When the term ends instead, the wait raises NotLeader (or the
reconcile is cancelled as the work gate closes), exactly as the refusal did: the next term starts over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from rolecall import kube, metrics
from rolecall.leadership import NotLeader

T = TypeVar("T")


async def wait_to_act(kind: str) -> None:
    """Counts a reconcile held by the renew deadline, and returns once this process may act again."""
    metrics.WORK_DEFERRED.labels(kind).inc()
    await kube.until_writes_allowed()


async def may_act(kind: str) -> None:
    """Returns when the write guard lets this process act: at once, or once the next renewal lands."""
    while True:
        try:
            kube.check_write_guard()
            return
        except NotLeader:
            await wait_to_act(kind)


async def when_allowed(kind: str, call: Callable[[], Awaitable[T]]) -> T:
    """Runs `call` (which passes the write guard itself, e.g. a status patch); a refusal waits and runs it
    again. `call` must change nothing before its guarded write, as a status flush does."""
    while True:
        try:
            return await call()
        except NotLeader:
            await wait_to_act(kind)
