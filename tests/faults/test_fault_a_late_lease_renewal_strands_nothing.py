"""A starved event loop with a Lease renewal in flight strands no object: every schedule still fires, nothing
is flushed twice beyond the documented bound, and `rolecall_overdue_objects` reads 0 at the end.

The starvation is made exactly, many times over: the operator's Lease thread is stopped, its event loop sends
the next renewal (it waits in that thread's queue), the event loop thread is stopped in turn, the Lease thread
goes on and the renewal lands on the apiserver, and only after the renew deadline has passed does the event
loop run again (tests/faults/threadstop.py stops single threads; SIGSTOP would stop the Lease thread too).
The loop then holds an answer that was sent in time and reads it after the deadline, with 20 objects on a
4-second clear schedule due meanwhile: the gap in which reconciles meet NotLeader while the term goes on.
Before the fix such objects were dropped until some unrelated watch event came (issue 31).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]

import threadstop
from cachekit import cacheserver, cmd_flush, create_cs, create_deployment, pod_ips, status
from harness import Cluster, Operator, deployment, running_pods, wait_for

OBJECTS, EVERY_4S, FREEZES = 20, "* * * * * */4", 8
pytestmark = pytest.mark.faults


def _renew_time(cluster: Cluster, op: Operator) -> dt.datetime:
    lease = client.CoordinationV1Api(cluster.api_client).read_namespaced_lease("rolecall-operator",
                                                                                op.lease_namespace)
    return lease.spec.renew_time


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _starve_once(cluster: Cluster, op: Operator, pid: int, lease_tid: int) -> str:
    """One renewal answered while the event loop cannot run, handled 0.4 s past the renew deadline (2 s)."""
    seen = _renew_time(cluster, op)
    renewed = wait_for(lambda: (r := _renew_time(cluster, op)) != seen and r, "a Lease renewal", 5, interval=0.01)
    base = renewed.timestamp()  # the loop sends the next renewal about 1 s after this one, due 2 s after it
    _sleep_until(base + 0.4)
    threadstop.stop(lease_tid)
    try:
        if threadstop.blocked_in(pid, lease_tid) != threadstop.FUTEX:
            return "the Lease thread was busy"
        _sleep_until(base + 1.5)  # the next renewal is queued for the stopped Lease thread
        while True:
            threadstop.stop(pid)  # the main thread runs the event loop
            if threadstop.blocked_in(pid, pid) in (threadstop.EPOLL_WAIT, threadstop.EPOLL_PWAIT):
                break  # idle, so it holds no GIL: the Lease thread can run while it is stopped
            threadstop.resume(pid)
            if time.time() > base + 1.85:
                return "the event loop was never caught idle"
            time.sleep(0.003)
    finally:
        threadstop.resume(lease_tid)
    try:
        landed = wait_for(lambda: (r := _renew_time(cluster, op)) != renewed and r, "the renewal to land", 2,
                          interval=0.01)
        _sleep_until(base + 2.4)
    finally:
        threadstop.resume(pid)
    return f"renewal landed {landed.timestamp() - base:.2f}s after the last one, handled 2.4s after it"


def _scheduled_done(st: dict[str, Any]) -> int:
    return sum(1 for h in st.get("history") or [] if h["trigger"] == "Schedule" and h["outcome"] == "Succeeded")


def test_a_starved_loop_with_a_renewal_in_flight_strands_no_schedule(fault_bed: Cluster, fault_namespace: str,
                                                                    fault_operator: Operator) -> None:
    ns, op = fault_namespace, fault_operator
    for i in range(OBJECTS):
        create_deployment(fault_bed, ns, deployment(f"mc{i}", "memcached", 1))
    ips = {}
    for i in range(OBJECTS):
        running_pods(fault_bed, ns, f"app=mc{i}", 1, timeout=120)
        ips[f"mc{i}"] = next(iter(pod_ips(fault_bed, ns, f"app=mc{i}").values()))
    proc = op.start("--overdue-after-seconds", "6")
    wait_for(lambda: "acquired as" in op.logs(), "the operator to lead", 30)
    lease_tid = threadstop.thread_named(proc.pid, "rolecall-lease")
    for name in ips:
        create_cs(fault_bed, ns, cacheserver(name, "memcached", {"app": name}, historyLimit=50,
                                             clearSchedule={"cron": EVERY_4S}))
    wait_for(lambda: all(cmd_flush(ip) >= 1 for ip in ips.values()), "every schedule's first clear", 60)

    outcomes = [_starve_once(fault_bed, op, proc.pid, lease_tid) for _ in range(FREEZES)]

    # Every schedule still fires: two more clears per pod after the last starvation, by memcached's counter.
    after = {name: cmd_flush(ip) for name, ip in ips.items()}
    stalled: list[str] = []

    def every_schedule_fired_twice() -> bool:
        stalled[:] = [n for n, ip in ips.items() if cmd_flush(ip) < after[n] + 2]
        return not stalled

    try:
        wait_for(every_schedule_fired_twice, "every schedule to fire twice", 30, interval=0.3)
    except AssertionError:
        raise AssertionError(f"{len(stalled)} of {OBJECTS} schedules stopped firing: {stalled}; starvations: "
                             f"{outcomes}") from None
    late = op.metric("rolecall_lease_renewals_late_total")
    deferred = op.metric("rolecall_work_deferred_total")
    terms = op.metric("rolecall_leader_terms_total")
    # And nothing is overdue once the last starvation is more than the margin behind.
    wait_for(lambda: op.metric("rolecall_overdue_objects") == 0, "no overdue object", 15, interval=0.5)

    # Nothing is flushed twice beyond the bound: a flush not recorded as done (its outcome dropped by an ended
    # term) may be done again, at most the one in flight per object per ended term.
    def consistent() -> dict[str, tuple[int, int]] | None:
        counts = {}
        for name, ip in ips.items():
            before = cmd_flush(ip)
            st = status(fault_bed, ns, name)
            if st.get("run") or cmd_flush(ip) != before:
                return None
            counts[name] = (before, _scheduled_done(st))
        return counts

    counts = wait_for(consistent, "a status read with no clear under way", 30, interval=0.2)
    repeats = {name: flushed - done for name, (flushed, done) in counts.items() if flushed != done}
    print(f"{FREEZES} starvations: {outcomes}; late renewals {late:g}, waits for acting {deferred:g}, "
          f"leader terms {terms:g}; flushes per pod {sorted(f for f, _ in counts.values())}; repeats {repeats}")
    assert late >= FREEZES / 2, f"the starvation did not happen as planned: {outcomes}"
    assert all(r > 0 for r in repeats.values()), f"a recorded clear that memcached did not count: {repeats}"
    assert sum(repeats.values()) <= (terms - 1) * OBJECTS, repeats
    assert "Traceback" not in op.logs()
