"""The request core without a cluster: trigger detection, the ledger, backoff kept in status, aborted
fan-outs that record nothing unseen, acknowledgement with an outcome, and the leader's renew deadline.
Time is a fake clock; status writes and Events are captured in memory."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import pytest

from rolecall import kube
from rolecall.api.kinds import CACHE_SERVER
from rolecall.api.v1alpha1.cacheserver import CacheServerSpec, CacheServerStatus
from rolecall.api.v1alpha1.common import RunLedger
from rolecall.leadership import Leadership, NotLeader
from rolecall.runs import authz, events, ledger, pod_executor, request, triggers
from rolecall.runs.context import Clock, Context, Memory
from rolecall.runs.status import StatusWriter
from rolecall.targets import pods
from rolecall.targets.pods import Target

T0 = dt.datetime(2026, 11, 26, 4, 37, 29, 100000, tzinfo=dt.UTC)


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(wall=lambda: T0 + dt.timedelta(seconds=self.t), monotonic=lambda: self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Writes:
    """Stands in for the apiserver: keeps every status written, can be made to fail."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.fail_after: int | None = None

    async def flush(self, writer: StatusWriter[Any]) -> bool:
        if self.fail_after is not None and len(self.statuses) >= self.fail_after:
            raise kube.Unavailable("apiserver gone")
        self.statuses.append(writer.status.dump())
        writer.written = writer.status.dump()
        return True


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    writes, posted = Writes(), []

    async def flush(self: StatusWriter[Any]) -> bool:
        return await writes.flush(self)

    async def post(obj: dict[str, Any], type: str, reason: str, message: str) -> None:
        posted.append((type, reason, message))

    async def allowed(*_: Any) -> None:
        return None

    monkeypatch.setattr(StatusWriter, "flush", flush)
    monkeypatch.setattr(events, "post", post)
    monkeypatch.setattr(authz, "refusal", allowed)
    monkeypatch.setattr(pod_executor, "PROGRESS_BATCH", 2)
    monkeypatch.setattr(kube, "check_write_guard", lambda: None)

    async def listed(namespace: str, selector: str) -> dict[str, Target]:
        return {t.uid: t for t in PODS}  # after a restart the core finds the recorded UIDs by listing

    monkeypatch.setattr(pods, "by_uid", listed)
    return {"writes": writes, "events": posted}


