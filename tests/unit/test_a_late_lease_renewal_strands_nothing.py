"""A renewal sent before the renew deadline and handled after it (a starved event loop) keeps the term, and
the reconciles that met NotLeader in that gap are not dropped: they wait for the renewal to land, run again,
and their timers fire again (leadership.py defines "renewed in time"; runs/queue.py applies the rule).

The Lease's clock is a fake one the test moves; the apiserver is replaced by `_try_acquire` and `_renew`
stand-ins, and the second renewal is held "in flight" until the test lets it answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from test_work_queue_coalesces_and_wakes import until

from rolecall import kube, metrics
from rolecall.leadership import Leadership, NotLeader
from rolecall.runs import events
from rolecall.runs.context import Memory, Runtime
from rolecall.runs.queue import Gate, WorkQueue

DURATION = 3.0  # renew deadline 2, renewal every 1 (fake seconds)


class Apiserver:
    """Answers the Lease calls at once, except renewal number `hold_at`, which waits for `answer`."""

    def __init__(self, now: list[float], hold_at: int = 2) -> None:
        self.now, self.hold_at, self.renewals = now, hold_at, 0
        self.asked = threading.Event()
        self.answer = threading.Event()

    def acquire(self) -> bool:
        return True

    def renew(self) -> bool:
        self.renewals += 1
        if self.renewals == 1:
            self.now[0] = 1.0  # the next renewal is due at once: no real waiting
        if self.renewals == self.hold_at:
            self.asked.set()
            assert self.answer.wait(5)
        return True


@pytest.fixture
def lease() -> Iterator[tuple[Leadership, Apiserver, list[float]]]:
    now = [0.0]
    api = Apiserver(now)
    lease = Leadership(namespace="ns", duration=DURATION, clock=lambda: now[0])
    lease._try_acquire = api.acquire  # type: ignore[method-assign]
    lease._renew = api.renew  # type: ignore[method-assign]
    kube.set_write_guard(lease.check, lease.until_acting)
    yield lease, api, now
    kube.set_write_guard(lambda: None)
    api.answer.set()


async def into_the_gap(leadership: Leadership, api: Apiserver, now: list[float], gate: Gate) -> asyncio.Task[None]:
    """Starts a term, waits for renewal 2 (sent at 1.0, due by 2.0) to be in flight, and moves the clock to 2.5:
    the loop was starved, the deadline passed while the answer waited. Returns the term's task."""
    term = asyncio.create_task(leadership.run(gate.open, gate.close))
    await until(gate.is_open)
    await until(api.asked.is_set)
    now[0] = 2.5
    return term


async def end(term: asyncio.Task[None], gate: Gate) -> None:
    term.cancel()
    await asyncio.gather(term, return_exceptions=True)
    await gate.close()


def _late_renewals() -> float:
    return REGISTRY.get_sample_value("rolecall_lease_renewals_late_total") or 0.0


def _deferred(kind: str) -> float:
    return REGISTRY.get_sample_value("rolecall_work_deferred_total", {"kind": kind}) or 0.0


def test_a_reconcile_in_the_gap_runs_again_once_the_renewal_lands_and_its_timer_fires(
        lease: tuple[Leadership, Apiserver, list[float]]) -> None:
    leadership, api, now = lease
    reconciles: list[str] = []  # "acted" or "refused", in order
    late_before, deferred_before = _late_renewals(), _deferred("gap")

    async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        try:
            kube.check_write_guard()  # what every side effect does first
        except NotLeader:
            reconciles.append("refused")
            raise
        reconciles.append("acted")
        return 0.05  # e.g. the next slot of a clear schedule: the timer must survive the gap

    async def main() -> None:
        gate = Gate()
        queue = WorkQueue(reconcile, gate, Runtime(), kind="gap")
        term = asyncio.create_task(leadership.run(gate.open, gate.close))
        await until(gate.is_open)
        queue.observe({"metadata": {"namespace": "ns", "name": "x", "uid": "u1", "generation": 1}})
        await until(lambda: reconciles.count("acted") >= 2)  # the first reconcile, then its timer
        await until(api.asked.is_set)  # renewal 2, sent at 1.0 (deadline 2.0), is in flight
        now[0] = 2.5  # the loop was starved: the deadline passed while the answer waited to be handled
        await until(lambda: "refused" in reconciles)  # the timer fired in the gap and met NotLeader
        acted_in_gap = reconciles.count("acted")
        assert gate.is_open(), "the term goes on while a renewal sent in time is in flight"
        api.answer.set()  # the answer is handled: sent at 1.0, so acting resumes until 3.0
        await until(lambda: reconciles.count("acted") >= acted_in_gap + 2)  # run again, then its timer again
        assert leadership.terms == 1 and gate.is_open()
        await end(term, gate)

    asyncio.run(main())
    assert _late_renewals() == late_before + 1
    assert _deferred("gap") >= deferred_before + 1


