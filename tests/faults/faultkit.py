"""What the fault tests share: slow memcached targets, and a sampler that checks every status it reads
against memcached's own counters while faults happen (a "lie" is a pod that status calls done whose
cmd_flush says it was not flushed)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cachekit import cmd_flush, create_deployment, pod_ips, status, wait_memcached
from harness import Cluster, deployment, pods, running_pods


@dataclass
class Targets:
    by_uid: dict[str, str]  # pod UID -> pod IP
    names: dict[str, str]  # pod UID -> pod name

    def flushes(self) -> dict[str, int]:
        return {uid: cmd_flush(ip) for uid, ip in self.by_uid.items()}


def slow_memcached(cluster: Cluster, ns: str, name: str, count: int) -> Targets:
    """`count` memcached pods whose flush_all takes 1.5 s each (a delaying proxy in front of memcached)."""
    create_deployment(cluster, ns, deployment(name, "memcached", count,
                                              annotations={"testbed.rolecall.dev/options": "slow-flush"}))
    running_pods(cluster, ns, f"app={name}", count, timeout=120)
    wait_memcached(list(pod_ips(cluster, ns, f"app={name}").values()))
    listed = pods(cluster, ns, f"app={name}")
    return Targets({p.metadata.uid: p.status.pod_ip for p in listed}, {p.metadata.uid: p.metadata.name for p in listed})


def claimed_done(st: dict[str, Any], token: str, all_uids: set[str]) -> set[str]:
    """The pods this status says were cleared for `token`: those the ledger no longer lists, or all of them
    once the request was acknowledged as succeeded."""
    run = st.get("run") or {}
    if run.get("token") == token:
        return all_uids - set(run.get("pending") or []) - set(run.get("failed") or []) - set(run.get("permanent") or [])
    last = st.get("lastRequest") or {}
    if last.get("token") == token and last.get("outcome") == "Succeeded":
        return set(all_uids)
    return set()


@dataclass
class Sampler:
    """Reads status every `interval` in a thread (tolerating an unreachable apiserver) and, for each status
    read, checks the pods it claims done against cmd_flush read right after (counters only grow)."""

    cluster: Cluster
    ns: str
    name: str
    token: str
    targets: Targets
    baseline: dict[str, int]
    interval: float = 0.15
    samples: int = 0
    lies: list[tuple[str, int]] = field(default_factory=list)  # (pod, cmd_flush) claimed done but not flushed
    done_seen: list[int] = field(default_factory=list)  # status.done of this token's run, in order
    recorded: set[str] = field(default_factory=set)  # every pod status ever claimed done for the token
    grew_at: list[float] = field(default_factory=list)  # monotonic times at which `recorded` grew
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def check_once(self) -> set[str]:
        st = status(self.cluster, self.ns, self.name)
        claimed = claimed_done(st, self.token, set(self.targets.by_uid))
        run = st.get("run") or {}
        if run.get("token") == self.token and st.get("done") is not None:
            self.done_seen.append(int(st["done"]))
        flushed = self.targets.flushes()
        for uid in claimed:
            if flushed[uid] <= self.baseline[uid]:
                self.lies.append((self.targets.names[uid], flushed[uid]))
        if claimed - self.recorded:
            self.grew_at.append(time.monotonic())
        self.recorded |= claimed
        self.samples += 1
        return claimed

    def progress_after(self, t: float) -> float | None:
        """Seconds from `t` to the first status that recorded more pods done (the operator acting again)."""
        return next((g - t for g in self.grew_at if g > t), None)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the apiserver is down on purpose: sample again later
                self.check_once()
            time.sleep(self.interval)


def acknowledged(st: dict[str, Any], token: str) -> bool:
    """Whether this status acknowledges request `token` (its outcome recorded, no run left)."""
    return (st.get("lastRequest") or {}).get("token") == token and not st.get("run")


def wait_acknowledged(cluster: Cluster, ns: str, name: str, token: str, timeout: float) -> dict[str, Any]:
    """Waits like a user: `kubectl wait --for=jsonpath='{.status.lastRequest.token}'=TOKEN`, tolerating outages."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            st = status(cluster, ns, name)
            last = st
            if acknowledged(st, token):
                return st
        except Exception as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"request {token!r} not acknowledged within {timeout}s; last: {last!r}")