def context(clock: FakeClock, annotations: dict[str, str] | None = None, memory: Memory | None = None,
            status: CacheServerStatus | None = None, **spec: Any) -> Context[CacheServerSpec, CacheServerStatus]:
    body = {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
            "metadata": {"namespace": "ns", "name": "mc", "uid": "u", "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}}, **spec}}
    st = status or CacheServerStatus()
    out = StatusWriter("rolecall.dev", "v1alpha1", "cacheservers", "ns", "mc", st, st.dump(), "1")
    return Context(CACHE_SERVER, body, CacheServerSpec.model_validate(body["spec"]), out, memory or Memory(), clock,
                   "me")


PODS = [Target(f"uid-{i}", f"mc-{i}", "node") for i in range(6)]


def action(act: Any) -> request.Action[None]:
    async def resolve(ctx: Any) -> list[Target]:
        return list(PODS)

    async def same(ns: str, t: Target) -> str:
        return "127.0.0.1"

    return request.Action(name="clear", condition="Cleared", busy="Clearing", done="Cleared", noun="cache clear",
                          token_annotation="rolecall.dev/clear-requested-at",
                          handled_field="last_handled_clear_request", after_field="cleared_after",
                          completed_field="last_cleared_at", resolve=resolve, act=act, same_target=same)


def test_a_token_is_handled_once_and_acknowledged_with_its_outcome(world: dict[str, Any]) -> None:
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "flush_all: OK"

    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"})
    asyncio.run(request.step(ctx, action(act)))
    s = ctx.status
    assert sorted(acted) == [p.name for p in PODS] and s.run is None
    assert s.last_handled_clear_request == "t1" and s.last_request is not None
    assert (s.last_request.outcome, s.last_request.reason, s.last_request.done) == ("Succeeded", "Cleared", 6)
    first = world["writes"].statuses[0]["run"]
    assert first["token"] == "t1" and len(first["pending"]) == 6, "the ledger is written before any pod is touched"
    assert [e[1] for e in world["events"]] == ["ClearStarted", "Cleared"]
    asyncio.run(request.step(ctx, action(act)))  # the same token again: nothing
    assert len(acted) == 6


def test_an_aborted_fan_out_records_nothing_it_did_not_see_finish(world: dict[str, Any]) -> None:
    clock, finished = FakeClock(), set()
    world["writes"].fail_after = 1  # the intent lands, the first progress write does not

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        await asyncio.sleep(0.001 * int(t.uid[-1]))
        finished.add(t.uid)
        return "ok"

    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, concurrency=2)
    with pytest.raises(kube.Unavailable):
        asyncio.run(request.step(ctx, action(act)))
    assert len(finished) < len(PODS), "siblings kept acting after the abort"
    for written in world["writes"].statuses:  # no status ever claims a pod its act did not finish
        run = written.get("run") or {}
        claimed = {p.uid for p in PODS} - set(run.get("pending", [])) - set(run.get("failed", []))
        assert claimed <= finished
    assert "lastHandledClearRequest" not in world["writes"].statuses[-1]


def test_failed_targets_retry_on_a_backoff_kept_in_status(world: dict[str, Any]) -> None:
    clock, healthy = FakeClock(), False

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        if t.name == "mc-3" and not healthy:
            raise ConnectionRefusedError("memcached at 127.0.0.1:11211 unreachable")
        return "ok"

    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"})
    clear = action(act)
    clear = request.Action(**{**clear.__dict__, "attempts": 1})
    asyncio.run(request.step(ctx, clear))
    s = ctx.status
    assert s.last_request is not None and s.last_request.outcome == "Failed" and s.last_handled_clear_request == "t1"
    assert s.run is not None and s.run.failed == ["uid-3"] and s.run.retry_at is not None
    assert (ctx.busy or ("", ""))[0] == "RetryingFailedTargets" and min(ctx.delays) == pytest.approx(10)
    # A restart: a new memory and context rebuilt from the written status keeps the backoff.
    clock.advance(5)
    again = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, status=s.model_copy(deep=True))
    asyncio.run(request.step(again, clear))
    assert again.status.run is not None and again.status.run.retries == 0, "retried before its backoff"
    healthy = True
    clock.advance(6)
    asyncio.run(request.step(again, clear))
    s = again.status
    assert s.run is None and s.last_request is not None
    assert (s.last_request.outcome, s.last_request.reason) == ("Succeeded", "ClearedAfterRetry")
    assert any(e[1] == "ClearRecovered" for e in world["events"])


def test_a_refused_request_is_acknowledged_as_refused(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*_: Any) -> tuple[str, str]:
        return "RequesterNotAllowed", "carol: a cache clear needs create on pods/exec"

    monkeypatch.setattr(authz, "refusal", refused)

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        raise AssertionError("a refused request must not act")

    ctx = context(FakeClock(), {"rolecall.dev/clear-requested-at": "t9"})
    asyncio.run(request.step(ctx, action(act)))
    s = ctx.status
    assert s.last_handled_clear_request == "t9" and s.last_request is not None
    assert (s.last_request.outcome, s.last_request.reason) == ("Refused", "RequesterNotAllowed")
    assert world["events"][0][:2] == ("Warning", "RequesterNotAllowed")


