"""Scale: 1,000 CacheServers over 5,000 pods; operator RSS and CPU at idle and during a burst of 100
simultaneous clear requests, and the time to handle the burst.

  python -m benchmarks.scale [--resources 1000] [--pods 5000] [--burst 100] [--idle-seconds 60]

KWOK makes pods cheap: the 100 burst CacheServers each select one pod with a real memcached behind it;
the other 900 each select a group of plain pods (no server behind them), created directly as Pods. All
CacheServers use statsIntervalSeconds 86400, so after their first reconcile nothing is due. RSS is the
operator process's VmRSS, CPU its utime+stime from /proc. --runs idle windows and bursts follow each other
on the same bed (median, min, max). Writes results/scale.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from benchmarks.common import bed, machine, namespace, operator, pyplot, summarise, write
from cachekit import pod_ips, standin_pod, wait_memcached
from harness import wait_for

TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / TICK


class Sampler:
    """Samples RSS and CPU of a process every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            rss, cpu = _proc(self.pid)
            self.samples.append((time.monotonic() - t0, rss, cpu))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cs(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer", "metadata": {"name": name},
            "spec": {"engine": "memcached", "selector": {"matchLabels": selector}, "statsIntervalSeconds": 86400,
                     "timeoutSeconds": 2}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resources", type=int, default=1000)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--idle-seconds", type=int, default=60)
    p.add_argument("--runs", type=int, default=3, help="idle windows and bursts, one after the other")
    args = p.parse_args()
    idle_groups = args.resources - args.burst
    plain_pods = args.pods - args.burst
    phases: dict[str, Any] = {}
    with bed("scale") as cluster:
        ns = namespace(cluster, "bench-scale")
        core = client.CoreV1Api(cluster.api_client)
        custom = client.CustomObjectsApi(cluster.api_client)
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: core.create_namespaced_pod(ns, standin_pod(f"burst-{i}", "memcached",
                                                                                 {"burst": str(i)})),
                          range(args.burst)))
            plain = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "app", "image": "app"}]}}
            list(pool.map(lambda i: core.create_namespaced_pod(ns, {**plain, "metadata": {
                "name": f"plain-{i}", "labels": {"group": str(i % idle_groups)}}}), range(plain_pods)))
        wait_for(lambda: sum(1 for x in core.list_namespaced_pod(ns).items if x.status.phase == "Running")
                 == args.pods, f"{args.pods} Running pods", 900, interval=2)
        wait_for(lambda: len(pod_ips(cluster, ns, "testbed.rolecall.dev/engine=memcached")) == args.burst,
                 "burst pod IPs", 300)
        wait_memcached(list(pod_ips(cluster, ns, "testbed.rolecall.dev/engine=memcached").values()))
        phases["pods_ready_s"] = round(time.monotonic() - t0, 1)
        print(f"{args.pods} pods Running after {phases['pods_ready_s']}s")

        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-scale-")))
        pid = op.procs[-1].pid
        sampler = Sampler(pid)
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: custom.create_namespaced_custom_object(
                "rolecall.dev", "v1alpha1", ns, "cacheservers", _cs(f"burst-{i}", {"burst": str(i)})),
                range(args.burst)))
            list(pool.map(lambda g: custom.create_namespaced_custom_object(
                "rolecall.dev", "v1alpha1", ns, "cacheservers", _cs(f"idle-{g}", {"group": str(g)})),
                range(idle_groups)))

        def all_reconciled() -> bool:
            items = custom.list_namespaced_custom_object("rolecall.dev", "v1alpha1", ns, "cacheservers")["items"]
            return sum(1 for o in items if (o.get("status") or {}).get("phase")) == args.resources

        wait_for(all_reconciled, f"{args.resources} CacheServers reconciled", 900, interval=2)
        phases["first_reconciles_s"] = round(time.monotonic() - t0, 1)
        rss_loaded = _proc(pid)[0]
        idle_cpu, idle_rss, burst_s, burst_cpu, burst_rss = [], [], [], [], []
        for run in range(args.runs):  # each run: an idle window, then a burst of simultaneous requests
            cpu_before = _proc(pid)[1]
            time.sleep(args.idle_seconds)
            rss, cpu_after = _proc(pid)
            idle_cpu.append(100 * (cpu_after - cpu_before) / args.idle_seconds)
            idle_rss.append(rss)
            token = f"burst-{run}-{int(time.time())}"
            burst_start = len(sampler.samples)
            t0 = time.monotonic()
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda i, token=token: custom.patch_namespaced_custom_object(
                    "rolecall.dev", "v1alpha1", ns, "cacheservers", f"burst-{i}",
                    {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}}), range(args.burst)))

            def burst_done(token: str = token) -> bool:
                items = custom.list_namespaced_custom_object("rolecall.dev", "v1alpha1", ns, "cacheservers")["items"]
                return sum(1 for o in items if (o.get("status") or {}).get("lastHandledClearRequest") == token) \
                    == args.burst

            wait_for(burst_done, "the burst handled", 600, interval=0.2)
            burst_s.append(time.monotonic() - t0)
            time.sleep(0.5)  # one more sample after the last status write
            burst = sampler.samples[burst_start:]
            burst_rss.append(max(x[1] for x in burst))
            burst_cpu.append(100 * (burst[-1][2] - burst[0][2]) / max(1e-9, burst[-1][0] - burst[0][0]))
            print(f"run {run + 1}: idle RSS {rss:.1f} MiB, idle CPU {idle_cpu[-1]:.2f}%, burst {burst_s[-1]:.2f}s",
                  file=sys.stderr)
        sampler.stop()
        for key, values in (("idle_rss_mib", idle_rss), ("idle_cpu_percent", idle_cpu),
                            ("burst_handled_s", burst_s), ("burst_cpu_percent", burst_cpu),
                            ("burst_peak_rss_mib", burst_rss)):
            st = summarise(values)
            phases[key] = {"median": round(st["median"], 2), "min": round(st["min"], 2), "max": round(st["max"], 2)}
        phases["loaded_rss_mib"] = round(rss_loaded, 1)
        phases["peak_rss_mib"] = round(max(x[1] for x in sampler.samples), 1)
        op.stop_all()
    rows = [{"measure": k, **(v if isinstance(v, dict) else {"median": v, "min": v, "max": v})}
            for k, v in phases.items()]
    print(f"\nscale: {args.resources} CacheServers, {args.pods} pods, burst of {args.burst}, {args.runs} runs "
          f"({machine()})")
    print(f"{'measure':<24}{'median':>10}{'min':>10}{'max':>10}")
    for r in rows:
        print(f"{r['measure']:<24}{r['median']:>10}{r['min']:>10}{r['max']:>10}")
    write("scale", {"args": vars(args), "phases": phases,
                    "samples": [{"t": round(t, 2), "rss_mib": round(r, 1), "cpu_s": round(c, 2)}
                                for t, r, c in sampler.samples]}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ts = [s[0] for s in sampler.samples]
    ax.plot(ts, [s[1] for s in sampler.samples], label="RSS MiB")
    ax2 = ax.twinx()
    cpu = [0.0] + [100 * (b[2] - a[2]) / max(1e-9, b[0] - a[0]) for a, b in zip(sampler.samples, sampler.samples[1:],
                                                                                strict=False)]
    ax2.plot(ts, cpu, color="#c44", alpha=0.5, label="CPU %")
    ax.set_xlabel("seconds since the operator started")
    ax.set_ylabel("RSS MiB")
    ax2.set_ylabel("CPU %")
    ax.set_title(f"operator with {args.resources} CacheServers / {args.pods} pods; burst of {args.burst} "
                 f"({machine()})", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "scale.png", dpi=110)
    print("wrote benchmarks/results/scale.{json,csv,png}")


if __name__ == "__main__":
    main()
