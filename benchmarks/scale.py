"""Scale: one operator process watching all namespaces, with 1,000 CacheServers over 5,000 target pods and
10,000 pods that no resource targets; RSS and CPU at idle and during a burst of 100 simultaneous clears; then
more CacheServers (2,000, 5,000, 10,000) so the cost per resource shows.

  python -m benchmarks.scale [--resources 1000] [--pods 5000] [--untargeted 10000] [--burst 100]
                             [--idle-seconds 60] [--runs 3] [--grow 2000 5000 10000] [--profile]

KWOK makes pods cheap: the 100 burst CacheServers each select one pod with a real memcached behind it; the
other resources each select a group of plain pods (no server behind them); the untargeted pods live in a
namespace of their own, which the operator's pod watch sees all the same (a cluster-wide pod watch grows
with every pod). Every CacheServer uses statsIntervalSeconds 86400, so after its first reconcile nothing is
due. The grown resources select the same groups again (the bed cannot run 10,000 memcached processes).
RSS is the operator's VmRSS, CPU its utime+stime from /proc. Measured: how long the pod index's first
listing takes (startup waits for it), RSS with the index alone, idle windows and bursts one after the other
(median, min, max), and per growth step the first-reconcile time and the settled RSS.
Writes results/scale.{json,csv,png}.

--profile adds, after the idle windows and bursts, a tracemalloc profile at the aim's size (the 1,000
CacheServers and every pod): the measured operator stops, a second one traced by tracemalloc
(ROLECALL_TRACEMALLOC: tracing starts once its modules are imported, rolecall/main.py) reconciles them, writes
a snapshot after a settled idle minute (SIGUSR1) and stops; the report says what its Python objects hold
beyond the imports, by package and by allocation site: results/scale_profile.{json,csv}; an untraced
operator then takes over for the growth steps (marked in the plot). What the imports hold is measured as RSS
(import_rss() below). Tracing from the first line (PYTHONTRACEMALLOC) did not finish at this size: on
2026-11-27 the traced operator had not finished its first pod listing after 600 s, still importing the
kubernetes client under tracing. memray was tried first: with every allocation recorded its capture of this
run grew to 4.7 GB and took longer to read than the run itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from benchmarks.common import (
    RESULTS,
    Reconciled,
    Sampler,
    bed,
    machine,
    metric,
    namespace,
    operator,
    proc_figures,
    pyplot,
    summarise,
    threads_of,
    write,
)
from cachekit import pod_ips, standin_pod, wait_memcached
from harness import Cluster, Operator, wait_for


def _cs(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer", "metadata": {"name": name},
            "spec": {"engine": "memcached", "selector": {"matchLabels": selector}, "statsIntervalSeconds": 86400,
                     "timeoutSeconds": 2}}


def _create_pods(cluster: Cluster, ns: str, untargeted_ns: str, args: argparse.Namespace, groups: int) -> None:
    core = client.CoreV1Api(cluster.api_client)
    plain = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "app", "image": "app"}]}}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: core.create_namespaced_pod(ns, standin_pod(f"burst-{i}", "memcached",
                                                                             {"burst": str(i)})), range(args.burst)))
        list(pool.map(lambda i: core.create_namespaced_pod(ns, {**plain, "metadata": {
            "name": f"plain-{i}", "labels": {"group": str(i % groups)}}}), range(args.pods - args.burst)))
        list(pool.map(lambda i: core.create_namespaced_pod(untargeted_ns, {**plain, "metadata": {
            "name": f"other-{i}", "labels": {"app": "not-a-cache"}}}), range(args.untargeted)))
    total = args.pods + args.untargeted

    def running() -> bool:
        count, token = 0, None
        while True:  # paged: 15,000 pods in one answer would cost the bench more than the check
            page = core.list_pod_for_all_namespaces(limit=2000, _continue=token)
            count += sum(1 for p in page.items if p.status.phase == "Running"
                         and p.metadata.namespace in (ns, untargeted_ns))
            token = page.metadata._continue
            if not token:
                return count == total

    wait_for(running, f"{total} Running pods", 1800, interval=3)
    wait_for(lambda: len(pod_ips(cluster, ns, "testbed.rolecall.dev/engine=memcached")) == args.burst,
             "burst pod IPs", 300)
    wait_memcached(list(pod_ips(cluster, ns, "testbed.rolecall.dev/engine=memcached").values()))


def _create_cacheservers(cluster: Cluster, ns: str, names: list[tuple[str, dict[str, str]]]) -> None:
    custom = client.CustomObjectsApi(cluster.api_client)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: custom.create_namespaced_custom_object(
            "rolecall.dev", "v1alpha1", ns, "cacheservers", _cs(*item)), names))


def _start(cluster: Cluster, ns: str, launcher: tuple[str, ...] = ("-m", "rolecall")) -> tuple[Operator, float]:
    """The operator for all namespaces; returns it and the seconds until its pod index had listed every pod."""
    t0 = time.monotonic()
    op = operator(cluster, [], Path(tempfile.mkdtemp(prefix="bench-scale-")), lease_namespace=ns, launcher=launcher)
    wait_for(lambda: metric(op, "rolecall_pod_index_listings_total") >= 1, "the pod index's first listing", 600,
             interval=0.05)
    return op, time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resources", type=int, default=1000)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--untargeted", type=int, default=10000)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--idle-seconds", type=int, default=60)
    p.add_argument("--runs", type=int, default=3, help="idle windows and bursts, one after the other")
    p.add_argument("--grow", type=int, nargs="*", default=[2000, 5000, 10000])
    p.add_argument("--profile", action="store_true", help="then a tracemalloc snapshot of an idle operator")
    args = p.parse_args()
    groups = args.resources - args.burst
    with bed("scale") as cluster:
        ns, untargeted_ns = namespace(cluster, "bench-scale"), namespace(cluster, "bench-scale-untargeted")
        t0 = time.monotonic()
        _create_pods(cluster, ns, untargeted_ns, args, groups)
        pods_ready = round(time.monotonic() - t0, 1)
        print(f"{args.pods + args.untargeted} pods Running after {pods_ready}s", file=sys.stderr)
        counter = Reconciled(cluster, ns)
        counter.start()
        _measure(cluster, ns, args, groups, counter, pods_ready)


def _measure(cluster: Cluster, ns: str, args: argparse.Namespace, groups: int, counter: Reconciled,
             pods_ready: float) -> None:
    phases: dict[str, Any] = {"pods_ready_s": pods_ready}
    op, listed = _start(cluster, ns)
    pid = op.procs[-1].pid
    sampler = Sampler(pid)
    marks: list[tuple[float, str]] = []
    phases["index_first_listing_s"] = round(listed, 2)
    time.sleep(5)
    phases["rss_index_only_mib"] = round(proc_figures(pid)[0], 1)
    custom = client.CustomObjectsApi(cluster.api_client)
    t0 = time.monotonic()
    marks.append((t0 - sampler.t0, f"{args.resources} CacheServers created"))
    _create_cacheservers(cluster, ns, [(f"burst-{i}", {"burst": str(i)}) for i in range(args.burst)]
                         + [(f"idle-{g}", {"group": str(g)}) for g in range(groups)])
    wait_for(lambda: counter.count() >= args.resources, f"{args.resources} CacheServers reconciled", 900, interval=0.5)
    phases["first_reconciles_s"] = round(time.monotonic() - t0, 1)
    idle_cpu, idle_rss, burst_s, burst_cpu, burst_rss = [], [], [], [], []
    for run in range(args.runs):  # each run: an idle window, then a burst of simultaneous requests
        cpu_before = proc_figures(pid)[1]
        time.sleep(args.idle_seconds)
        rss, cpu_after = proc_figures(pid)
        idle_cpu.append(100 * (cpu_after - cpu_before) / args.idle_seconds)
        idle_rss.append(rss)
        token = f"burst-{run}-{int(time.time())}"
        burst_start = len(sampler.samples)
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i, token=token: custom.patch_namespaced_custom_object(
                "rolecall.dev", "v1alpha1", ns, "cacheservers", f"burst-{i}",
                {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}}), range(args.burst)))
        wait_for(lambda token=token: counter.handled_with(token) == args.burst, "the burst handled", 600,
                 interval=0.02)
        burst_s.append(time.monotonic() - t0)
        time.sleep(0.5)  # one more sample after the last status write
        burst = sampler.samples[burst_start:]
        burst_rss.append(max(x[1] for x in burst))
        burst_cpu.append(100 * (burst[-1][2] - burst[0][2]) / max(1e-9, burst[-1][0] - burst[0][0]))
        print(f"run {run + 1}: idle RSS {rss:.1f} MiB, idle CPU {idle_cpu[-1]:.2f}%, burst {burst_s[-1]:.2f}s",
              file=sys.stderr)
    for key, values in (("idle_rss_mib", idle_rss), ("idle_cpu_percent", idle_cpu),
                        ("burst_handled_s", burst_s), ("burst_cpu_percent", burst_cpu),
                        ("burst_peak_rss_mib", burst_rss)):
        st = summarise(values)
        phases[key] = {"median": round(st["median"], 2), "min": round(st["min"], 2), "max": round(st["max"], 2)}
    phases["threads"] = threads_of(pid)
    if args.profile:
        op.stop_all()
        _profile(cluster, ns, args, args.resources)
        op, _ = _start(cluster, ns)  # untraced again, for the growth steps
        wait_for(lambda: metric(op, "rolecall_reconciles_total", {"kind": "CacheServer"}) >= args.resources,
                 f"{args.resources} CacheServers reconciled after the profile", 900, interval=0.5)
        pid = sampler.pid = op.procs[-1].pid
        marks.append((time.monotonic() - sampler.t0, "profiled; a new operator"))
        time.sleep(20)  # settled, as each growth step is: the slope below is this process's own
    growth = [{"resources": args.resources,
               "rss_mib": round(proc_figures(pid)[0] if args.profile else summarise(idle_rss)["median"], 1),
               "first_reconciles_s": phases["first_reconciles_s"]}]
    have = args.resources
    for target in args.grow:
        t0 = time.monotonic()
        marks.append((t0 - sampler.t0, f"{target} CacheServers"))
        _create_cacheservers(cluster, ns, [(f"more-{i}", {"group": str(i % groups)}) for i in range(have, target)])
        wait_for(lambda target=target: counter.count() >= target, f"{target} CacheServers reconciled", 1800,
                 interval=0.5)
        took = round(time.monotonic() - t0, 1)
        time.sleep(20)  # settled: nothing is due for any of them
        growth.append({"resources": target, "rss_mib": round(proc_figures(pid)[0], 1), "first_reconciles_s": took})
        print(f"{target} CacheServers: first reconciles of the new ones {took}s, RSS {growth[-1]['rss_mib']} MiB",
              file=sys.stderr)
        have = target
    if len(growth) > 1:
        first, last = growth[0], growth[-1]
        phases["kib_per_resource"] = round(1024 * (last["rss_mib"] - first["rss_mib"])
                                           / (last["resources"] - first["resources"]), 1)
    phases["peak_rss_mib"] = round(max(x[1] for x in sampler.samples), 1)
    sampler.stop()
    op.stop_all()
    _report(args, phases, growth, sampler, marks)


def _report(args: argparse.Namespace, phases: dict[str, Any], growth: list[dict[str, Any]], sampler: Sampler,
            marks: list[tuple[float, str]]) -> None:
    rows = [{"measure": k, **(v if isinstance(v, dict) else {"median": v, "min": v, "max": v})}
            for k, v in phases.items()]
    rows += [{"measure": f"rss_at_{g['resources']}_resources_mib", "median": g["rss_mib"], "min": g["rss_mib"],
              "max": g["rss_mib"]} for g in growth]
    rows += [{"measure": f"first_reconciles_up_to_{g['resources']}_s", "median": g["first_reconciles_s"],
              "min": g["first_reconciles_s"], "max": g["first_reconciles_s"]} for g in growth]
    print(f"\nscale: {args.resources} CacheServers, {args.pods} target pods + {args.untargeted} untargeted, burst of "
          f"{args.burst}, {args.runs} runs, growth to {args.grow} ({machine()})")
    print(f"{'measure':<34}{'median':>10}{'min':>10}{'max':>10}")
    for r in rows:
        print(f"{r['measure']:<34}{r['median']!s:>10}{r['min']!s:>10}{r['max']!s:>10}")
    write("scale", {"args": vars(args), "phases": phases, "growth": growth, "marks": marks,
                    "samples": [{"t": round(t, 2), "rss_mib": round(r, 1), "cpu_s": round(c, 2)}
                                for t, r, c in sampler.samples]}, rows)
    plt = pyplot()
    fig, (ax, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    ts = [s[0] for s in sampler.samples]
    ax.plot(ts, [s[1] for s in sampler.samples], label="RSS MiB")
    ax2 = ax.twinx()
    cpu = [0.0] + [max(0.0, 100 * (b[2] - a[2]) / max(1e-9, b[0] - a[0]))  # 0 where a new process starts
                   for a, b in zip(sampler.samples, sampler.samples[1:], strict=False)]
    ax2.plot(ts, cpu, color="#c44", alpha=0.4, label="CPU %")
    for t, label in marks:
        ax.axvline(t, color="#888", linestyle=":")
        ax.annotate(label, (t, ax.get_ylim()[1]), fontsize=6, rotation=90, va="top")
    ax.set_xlabel("seconds since the operator started")
    ax.set_ylabel("RSS MiB")
    ax2.set_ylabel("CPU %")
    ax.set_title(f"{args.pods + args.untargeted} pods watched; burst of {args.burst}; growth", fontsize=9)
    right.plot([g["resources"] for g in growth], [g["rss_mib"] for g in growth], marker="o")
    right.set_xlabel("CacheServers")
    right.set_ylabel("settled RSS MiB")
    right.set_title("RSS against resources", fontsize=9)
    fig.suptitle(machine(), fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)
    print("wrote benchmarks/results/scale.{json,csv,png}")


def _profile(cluster: Cluster, ns: str, args: argparse.Namespace, resources: int) -> None:
    """On the measured run's bed (all its pods and CacheServers), a fresh operator traced by tracemalloc
    (ROLECALL_TRACEMALLOC, 10 frames, from the end of its imports); after a settled idle minute SIGUSR1 makes
    it write a snapshot of what it holds (rolecall/main.py), read here by allocation site and by package."""
    imports = import_rss()
    where = Path(tempfile.mkdtemp(prefix="bench-scale-tracemalloc-"))
    os.environ.update(ROLECALL_TRACEMALLOC="10", ROLECALL_SNAPSHOT_DIR=str(where))  # the operator child inherits
    try:
        op, _ = _start(cluster, ns)
    finally:
        del os.environ["ROLECALL_TRACEMALLOC"], os.environ["ROLECALL_SNAPSHOT_DIR"]
    pid = op.procs[-1].pid
    wait_for(lambda: metric(op, "rolecall_reconciles_total", {"kind": "CacheServer"}) >= resources,
             f"{resources} CacheServers reconciled under tracemalloc", 3600, interval=1)
    time.sleep(60)
    rss = proc_figures(pid)[0]
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: "tracemalloc snapshot written" in op.logs(), "the snapshot", 600, interval=1)
    op.stop_all()
    snapshot = tracemalloc.Snapshot.load(str(where / f"rolecall-{pid}.tracemalloc"))
    by_package, by_site, at_import = Counter[str](), Counter[str](), 0
    for stat in snapshot.statistics("traceback"):
        frames = [(f.filename, f.lineno) for f in stat.traceback]  # oldest first
        if any("importlib._bootstrap" in name for name, _ in frames):
            at_import += stat.size
            by_package["(imports: module code and data)"] += stat.size
            continue
        by_package[_package(frames)] += stat.size
        by_site[_site(frames)] += stat.size
    total = sum(by_package.values())
    rows = [{"what": k, "mib": round(v / 2**20, 2), "percent": round(100 * v / total, 1)}
            for k, v in by_package.most_common(20)]
    sites = [{"what": k, "mib": round(v / 2**20, 2), "percent": round(100 * v / total, 1)}
             for k, v in by_site.most_common(25)]
    print(f"\nheld by the idle operator's Python objects (tracemalloc, {resources} CacheServers, "
          f"{args.pods + args.untargeted} pods): {total / 2**20:.1f} MiB, of which imports {at_import / 2**20:.1f}; "
          f"its RSS (tracing included) {rss:.1f} MiB")
    print("RSS of a fresh interpreter after importing, one step after the other: "
          + ", ".join(f"{k} {v} MiB" for k, v in imports.items()))
    for r in [*rows, {"what": "--- by allocation site", "mib": "", "percent": ""}, *sites]:
        print(f"{r['what'][:100]:<100}{r['mib']!s:>9}{r['percent']!s:>7}")
    write("scale_profile", {"args": vars(args), "resources": resources, "traced_mib": round(total / 2**20, 1),
                            "imports_mib": round(at_import / 2**20, 1), "rss_traced_mib": round(rss, 1),
                            "import_rss_mib": imports,
                            "by_package": rows, "by_site": sites}, [*rows, *sites])


IMPORT_STEPS = ["pass", "import pydantic", "import kubernetes.client", "import kopf", "import rolecall.main"]


def import_rss() -> dict[str, float]:
    """VmRSS of a fresh interpreter after each step of IMPORT_STEPS, the steps taken one after the other in
    one process (so each figure includes the ones before it)."""
    code = ("import re\n"
            "def rss():\n"
            "    return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n")
    for step in IMPORT_STEPS:
        code += f"{step}\nprint({step!r}, round(rss(), 1))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {line.rsplit(" ", 1)[0].strip("'"): float(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


def _package(frames: list[tuple[str, int]]) -> str:
    """The most recent frame in rolecall or a third-party package; the standard library is looked through."""
    for path, _ in reversed(frames):
        if "/rolecall/" in path:
            return "rolecall." + path.split("/rolecall/")[1].removesuffix(".py").replace("/", ".")
        if "site-packages/" in path:
            return path.split("site-packages/")[1].split("/")[0]
    return "python (stdlib)"


def _site(frames: list[tuple[str, int]]) -> str:
    path, line = frames[-1]
    caller = next(((p, n) for p, n in reversed(frames) if "/rolecall/" in p), None)
    where = f"{path.rsplit('/', 1)[-1]}:{line}"
    return where + (f" <- {caller[0].split('/rolecall/')[1]}:{caller[1]}" if caller else "")


if __name__ == "__main__":
    main()
