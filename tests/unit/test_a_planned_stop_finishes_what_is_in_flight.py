"""A planned stop (SIGTERM in a rollout: runs/queue.Gate.drain) with the fake clock: the fan-out starts no more
targets, the ones in flight finish and are written, the request stays in status; the next leader acts only
on the targets not started, so no target is acted on twice. The Steps executor stops between two units."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_request_core_with_a_fake_clock import PODS, FakeClock, Target, action, context, world  # noqa: F401

from rolecall.api.v1alpha1.cacheserver import CacheServerStatus
from rolecall.leadership import NotLeader
from rolecall.runs import queue, request
from rolecall.runs.queue import Gate, WorkQueue

TOKEN = "rolecall.dev/clear-requested-at"


def test_the_fan_out_starts_nothing_after_the_stop_and_the_next_leader_does_the_rest(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    acted: list[str] = []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        if len(acted) == 2:
            monkeypatch.setattr(queue, "_draining", True)  # SIGTERM while the 2nd target is in flight
        return "flush_all: OK"

    ctx = context(FakeClock(), {TOKEN: "t1"}, concurrency=1)
    asyncio.run(request.step(ctx, action(act)))
    assert acted == ["mc-0", "mc-1"]  # the one in flight finished; nothing started after the stop
    written = CacheServerStatus.model_validate(world["writes"].statuses[-1])
    assert written.run is not None and len(written.run.pending) == len(PODS) - 2  # outcomes on record
    assert written.last_handled_clear_request is None  # not acknowledged: the request goes on elsewhere

    monkeypatch.setattr(queue, "_draining", False)
    successor = context(FakeClock(), {TOKEN: "t1"}, status=written, concurrency=1)
    successor.identity = "standby"
    asyncio.run(request.step(successor, action(act)))
    assert sorted(acted) == sorted(p.name for p in PODS)  # each pod once
    assert successor.status.last_request is not None and successor.status.last_request.outcome == "Succeeded"


def test_no_new_request_is_accepted_while_stopping(world: dict[str, Any],  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    acted: list[str] = []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "OK"

    monkeypatch.setattr(queue, "_draining", True)
    ctx = context(FakeClock(), {TOKEN: "t1"})
    asyncio.run(request.step(ctx, action(act)))
    assert acted == [] and ctx.status.run is None and ctx.status.last_handled_clear_request is None


def test_drain_waits_for_a_reconcile_under_way_then_starts_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "_draining", False)
    started: list[str] = []

    async def main() -> None:
        release = asyncio.Event()

        async def reconcile(body: dict[str, Any], memory: Any, runtime: Any) -> float | None:
            started.append(body["metadata"]["name"])
            await release.wait()
            return None

        gate = Gate()
        q = WorkQueue(reconcile, gate, runtime=None, kind="CacheServer")  # type: ignore[arg-type]
        gate.open()
        q.observe({"metadata": {"uid": "a", "namespace": "ns", "name": "a"}})
        await asyncio.sleep(0.01)
        drain = asyncio.create_task(gate.drain(5))
        await asyncio.sleep(0.01)
        q.observe({"metadata": {"uid": "b", "namespace": "ns", "name": "b"}})  # arrives while stopping
        await asyncio.sleep(0.01)
        assert not drain.done()  # waits for "a" to finish what it does
        release.set()
        await asyncio.wait_for(drain, 2)

    asyncio.run(main())
    assert started == ["a"] and queue.draining()
    monkeypatch.setattr(queue, "_draining", False)


def test_steps_stop_between_units_when_the_operator_stops(world: dict[str, Any],  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from test_steps_executor_resumes_and_stops_between_units import Role, _step
    from test_steps_executor_resumes_and_stops_between_units import Target as Db

    target = Db(rows=6)
    target.on_unit = lambda n: monkeypatch.setattr(queue, "_draining", n >= 2)
    with pytest.raises(NotLeader, match="stopping"):
        _step(context(FakeClock(), {TOKEN: "t1"}), Role(target))
    assert target.deleted == 2  # the unit in flight finished and was checkpointed; none started after it
    monkeypatch.setattr(queue, "_draining", False)