def test_spec_times_compare_with_their_own_precision() -> None:
    clock = FakeClock()  # now is 04:37:29.1
    wanted = "2026-11-26T04:37:29.600Z"
    ctx = context(clock, cleared_after=wanted)
    assert triggers.after_due(ctx, action(None)) is None and min(ctx.delays) == pytest.approx(0.5)
    clock.advance(0.6)
    assert triggers.after_due(ctx, action(None)) == wanted
    ctx.status.last_cleared_at = "2026-11-26T04:37:29.700000Z"  # accepted after it: satisfied
    assert triggers.after_due(ctx, action(None)) is None
    ctx.status.last_cleared_at = "2026-11-26T04:37:29Z"  # a whole-second time before it: not satisfied
    assert triggers.after_due(ctx, action(None)) == wanted


def test_a_nanosecond_time_is_rounded_up_never_down() -> None:
    from rolecall.api.types import parse_time

    assert parse_time("2026-11-26T04:37:29.1234567Z") > parse_time("2026-11-26T04:37:29.123456Z")
    assert parse_time("2026-11-26T04:37:29.1234560Z") == parse_time("2026-11-26T04:37:29.123456Z")


def test_ledger_transitions() -> None:
    run = RunLedger(action="clear", accepted_at="t", targets=4, pending=["a", "b", "c", "d"])
    assert ledger.record(run, "a", ledger.DONE) and not ledger.record(run, "a", ledger.FAILED)
    ledger.record(run, "b", ledger.FAILED)
    ledger.record(run, "c", ledger.FAILED, permanent=True)
    assert (ledger.done(run), ledger.failed(run), run.pending) == (1, 2, ["d"])
    ledger.record(run, "d", ledger.SKIPPED)
    assert ledger.finished_pass(run) and ledger.done(run) == 2
    ledger.start_retry_pass(run)
    assert run.pending == ["b"] and run.failed == [] and run.permanent == ["c"]
    assert [ledger.retry_delay(n) for n in (1, 2, 3, 6, 9)] == [10, 20, 40, 300, 300]


def test_the_leader_stops_acting_at_its_renew_deadline() -> None:
    now = [100.0]
    lead = Leadership(namespace="ns", duration=15, clock=lambda: now[0])
    with pytest.raises(NotLeader, match="standby"):
        lead.check()
    lead._renewed_at = 100.0  # a renewal sent at t=100 succeeded
    lead.check()
    now[0] = 109.9
    lead.check()
    now[0] = 110.0  # 2/3 of the lease: well before a standby may take over at 115
    with pytest.raises(NotLeader, match="renew deadline"):
        lead.check()
    deadline, lease, every = lead.renew_deadline, lead.duration, lead.renew_every  # configured, not measured
    assert every < deadline < lease


def test_an_exception_in_a_reconcile_lands_in_stalled_with_a_reason_and_a_warning(world: dict[str, Any]) -> None:
    from rolecall.roles.common import reconcile_with
    from rolecall.runs.context import Runtime

    body = {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
            "metadata": {"namespace": "ns", "name": "mc", "uid": "u", "generation": 3, "resourceVersion": "7"},
            "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}}}}

    async def broken(ctx: Any) -> None:
        raise KeyError("surprise")

    delay = asyncio.run(reconcile_with(CACHE_SERVER, body, Memory(), Runtime(clock=FakeClock()),
                                       CacheServerSpec, CacheServerStatus, broken))
    written = world["writes"].statuses[-1]
    conditions = {c["type"]: c for c in written["conditions"]}
    assert conditions["Stalled"]["status"] == "True" and conditions["Stalled"]["reason"] == "InternalError"
    assert "KeyError" in conditions["Stalled"]["message"] and conditions["Ready"]["status"] == "False"
    assert written["observedGeneration"] == 3 and written["phase"] == "Stalled"
    assert world["events"] == [("Warning", "InternalError", conditions["Stalled"]["message"])]
    assert delay == pytest.approx(10)  # looked at again with backoff

    invalid = {**body, "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}},
                                "clearedAfter": "2026-02-30T10:00:00Z"}}  # as if admission had let it in
    asyncio.run(reconcile_with(CACHE_SERVER, invalid, Memory(), Runtime(clock=FakeClock()), CacheServerSpec,
                               CacheServerStatus, broken))
    stalled = {c["type"]: c for c in world["writes"].statuses[-1]["conditions"]}["Stalled"]
    assert stalled["reason"] == "InvalidSpec" and "clearedAfter" in stalled["message"], stalled


