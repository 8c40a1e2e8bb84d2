"""Latency of one request on one pod: annotate -> pod flushed -> status written, over many requests,
against a latency floor measured in the same run.

  python -m benchmarks.latency [--requests 60]                      (part of make bench)

The total is timed by the client (patch sent -> the watch event carrying the handled token).
  rolecall  the operator handles a CacheServer in a namespace it watches
  floor     a bare script in this process (one thread) watches a CacheServer in a namespace the operator
            does not watch and, for each new token, writes the two status patches rolecall must write
            (the intent: a ledger naming the token and the pod, before acting; the outcome: the handled
            token, after), with one flush_all in between: no admission of the requester, no Events, no
            conditions; it is what any controller keeping rolecall's crash promise has to pay
Requests alternate between the two. The operator's own histograms split its part: event-to-reconcile
(queueing in the work queue), ledger write, engine calls (the pod looked up in the index + flush_all),
final status write; the remainder is watch delivery to the operator plus delivery of the final status
back to the client. Step figures are means (histogram sum/count over the run); the totals have p50/p95.
Writes results/latency.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, watch  # type: ignore[import-untyped]
from pymemcache.client.base import Client as Memcache

from benchmarks.common import bed, machine, namespace, operator, pyplot, wait_status, write
from cachekit import create_cs, create_pods, patch_cs, standin_pod, wait_memcached
from harness import Cluster, running_pods

STEPS = [("rolecall_event_to_reconcile_seconds", {"kind": "cacheservers"}, "event-to-reconcile"),
         ("rolecall_request_step_seconds", {"kind": "CacheServer", "step": "ledger-write"}, "ledger-write"),
         ("rolecall_request_step_seconds", {"kind": "CacheServer", "step": "engine-calls"}, "engine-calls"),
         ("rolecall_request_step_seconds", {"kind": "CacheServer", "step": "status-write"}, "status-write")]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _request(cluster: Cluster, ns: str, token: str) -> float:
    """Seconds from sending the annotation patch to the watch event with the handled token."""
    t0 = time.monotonic()
    patch_cs(cluster, ns, "mc", {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}})
    return wait_status(cluster, ns, "cacheservers", "mc", lambda s: s.get("lastHandledClearRequest") == token) - t0


class Floor(threading.Thread):
    """The latency floor: watch -> intent patch -> flush_all -> outcome patch, nothing else."""

    def __init__(self, cluster: Cluster, ns: str, pod_uid: str, ip: str) -> None:
        super().__init__(name="latency-floor", daemon=True)
        self.api = client.CustomObjectsApi(cluster.api_client)
        self.ns, self.pod_uid, self.ip = ns, pod_uid, ip
        self.watcher = watch.Watch()
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        self.watcher.stop()

    def _patch(self, status: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status("rolecall.dev", "v1alpha1", self.ns, "cacheservers", "mc",
                                                       {"status": status})

    def run(self) -> None:
        try:
            self._serve()
        except Exception:
            if not self.stopping:  # the bed going away at the end breaks the watch: expected then
                raise

    def _serve(self) -> None:
        handled = None
        for ev in self.watcher.stream(self.api.list_namespaced_custom_object, "rolecall.dev", "v1alpha1", self.ns,
                                      "cacheservers", field_selector="metadata.name=mc", timeout_seconds=3600):
            token = (ev["object"]["metadata"].get("annotations") or {}).get("rolecall.dev/clear-requested-at")
            if not token or token == handled:
                continue
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self._patch({"run": {"action": "clear", "token": token, "acceptedAt": now, "targets": 1,
                                 "pending": [self.pod_uid]}})
            c = Memcache((self.ip, 11211), connect_timeout=5, timeout=5)
            try:
                assert c.flush_all(noreply=False)
            finally:
                c.close()
            self._patch({"run": None, "lastHandledClearRequest": token, "done": 1})
            handled = token


def _py_spy(pid: int) -> tuple[subprocess.Popen[bytes], Path]:
    out = Path(tempfile.mkdtemp(prefix="bench-latency-spy-")) / "raw.txt"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "--rate", "250",
                             "--format", "raw", "--full-filenames", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached before the first timed request
    return proc, out


def _cpu_report(proc: subprocess.Popen[bytes], out: Path, requests: int) -> None:
    """Where the operator's CPU went during the requests (py-spy samples of busy threads): own time by function
    and by package, and time inside each of rolecall's own functions."""
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    own, inside, packages, total = Counter[str](), Counter[str](), Counter[str](), 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames, n = stack.split(";"), int(count)
        if not frames[-1].strip() or frames[-1].startswith(("select (", "EpollSelector.select", "_worker (",
                                                           "wait (", "Condition.wait")):
            continue  # a thread waiting, not working
        total += n
        own[frames[-1]] += n
        packages[_package_of(frames[-1])] += n
        for f in {f for f in frames if "/rolecall/" in f}:
            inside[f] += n
    rows = ([{"kind": "package", "what": k, "percent": round(100 * v / total, 1)} for k, v in packages.most_common(12)]
            + [{"kind": "own time", "what": _short(k), "percent": round(100 * v / total, 1)}
               for k, v in own.most_common(15)]
            + [{"kind": "inside rolecall", "what": _short(k), "percent": round(100 * v / total, 1)}
               for k, v in inside.most_common(15)])
    print(f"\noperator CPU during {requests} requests: {total} busy samples at 250 Hz (~{total * 4 / requests:.1f} ms "
          "per request, all threads)")
    for r in rows:
        print(f"{r['kind']:<16}{r['percent']:>6}%  {r['what'][:110]}")
    write("latency_cpu", {"samples": total, "requests": requests, "rows": rows}, rows)


