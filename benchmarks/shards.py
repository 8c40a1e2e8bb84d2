"""Namespace shards: 2,000 CacheServers in two namespaces, handled by one operator process for both, then by
two shard processes (one namespace and one Lease each, as the chart's `shards` value deploys them).

  python -m benchmarks.shards [--resources 2000] [--pods-per-namespace 20] [--idle-seconds 30]

Each namespace has real memcached pods; each CacheServer selects one of them (so many resources share a pod,
as the bed cannot run 2,000 memcached processes). Per configuration: first reconcile of every resource,
settled RSS and idle CPU of each process, then every resource is asked to clear once (one token each) and
the time until all are handled. Exactly once is checked with the engines' own counters: per namespace, the
pods' cmd_flush go up by exactly the number of resources there, and each shard's request counter equals
its own namespace's resources. Writes results/shards.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from benchmarks.common import (
    Reconciled,
    Sampler,
    bed,
    machine,
    metric,
    namespace,
    operator,
    proc_figures,
    pyplot,
    write,
)
from cachekit import cmd_flush, pod_ips, standin_pod, wait_memcached
from harness import Cluster, Operator, running_pods, wait_for


def _cs(name: str, group: int) -> dict[str, Any]:
    return {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer", "metadata": {"name": name},
            "spec": {"engine": "memcached", "selector": {"matchLabels": {"group": str(group)}},
                     "statsIntervalSeconds": 86400}}


def _settle(ops: dict[str, Operator], idle: int) -> dict[str, dict[str, float]]:
    pids = {name: op.procs[-1].pid for name, op in ops.items()}
    before = {name: proc_figures(pid)[1] for name, pid in pids.items()}
    time.sleep(idle)
    return {name: {"rss_mib": round(proc_figures(pid)[0], 1),
                   "idle_cpu_percent": round(100 * (proc_figures(pid)[1] - before[name]) / idle, 2)}
            for name, pid in pids.items()}


def _configuration(cluster: Cluster, label: str, spaces: list[str], shards: bool, per_ns: int,
                   counters: dict[str, Reconciled], ips: dict[str, list[str]], idle: int) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-shards-{label}-"))
    if shards:
        ops = {ns: operator(cluster, [ns], log_dir / ns, "--lease-name", f"rolecall-operator-{i}",
                            lease_namespace=spaces[0]) for i, ns in enumerate(spaces)}
    else:
        ops = {"both": operator(cluster, spaces, log_dir / "both", "--lease-name", "rolecall-operator-single",
                                lease_namespace=spaces[0])}
    samplers = {name: Sampler(op.procs[-1].pid) for name, op in ops.items()}
    try:  # a failed check must not leave operators running into the next benchmark
        t0 = time.monotonic()
        for name, op in ops.items():  # every resource of each process reconciled once (its reconcile counter)
            mine = per_ns * (1 if shards else len(spaces))
            wait_for(lambda op=op, mine=mine: metric(op, "rolecall_reconciles_total", {"kind": "CacheServer"}) >= mine,
                     f"{mine} reconciles by {name}", 1800, interval=0.5)
        first = round(time.monotonic() - t0, 1)
        settled = _settle(ops, idle)
        flushes = {ns: sum(cmd_flush(ip) for ip in ips[ns]) for ns in spaces}
        token = f"{label}-{int(time.time())}"
        custom = client.CustomObjectsApi(cluster.api_client)
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda item: custom.patch_namespaced_custom_object(
                "rolecall.dev", "v1alpha1", item[0], "cacheservers", item[1],
                {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}}),
                [(ns, f"cs-{i}") for ns in spaces for i in range(per_ns)]))
        for ns in spaces:
            wait_for(lambda ns=ns: counters[ns].handled_with(token) == per_ns, f"every clear in {ns} handled", 1800,
                     interval=0.1)
        cleared = round(time.monotonic() - t0, 1)
        once = {ns: sum(cmd_flush(ip) for ip in ips[ns]) - flushes[ns] for ns in spaces}
        assert once == {ns: per_ns for ns in spaces}, f"{label}: flushes per namespace {once}, expected {per_ns} each"
        counted = {name: op.metric("rolecall_requests_total", {"action": "clear"}) for name, op in ops.items()}
        if shards:
            assert counted == {ns: per_ns for ns in spaces}, f"each shard must handle its own namespace only: {counted}"
        peak = {name: round(max(s[1] for s in samplers[name].samples), 1) for name in ops}
        cpu = {name: round(proc_figures(op.procs[-1].pid)[1], 1) for name, op in ops.items()}
    finally:
        for s in samplers.values():
            s.stop()
        for op in ops.values():
            op.stop_all()
    print(f"{label}: first reconciles {first}s, clear of all {per_ns * len(spaces)} {cleared}s, {settled}",
          file=sys.stderr)
    return {"configuration": label, "processes": {name: {**settled[name], "peak_rss_mib": peak[name],
                                                         "cpu_seconds_total": cpu[name],
                                                         "clears_counted": counted[name]} for name in ops},
            "first_reconciles_s": first, "clear_all_s": cleared, "flushes_per_namespace": once}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resources", type=int, default=2000)
    p.add_argument("--pods-per-namespace", type=int, default=20)
    p.add_argument("--idle-seconds", type=int, default=30)
    args = p.parse_args()
    per_ns = args.resources // 2
    with bed("shards") as cluster:
        spaces = [namespace(cluster, "bench-shard-a"), namespace(cluster, "bench-shard-b")]
        core = client.CoreV1Api(cluster.api_client)
        custom = client.CustomObjectsApi(cluster.api_client)
        ips: dict[str, list[str]] = {}
        counters: dict[str, Reconciled] = {}
        for ns in spaces:
            for g in range(args.pods_per_namespace):
                core.create_namespaced_pod(ns, standin_pod(f"mc-{g}", "memcached", {"group": str(g)}))
            running_pods(cluster, ns, "testbed.rolecall.dev/engine=memcached", args.pods_per_namespace, timeout=300)
            ips[ns] = list(pod_ips(cluster, ns, "testbed.rolecall.dev/engine=memcached").values())
            wait_memcached(ips[ns])
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i, ns=ns: custom.create_namespaced_custom_object(
                    "rolecall.dev", "v1alpha1", ns, "cacheservers", _cs(f"cs-{i}", i % args.pods_per_namespace)),
                    range(per_ns)))
            counters[ns] = Reconciled(cluster, ns)
            counters[ns].start()
        results = [_configuration(cluster, "one-process", spaces, False, per_ns, counters, ips, args.idle_seconds),
                   _configuration(cluster, "two-shards", spaces, True, per_ns, counters, ips, args.idle_seconds)]
    rows = [{"configuration": r["configuration"], "process": name, **figures,
             "first_reconciles_s": r["first_reconciles_s"], "clear_all_s": r["clear_all_s"]}
            for r in results for name, figures in r["processes"].items()]
    print(f"\nshards: {args.resources} CacheServers in 2 namespaces ({machine()})")
    print(f"{'configuration':<14}{'process':<28}{'RSS MiB':>9}{'idle CPU %':>11}{'peak MiB':>10}{'CPU s':>8}"
          f"{'clears':>8}{'1st rec s':>10}{'clear all s':>12}")
    for r in rows:
        print(f"{r['configuration']:<14}{r['process'][:27]:<28}{r['rss_mib']:>9}{r['idle_cpu_percent']:>11}"
              f"{r['peak_rss_mib']:>10}{r['cpu_seconds_total']:>8}{r['clears_counted']:>8.0f}"
              f"{r['first_reconciles_s']:>10}{r['clear_all_s']:>12}")
    write("shards", {"args": vars(args), "results": results}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['configuration']}\n{r['process'][:20]}" for r in rows]
    ax.bar(labels, [r["rss_mib"] for r in rows], color=["#4a7ab5" if r["configuration"] == "one-process" else "#7ab54a"
                                                          for r in rows])
    ax.set_ylabel("settled RSS MiB")
    ax.set_title(f"{args.resources} CacheServers: one process vs two shards ({machine()})", fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "shards.png", dpi=110)
    print("wrote benchmarks/results/shards.{json,csv,png}")


if __name__ == "__main__":
    main()
