"""A CacheServer cleared on a seconds-level cron (spec.clearSchedule): each slot flushes every memcached pod once
(memcached's own cmd_flush), lands in status.history and status.schedules; a suspend skips slots and a resume
runs again; slots missed while the operator is down run once (the latest), not once per slot. A dryRun schedule
reports its slots and flushes nothing; a closed startWindow holds a due slot."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cachekit import cacheserver, cmd_flush, condition, create_cs, create_deployment, patch_cs, pod_ips, status
from harness import Cluster, Operator, deployment, running_pods, wait_for

EVERY_4S = "* * * * * */4"  # six fields: seconds last


def _schedule(st: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in st.get("schedules") or [] if s["action"] == "clear"), {})


def _scheduled_runs(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in st.get("history") or [] if h["trigger"] == "Schedule"]


def _consistent(cluster: Cluster, ns: str, ips: list[str]) -> tuple[list[int], dict[str, Any]] | None:
    """cmd_flush of every pod and status read with no run in between (the counters equal before and after)."""
    before = [cmd_flush(ip) for ip in ips]
    st = status(cluster, ns, "mc")
    after = [cmd_flush(ip) for ip in ips]
    return (after, st) if before == after and not st.get("run") else None


def test_each_slot_clears_once_suspend_skips_and_missed_slots_run_once(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}, clearSchedule={"cron": EVERY_4S}))

    def runs(n: int) -> tuple[list[int], dict[str, Any]] | None:
        found = _consistent(local_bed, namespace, ips)
        return found if found and len(_scheduled_runs(found[1])) >= n else None

    flushes, st = wait_for(lambda: runs(2), "two scheduled clears", 40, interval=0.3)
    done = _scheduled_runs(st)
    assert all(h["outcome"] == "Succeeded" and h["done"] == 2 for h in done), done
    assert flushes == [len(done)] * 2  # each slot flushed each pod exactly once
    slots = [h["scheduledAt"] for h in done]
    assert len(set(slots)) == len(slots) and _schedule(st)["lastScheduleTime"] == slots[0]
    assert _schedule(st)["nextScheduleTime"] > slots[0]

    # Suspended: slots pass (counted as missed), nothing is flushed.
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearSchedule": {"cron": EVERY_4S, "suspend": True}}})
    held = wait_for(lambda: (f := _consistent(local_bed, namespace, ips)) and _schedule(f[1]).get("suspended") and f,
                    "the schedule to show suspended", 20)
    missed = _schedule(held[1])["missed"]
    wait_for(lambda: _schedule(status(local_bed, namespace, "mc"))["missed"] >= missed + 2,
             "two slots to pass while suspended", 30, interval=0.3)
    assert [cmd_flush(ip) for ip in ips] == held[0]

    # Resumed: the next slot runs again.
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearSchedule": {"cron": EVERY_4S, "suspend": False}}})
    count = len(_scheduled_runs(held[1]))
    flushes, st = wait_for(lambda: runs(count + 1), "a scheduled clear after the resume", 30, interval=0.3)
    assert flushes == [held[0][0] + len(_scheduled_runs(st)) - count] * 2

    # Operator down for several slots: on restart the latest missed slot runs once, the others are missed.
    operator.stop_all()
    down = wait_for(lambda: _consistent(local_bed, namespace, ips), "a quiet moment", 20)
    last_slot = _scheduled_runs(down[1])[0]["scheduledAt"]
    missed = _schedule(down[1])["missed"]
    wait_for(lambda: _slots_passed_since(last_slot) >= 3, "three slots to pass with the operator down", 30)
    operator.start()
    first = wait_for(lambda: (f := _consistent(local_bed, namespace, ips)) and _scheduled_runs(f[1])[0][
        "scheduledAt"] != last_slot and f, "the first scheduled clear after the restart", 60, interval=0.2)
    after_restart = _scheduled_runs(first[1])
    new = [h for h in after_restart if h["scheduledAt"] > last_slot]
    ran = _parse(new[-1]["scheduledAt"])  # the first slot run after the restart
    skipped = int((ran - _parse(last_slot)).total_seconds() // 4) - 1  # the outage's slots before it
    assert skipped >= 2 and _schedule(first[1])["missed"] == missed + skipped, (first[1], skipped)
    # every new run is one slot, once; the outage's slots did not each run
    assert first[0] == [down[0][0] + len(new)] * 2 and len(new) <= 2, (first[0], down[0], new)


def _parse(value: str) -> Any:
    from rolecall.api.types import parse_time

    return parse_time(value)


def _slots_passed_since(slot: str) -> int:
    import datetime as dt

    from rolecall.api.types import parse_time

    return int((dt.datetime.now(dt.UTC) - parse_time(slot)).total_seconds() // 4)


def test_a_dry_run_schedule_reports_slots_and_a_start_window_holds_them(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """dryRun: every slot is reported (history DryRun, lastDryRun) and memcached is never flushed; then a
    startWindow that is closed now holds the due slot (OutsideStartWindow, waitsForWindow) and still flushes
    nothing."""
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 2))
    running_pods(local_bed, namespace, "app=mc", 2)
    ips = list(pod_ips(local_bed, namespace, "app=mc").values())
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                clearSchedule={"cron": EVERY_4S, "dryRun": True}))
    st = wait_for(lambda: len(_scheduled_runs(s := status(local_bed, namespace, "mc"))) >= 2 and s,
                  "two dry-run slots", 30)
    assert all(h["outcome"] == "DryRun" and h["dryRun"] for h in _scheduled_runs(st)), st["history"]
    assert st["lastDryRun"]["token"].startswith("schedule@") and st["lastDryRun"]["targets"] == 2
    assert not st.get("lastRequest") and [cmd_flush(ip) for ip in ips] == [0, 0]

    now = dt.datetime.now(dt.UTC)
    closed = f"{(now + dt.timedelta(hours=2)):%H:%M}-{(now + dt.timedelta(hours=3)):%H:%M}"
    patch_cs(local_bed, namespace, "mc", {"spec": {"clearSchedule": {"dryRun": False, "startWindow": closed}}})
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("conditions") and
                  condition(s, "Cleared").get("reason") == "OutsideStartWindow" and s, "the slot held", 30)
    assert _schedule(st)["waitsForWindow"] and closed in condition(st, "Cleared")["message"]
    assert not st.get("lastRequest") and not st.get("run") and [cmd_flush(ip) for ip in ips] == [0, 0]