def _short(frame: str) -> str:
    """`f (/long/path/site-packages/pkg/mod.py:12)` -> `f (pkg/mod.py:12)`: full paths (py-spy --full-filenames)
    are what tells packages apart, short ones are what a person reads."""
    name, _, path = frame.rpartition(" (")
    for marker in ("site-packages/", "/operator/"):
        if marker in path:
            return f"{name} ({path.split(marker)[1]}"
    return f"{name} ({path.rpartition('/')[2]}" if "/" in path else frame


def _package_of(frame: str) -> str:
    path = frame.rpartition(" (")[2]
    if "/rolecall/" in path:
        return "rolecall"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    return "python (stdlib)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--cpu-profile", action="store_true",
                   help="then record the operator with py-spy over as many untimed requests: results/latency_cpu.csv")
    args = p.parse_args()
    with bed("latency") as cluster:
        ns, floor_ns = namespace(cluster, "bench-latency"), namespace(cluster, "bench-latency-floor")
        spec = {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}}, "statsIntervalSeconds": 86400}
        for where in (ns, floor_ns):
            create_pods(cluster, where, [standin_pod("mc-0", "memcached", {"app": "mc"})])
        pods = {where: running_pods(cluster, where, "app=mc", 1)[0] for where in (ns, floor_ns)}
        wait_memcached([p.status.pod_ip for p in pods.values()])
        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-latency-")))
        for where in (ns, floor_ns):
            create_cs(cluster, where, {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
                                       "metadata": {"name": "mc"}, "spec": spec})
        floor = Floor(cluster, floor_ns, pods[floor_ns].metadata.uid, pods[floor_ns].status.pod_ip)
        floor.start()
        for warm in range(3):  # untimed: the first requests pay for connection pools and imports
            _request(cluster, ns, f"w{warm}")
            _request(cluster, floor_ns, f"w{warm}")

        def sums() -> dict[str, tuple[float, float]]:
            return {step: (op.metric(f"{name}_sum", labels), op.metric(f"{name}_count", labels))
                    for name, labels, step in STEPS}

        before = sums()
        totals: list[float] = []
        floors: list[float] = []
        for i in range(args.requests):
            token = f"r{i}"
            totals.append(_request(cluster, ns, token))
            time.sleep(0.05)  # let the request's Events go out before the next one starts
            floors.append(_request(cluster, floor_ns, token))
            time.sleep(0.05)
        after = sums()
        if args.cpu_profile:  # after the timed requests, on requests of their own: sampling costs CPU
            spy = _py_spy(op.procs[-1].pid)
            for i in range(args.requests):
                _request(cluster, ns, f"profiled-{i}")
                time.sleep(0.05)
            _cpu_report(*spy, args.requests)
        floor.stop()
        op.stop_all()
    steps = {}
    for step in (s for _, _, s in STEPS):
        d_sum, d_count = after[step][0] - before[step][0], after[step][1] - before[step][1]
        steps[step] = d_sum / d_count if d_count else 0.0
    total_mean = statistics.mean(totals)
    steps["watch-delivery+observation"] = max(0.0, total_mean - sum(steps.values()))
    rows = [{"measure": "floor p50", "ms": round(1000 * statistics.median(floors), 1)},
            {"measure": "floor p95", "ms": round(1000 * _pct(floors, 0.95), 1)},
            {"measure": "rolecall p50 / floor p50", "ms": round(statistics.median(totals) / statistics.median(floors),
                                                                 2)},
            {"measure": "total p50", "ms": round(1000 * statistics.median(totals), 1)},
            {"measure": "total p95", "ms": round(1000 * _pct(totals, 0.95), 1)},
            {"measure": "total min", "ms": round(1000 * min(totals), 1)},
            {"measure": "total max", "ms": round(1000 * max(totals), 1)},
            {"measure": "total mean", "ms": round(1000 * total_mean, 1)},
            *({"measure": f"mean {k}", "ms": round(1000 * v, 1)} for k, v in steps.items())]
    print(f"\nlatency of one clear request on one pod, {args.requests} requests ({machine()})")
    for r in rows:
        unit = "x" if "/" in r["measure"] else "ms"
        print(f"{r['measure']:<36}{r['ms']:>10.2f} {unit}")
    write("latency", {"requests": args.requests, "totals_s": totals, "floor_s": floors, "steps_mean_s": steps}, rows)
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.hist([1000 * t for t in totals], bins=20, color="#4a7ab5", alpha=0.8, label="rolecall")
    a1.hist([1000 * t for t in floors], bins=20, color="#999999", alpha=0.8, label="floor")
    a1.axvline(1000 * statistics.median(totals), color="k", linestyle="--", label="rolecall p50")
    a1.axvline(1000 * statistics.median(floors), color="g", linestyle="--", label="floor p50")
    a1.set_xlabel("annotate -> handled status (ms)")
    a1.legend(fontsize=8)
    left = 0.0
    for k, v in steps.items():
        a2.barh(["mean"], [1000 * v], left=[left], label=k)
        left += 1000 * v
    a2.set_xlabel("ms (means)")
    a2.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"request latency, one pod ({machine()})", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "latency.png", dpi=110)
    print("wrote benchmarks/results/latency.{json,csv,png}")


if __name__ == "__main__":
    main()