def test_an_object_waiting_past_the_margin_counts_as_overdue_until_it_runs(
        lease: tuple[Leadership, Apiserver, list[float]]) -> None:
    leadership, api, now = lease
    acted: list[float] = []

    async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        kube.check_write_guard()
        acted.append(now[0])
        return None

    async def main() -> None:
        gate = Gate(overdue_after=0.1)
        metrics.report_overdue(gate.overdue)
        queue = WorkQueue(reconcile, gate, Runtime(), kind="late")
        term = await into_the_gap(leadership, api, now, gate)  # the new object's reconcile meets NotLeader, waits
        queue.observe({"metadata": {"namespace": "ns", "name": "y", "uid": "u2", "generation": 1}})
        await until(lambda: gate.overdue() == {"late": 1}, deadline=2.0)  # due 0.1 s ago and not run
        scraped = REGISTRY.get_sample_value("rolecall_overdue_objects", {"kind": "late"})
        assert scraped == 1
        assert acted == []
        api.answer.set()
        await until(lambda: acted == [2.5])
        assert gate.overdue() == {"late": 0}
        await end(term, gate)
        assert gate.overdue() == {"late": 0}, "a process that does not lead has nothing overdue"

    asyncio.run(main())


def test_a_term_that_ends_instead_cancels_the_wait_and_the_next_term_reconciles_the_object(
        lease: tuple[Leadership, Apiserver, list[float]]) -> None:
    leadership, api, now = lease
    acted: list[int] = []

    async def reconcile(body: dict[str, Any], memory: Memory, runtime: Runtime) -> float | None:
        kube.check_write_guard()
        acted.append(leadership.terms)
        return None

    async def main() -> None:
        gate = Gate()
        queue = WorkQueue(reconcile, gate, Runtime(), kind="ended")
        term = await into_the_gap(leadership, api, now, gate)
        queue.observe({"metadata": {"namespace": "ns", "name": "z", "uid": "u3", "generation": 1}})
        await until(lambda: _deferred("ended") >= 1)
        now[0] = 3.5  # the answer comes too late even for its own send time (1.0 + 2 < 3.5): the term ends
        api.answer.set()
        await until(lambda: acted == [2])  # cancelled with the term, reconciled at once in the next one
        await end(term, gate)

    asyncio.run(main())


def test_an_event_refused_in_the_gap_is_posted_once_acting_resumes(
        lease: tuple[Leadership, Apiserver, list[float]], monkeypatch: pytest.MonkeyPatch) -> None:
    leadership, api, now = lease
    posted: list[str] = []

    def create_event(namespace: str, body: dict[str, Any]) -> None:
        kube.check_write_guard()  # as the API client does before every write
        posted.append(body["reason"])

    monkeypatch.setattr(kube, "create_event", create_event)
    obj = {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
           "metadata": {"namespace": "ns", "name": "c", "uid": "u4"}}

    async def main() -> None:
        gate = Gate()
        term = await into_the_gap(leadership, api, now, gate)
        task = events.post_soon(obj, "Normal", "Started", "Clearing 1 pod.")
        await asyncio.sleep(0.05)
        assert posted == [] and not task.done()
        api.answer.set()
        await asyncio.wait_for(task, 2)
        term.cancel()
        await asyncio.gather(term, return_exceptions=True)

    asyncio.run(main())
    assert posted == ["Started"]


def test_a_first_renewal_handled_late_does_not_start_work() -> None:
    """Work starts only on a renewal that landed in time: a first renewal handled past the deadline (the
    acquisition's send time + 2) confirms nothing; the Lease is taken again and the next one confirms it."""
    now = [0.0]
    api = Apiserver(now, hold_at=1)
    leadership = Leadership(namespace="ns", duration=DURATION, clock=lambda: now[0])
    leadership._try_acquire = api.acquire  # type: ignore[method-assign]
    leadership._renew = api.renew  # type: ignore[method-assign]
    opened_at: list[float] = []

    async def main() -> None:
        gate = Gate()
        term = asyncio.create_task(leadership.run(lambda: opened_at.append(now[0]) or gate.open(), gate.close))
        await until(api.asked.is_set)
        now[0] = 2.5
        api.answer.set()
        await until(gate.is_open)
        term.cancel()
        await asyncio.gather(term, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        api.answer.set()
    assert opened_at == [2.5] and leadership.terms == 1
    assert api.renewals == 2, "confirmed by the second renewal, after the Lease was taken again"


def test_waiters_end_when_the_lease_task_stops(lease: tuple[Leadership, Apiserver, list[float]]) -> None:
    """A stop cancels the Lease task: nothing may act on a term nobody renews, and nobody waits for one."""
    leadership, api, now = lease

    async def main() -> None:
        gate = Gate()
        term = await into_the_gap(leadership, api, now, gate)
        waiter = asyncio.create_task(leadership.until_acting())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        term.cancel()
        await asyncio.gather(term, return_exceptions=True)
        with pytest.raises(NotLeader, match="term ended"):
            await asyncio.wait_for(waiter, 1)
        assert not leadership.leading()

    asyncio.run(main())