def test_waves_act_on_a_share_then_pause_and_the_pause_survives_a_restart(world: dict[str, Any]) -> None:
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "ok"

    waves = {"size": "50%", "pauseSeconds": 60}
    clear = request.Action(**{**action(act).__dict__, "waves_field": "clear_waves"})
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, clearWaves=waves)
    asyncio.run(request.step(ctx, clear))
    s = ctx.status
    assert len(acted) == 3 and s.run is not None and len(s.run.pending) == 3 and s.run.waves_done == 1
    assert ctx.busy is not None and ctx.busy[0] == "WaitingForWave" and min(ctx.delays) == pytest.approx(60)
    assert s.last_request is None, "acknowledged before every wave ran"
    clock.advance(30)  # a restart in the pause keeps it
    again = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, status=s.model_copy(deep=True), clearWaves=waves)
    asyncio.run(request.step(again, clear))
    assert len(acted) == 3 and again.busy is not None and again.busy[0] == "WaitingForWave"
    clock.advance(31)
    asyncio.run(request.step(again, clear))
    s = again.status
    assert sorted(acted) == [p.name for p in PODS] and s.run is None
    assert s.last_request is not None and (s.last_request.outcome, s.last_request.done) == ("Succeeded", 6)


def test_a_cancel_in_a_wave_pause_ends_the_request_with_the_rest_not_started(world: dict[str, Any]) -> None:
    clock, acted = FakeClock(), []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "ok"

    waves = {"size": 2, "pauseSeconds": 60}
    clear = request.Action(**{**action(act).__dict__, "waves_field": "clear_waves"})
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, clearWaves=waves)
    asyncio.run(request.step(ctx, clear))
    clock.advance(5)
    cancel = {"rolecall.dev/clear-requested-at": "t1", "rolecall.dev/cancel": "t1"}
    again = context(clock, cancel, status=ctx.status.model_copy(deep=True), clearWaves=waves)
    asyncio.run(request.step(again, clear))
    last = again.status.last_request
    assert len(acted) == 2 and again.status.run is None and last is not None
    assert (last.outcome, last.done, last.not_started) == ("Cancelled", 2, 4)


def test_a_held_request_waits_unhandled_and_runs_once_the_hold_lifts(world: dict[str, Any]) -> None:
    clock, acted = FakeClock(), []
    why: list[str | None] = ["the role is stopped"]

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        acted.append(t.name)
        return "ok"

    clear = request.Action(**{**action(act).__dict__, "hold": lambda ctx: why[0]})
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"})
    asyncio.run(request.step(ctx, clear))
    s = ctx.status
    assert acted == [] and s.run is None and s.last_handled_clear_request is None and not world["writes"].statuses
    held = next(c for c in s.conditions or [] if c.type == "Cleared")
    assert held.reason == "HeldWhileStopped" and "the role is stopped" in held.message
    why[0] = None
    asyncio.run(request.step(ctx, clear))
    assert len(acted) == len(PODS) and s.last_handled_clear_request == "t1"


def test_a_pod_failed_in_an_early_wave_is_named_retried_and_the_request_is_failed(world: dict[str, Any]) -> None:
    clock, healthy = FakeClock(), False

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        if t.name == "mc-0" and not healthy:
            raise ConnectionRefusedError("memcached unreachable")
        return "ok"

    waves = {"size": 3, "pauseSeconds": 60}
    clear = request.Action(**{**action(act).__dict__, "waves_field": "clear_waves", "attempts": 1})
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, clearWaves=waves)
    asyncio.run(request.step(ctx, clear))  # wave 1: mc-0 fails
    clock.advance(61)
    asyncio.run(request.step(ctx, clear))  # wave 2: all fine; the request ends
    s = ctx.status
    assert s.last_request is not None and (s.last_request.outcome, s.last_request.failed) == ("Failed", 1)
    assert [p.pod for p in s.failed_pods or []] == ["mc-0"] and "unreachable" in (s.failed_pods or [])[0].message
    assert s.run is not None and s.run.first_pass_done and s.run.retry_at is not None, "the retry is scheduled"
    healthy = True
    clock.advance(11)
    asyncio.run(request.step(ctx, clear))
    assert s.run is None and s.last_request is not None and s.last_request.reason == "ClearedAfterRetry"


