"""A clear in waves (clearWaves: 40% of 5 pods = 2 at a time, 15 s apart) on real memcached: during each pause
the engines' own cmd_flush shows exactly the pods of the waves so far flushed and the others untouched, status
names the guard (Reconciling, WaitingForWave), and the end result is every pod flushed once, in three waves
spaced by at least the pause."""

from __future__ import annotations

import itertools
from typing import Any

from cachekit import annotate_clear, cacheserver, cmd_flush, condition, create_cs, create_deployment, pod_ips, status
from harness import Cluster, Operator, deployment, running_pods, wait_for
from rolecall.api.types import parse_time

PODS, PAUSE = 5, 15


def _pausing_after(cluster: Cluster, ns: str, wave: int) -> dict[str, Any] | None:
    st = status(cluster, ns, "mc")
    run = st.get("run") or {}
    if run.get("wavesDone") != wave or condition(st, "Reconciling").get("reason") != "WaitingForWave":
        return None
    return st


def test_a_clear_in_waves_flushes_a_share_then_pauses(local_bed: Cluster, namespace: str, operator: Operator) -> None:
    create_deployment(local_bed, namespace, deployment("mc", "memcached", PODS))
    running_pods(local_bed, namespace, "app=mc", PODS)
    ips = pod_ips(local_bed, namespace, "app=mc")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                clearWaves={"size": "40%", "pauseSeconds": PAUSE}))
    annotate_clear(local_bed, namespace, "mc", "waves-1")
    flushed_by_wave: list[set[str]] = []
    for wave, expected in ((1, 2), (2, 4)):
        st = wait_for(lambda w=wave: _pausing_after(local_bed, namespace, w), f"the pause after wave {wave}", 60,
                      interval=0.2)
        flushes = {name: cmd_flush(ip) for name, ip in ips.items()}
        again = status(local_bed, namespace, "mc")["run"]
        assert again["wavesDone"] == wave and again["waveResumeAt"] == st["run"]["waveResumeAt"], "read too late"
        assert sorted(flushes.values()) == [0] * (PODS - expected) + [1] * expected, (wave, flushes)
        assert st["done"] == expected and st["phase"] == "Clearing", st
        assert condition(st, "Ready")["status"] == "False"
        assert f"{PODS - expected} wait for the next wave" in condition(st, "Reconciling")["message"]
        flushed_by_wave.append({n for n, c in flushes.items() if c} - set().union(*flushed_by_wave))

    last = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastHandledClearRequest") == "waves-1"
                    and s, "the clear acknowledged", 60)
    assert last["lastRequest"]["outcome"] == "Succeeded" and last["lastRequest"]["done"] == PODS, last["lastRequest"]
    assert sorted(cmd_flush(ip) for ip in ips.values()) == [1] * PODS
    assert last["history"][0]["outcome"] == "Succeeded" and not last.get("run")
    flushed_by_wave.append(set(ips) - set().union(*flushed_by_wave))
    at = {r["pod"]: parse_time(r["at"]) for r in last["recentResults"]}
    for earlier, later in itertools.pairwise(flushed_by_wave):
        gap = (min(at[p] for p in later) - max(at[p] for p in earlier)).total_seconds()
        assert gap >= PAUSE, f"waves {sorted(earlier)} and {sorted(later)} only {gap:.1f}s apart"


def test_an_operator_killed_in_a_wave_pause_keeps_the_pause_and_flushes_each_pod_once(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """SIGKILL during the pause: the new process finds the pause in status.run.waveResumeAt, waits it out, and
    flushes only the pods of the later wave (cmd_flush: every pod exactly once)."""
    create_deployment(local_bed, namespace, deployment("mc", "memcached", 4))
    running_pods(local_bed, namespace, "app=mc", 4)
    ips = pod_ips(local_bed, namespace, "app=mc")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                clearWaves={"size": 2, "pauseSeconds": PAUSE}))
    annotate_clear(local_bed, namespace, "mc", "waves-kill")
    st = wait_for(lambda: _pausing_after(local_bed, namespace, 1), "the pause after wave 1", 60, interval=0.2)
    resume_at = parse_time(st["run"]["waveResumeAt"])
    operator.kill()  # SIGKILL in the pause: nothing is written on the way out
    assert sorted(cmd_flush(ip) for ip in ips.values()) == [0, 0, 1, 1]
    operator.start()
    last = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastHandledClearRequest") == "waves-kill"
                    and s, "the clear acknowledged after the restart", 90)
    assert (last["lastRequest"]["outcome"], last["lastRequest"]["done"]) == ("Succeeded", 4), last["lastRequest"]
    assert sorted(cmd_flush(ip) for ip in ips.values()) == [1, 1, 1, 1], "a pod flushed twice or not at all"
    second = [parse_time(r["at"]) for r in last["recentResults"] if parse_time(r["at"]) > resume_at]
    assert len(second) == 2, f"the second wave started before the pause ended: {last['recentResults']}"