def test_a_held_request_with_a_due_slot_does_not_spin(world: dict[str, Any]) -> None:
    clock = FakeClock()

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        raise AssertionError("acted while held")

    clear = request.Action(**{**action(act).__dict__, "schedule_field": "clear_schedule",
                              "hold": lambda ctx: "the role is stopped"})
    status = None
    for _ in range(2):  # first sight of the schedule, then a slot due next to the token
        ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, status=status,
                      clearSchedule={"cron": "* * * * * */10"})
        asyncio.run(request.step(ctx, clear))
        status = ctx.status
        clock.advance(1)
    assert min(ctx.delays) > 1, f"woken every {min(ctx.delays)}s while held"


def test_a_dry_run_slot_leaves_a_real_request_and_its_retries_alone(world: dict[str, Any]) -> None:
    clock, healthy = FakeClock(), False

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        if t.name == "mc-3" and not healthy:
            raise ConnectionRefusedError("memcached unreachable")
        return "ok"

    clear = request.Action(**{**action(act).__dict__, "schedule_field": "clear_schedule", "attempts": 1})
    schedule = {"cron": "* * * * * */10", "dryRun": True}
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, clearSchedule=schedule)
    asyncio.run(request.step(ctx, clear))
    s = ctx.status
    assert s.run is not None and s.run.failed == ["uid-3"]
    clock.advance(1)  # a dry-run slot passes
    asyncio.run(request.step(ctx, clear))
    assert s.history is not None and s.history[0].dry_run and s.run is not None and s.run.failed == ["uid-3"]
    healthy = True
    clock.advance(10)
    asyncio.run(request.step(ctx, clear))
    assert s.last_request is not None and s.last_request.reason == "ClearedAfterRetry"


def test_work_starts_only_after_a_renewal_confirms_a_late_acquisition() -> None:
    """An acquisition answered 1.5 s late (duration 3: renew deadline 2 s) leaves 0.5 s for the confirming
    renewal: when that one is late too, no work starts at all; when it lands, work starts once."""
    now = [0.0]
    lead = Leadership(namespace="ns", duration=3, clock=lambda: now[0])
    renewals_slow = [True]
    events_: list[str] = []

    def acquire() -> bool:
        now[0] += 1.5  # the answer comes 1.5 s after the request was sent
        return True

    def renew() -> bool:
        if renewals_slow[0]:
            time.sleep(1.0)  # longer than the 0.5 s left before the renew deadline
            renewals_slow[0] = False
            return True
        now[0] += 0.1
        return True

    lead._try_acquire = acquire  # type: ignore[method-assign]
    lead._renew = renew  # type: ignore[method-assign]

    async def lost() -> None:
        events_.append("lose")

    async def main() -> None:
        task = asyncio.create_task(lead.run(lambda: events_.append("lead"), lost))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if "lead" in events_:
                break
        task.cancel()

    asyncio.run(main())
    assert events_ == ["lead"], events_  # the unconfirmed first term never led, so nothing was cancelled
    assert lead.terms == 1


def test_progress_writes_overlap_the_fan_out_but_unwritten_outcomes_stay_bounded(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """While one progress write is on its way targets keep starting; once a batch's worth (outcomes not in it
    plus targets in flight) has gathered behind it nothing new starts until it lands: targets started but not
    in a write that landed stay at most 2 * max(batch, concurrency)."""
    clock, batch, concurrency = FakeClock(), 2, 3
    many = [Target(f"uid-{i:02d}", f"mc-{i:02d}", "node") for i in range(40)]
    started: set[str] = set()
    writing: list[bool] = [False]
    overlapped: list[str] = []
    worst: list[int] = [0]

    async def slow_flush(self: StatusWriter[Any]) -> bool:
        snapshot = self.status.dump()
        writing[0] = True
        await asyncio.sleep(0.02)  # the write is on its way; it lands with what it carried when sent
        writing[0] = False
        world["writes"].statuses.append(snapshot)
        self.written = snapshot
        return True

    monkeypatch.setattr(StatusWriter, "flush", slow_flush)

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        landed = world["writes"].statuses[-1].get("run") or {}
        recorded = {u for u in (x.uid for x in many)} - set(landed.get("pending", []))
        worst[0] = max(worst[0], len(started - recorded))
        if writing[0]:
            overlapped.append(t.uid)
        started.add(t.uid)
        await asyncio.sleep(0.001)
        return "ok"

    async def resolve(ctx: Any) -> list[Target]:
        return list(many)

    clear = request.Action(**{**action(act).__dict__, "resolve": resolve})
    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, concurrency=concurrency)
    asyncio.run(request.step(ctx, clear))
    assert ctx.status.last_request is not None and ctx.status.last_request.done == 40
    assert overlapped, "no target started while a progress write was on its way"
    assert worst[0] <= 2 * max(batch, concurrency), worst[0]


def test_an_allowed_answer_is_reused_briefly_and_a_refusal_never(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run-time review: 100 requests by one account in a burst cost one SubjectAccessReview; a refusal
    is asked again every time, and an allowed answer only for ALLOWED_SECONDS."""
    answers: list[bool] = []
    asked: list[str] = []
    now = [1000.0]

    class Review:
        def __init__(self, allowed: bool) -> None:
            self.data = json.dumps({"status": {"allowed": allowed}}).encode()

    class Api:
        def create_subject_access_review(self, body: dict[str, Any], _preload_content: bool) -> Review:
            asked.append(body["spec"]["user"])
            return Review(answers.pop(0))

    monkeypatch.setattr(kube, "authorization", lambda: Api())
    monkeypatch.setattr(authz.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(authz, "_allowed_until", {})
    attrs = authz.Attributes("", "pods", "exec", "create", None)

    def allowed(user: str) -> bool:
        return asyncio.run(authz._allowed(user, ["g"], "ns", attrs))

    answers[:] = [True]
    assert all(allowed("ann") for _ in range(100)) and asked == ["ann"]
    now[0] += authz.ALLOWED_SECONDS + 0.1
    answers[:] = [False, False]
    assert not allowed("ann") and not allowed("ann") and asked == ["ann", "ann", "ann"]  # refusals: asked each time
    answers[:] = [True]
    assert allowed("bob") and asked[-1] == "bob"  # another user is another question


@pytest.mark.parametrize(("batch", "concurrency"), [(2, 3), (5, 10), (5, 2)])
def test_the_repeat_bound_holds_whatever_the_timings(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     batch: int, concurrency: int) -> None:
    """Random act and write times (seeded): at every start, the targets started but not in a landed write stay
    within 2 * max(batch, concurrency), the bound the README states for a crash."""
    import random

    rng = random.Random(batch * 100 + concurrency)
    monkeypatch.setattr(pod_executor, "PROGRESS_BATCH", batch)
    many = [Target(f"uid-{i:02d}", f"mc-{i:02d}", "node") for i in range(60)]
    started: set[str] = set()
    worst = [0]

    async def slow_flush(self: StatusWriter[Any]) -> bool:
        snapshot = self.status.dump()
        await asyncio.sleep(rng.uniform(0, 0.01))
        world["writes"].statuses.append(snapshot)
        self.written = snapshot
        return True

    monkeypatch.setattr(StatusWriter, "flush", slow_flush)

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        landed = world["writes"].statuses[-1].get("run") or {}
        recorded = {x.uid for x in many} - set(landed.get("pending", []))
        started.add(t.uid)
        worst[0] = max(worst[0], len(started - recorded))
        await asyncio.sleep(rng.uniform(0, 0.004))
        return "ok"

    async def resolve(ctx: Any) -> list[Target]:
        return list(many)

    clear = request.Action(**{**action(act).__dict__, "resolve": resolve})
    ctx = context(FakeClock(), {"rolecall.dev/clear-requested-at": "t1"}, concurrency=concurrency)
    asyncio.run(request.step(ctx, clear))
    assert ctx.status.last_request is not None and ctx.status.last_request.done == 60
    assert worst[0] <= 2 * max(batch, concurrency), (worst[0], batch, concurrency)


def test_finished_outcomes_are_written_after_progress_seconds_even_when_no_other_target_finishes(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """One target done, the other slow: its outcome reaches status by the timer, before the slow one ends."""
    monkeypatch.setattr(pod_executor, "PROGRESS_BATCH", 50)
    monkeypatch.setattr(pod_executor, "PROGRESS_SECONDS", 0.05)
    seen_before_slow_ended: list[list[str]] = []

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        if t.name == "mc-1":
            await asyncio.sleep(0.5)
            seen_before_slow_ended.append([s.get("done") for s in world["writes"].statuses])
        return "ok"

    two = [Target("uid-0", "mc-0", "node"), Target("uid-1", "mc-1", "node")]

    async def resolve(ctx: Any) -> list[Target]:
        return list(two)

    clear = request.Action(**{**action(act).__dict__, "resolve": resolve})
    ctx = context(FakeClock(), {"rolecall.dev/clear-requested-at": "t1"}, concurrency=2)
    asyncio.run(request.step(ctx, clear))
    assert 1 in seen_before_slow_ended[0], seen_before_slow_ended  # mc-0's outcome was written meanwhile


def test_a_pause_past_the_renew_deadline_waits_and_repeats_no_target(world: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While a renewal sent in time is not yet handled the guard refuses; the term goes on, so the fan-out
    and its writes wait (runs/fence.py) instead of aborting: the targets in flight finish and are recorded,
    and none is acted on twice."""
    clock, acted, refused = FakeClock(), [], []
    paused = False

    def guard() -> None:
        if paused:
            refused.append(len(acted))
            raise NotLeader("leader Lease not renewed for 2.5s (renew deadline 2s)")

    async def until_allowed() -> None:
        while paused:
            await asyncio.sleep(0.001)

    async def flush(self: StatusWriter[Any]) -> bool:
        guard()  # the API client checks the guard before every write
        return await world["writes"].flush(self)

    monkeypatch.setattr(kube, "check_write_guard", guard)
    monkeypatch.setattr(kube, "until_writes_allowed", until_allowed)
    monkeypatch.setattr(StatusWriter, "flush", flush)

    def resume() -> None:
        nonlocal paused
        paused = False

    async def act(ctx: Any, p: None, t: Target, ip: str) -> str:
        nonlocal paused
        acted.append(t.name)
        if len(acted) == 2:
            paused = True  # the loop stalls here with two pods in flight (concurrency 2)
            asyncio.get_running_loop().call_later(0.05, resume)
        await asyncio.sleep(0.001)
        return "flush_all: OK"

    ctx = context(clock, {"rolecall.dev/clear-requested-at": "t1"}, concurrency=2)
    asyncio.run(request.step(ctx, action(act)))
    assert sorted(acted) == sorted(p.name for p in PODS), "a pod was acted on twice, or not at all"
    assert refused, "the guard never refused: the pause did not happen"
    s = ctx.status
    assert s.run is None and s.last_request is not None and s.last_request.outcome == "Succeeded"
    assert s.last_request.done == len(PODS)
