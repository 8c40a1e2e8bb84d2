"""Fan-out: clear the cache on N pods with rolecall, against what ops people do today, in the same run.

  python -m benchmarks.fanout [--sizes 10 50 200 1000] [--runs 3]      (part of make bench)

Columns, each timed over --runs repetitions per size (every pod's memcached cmd_flush is checked to go
up by exactly one per method and run, so no method is timed doing less than the others):
  rolecall      annotate clear-requested-at -> the status event saying the request was handled (every
                pod flushed and status written), spec.concurrency 10 (the default); one untimed
                warm-up request per CacheServer first
  rolecall-50   the same with spec.concurrency 50
  kubectl-loop  a sequential loop of `kubectl exec <pod> -- bash -c '<flush aimed at that pod's IP>'`;
                on this bed KWOK runs the exec'd command on this machine, not in a container
  xargs-P8      the same commands under `xargs -P 8`
  floor         flush_all sent directly to every pod from one process (pymemcache, 32 threads): the engine
                call alone
  floor-async   the same from one asyncio loop with aiomcache, 50 at a time (faster here, see
                memcached_clients.py; rolecall does not use it: it hangs on a server that closes mid-reply)
Prints medians (min/max), the ratios to the sequential loop and to the faster floor, and writes
results/fanout.{json,csv,png} (seconds against pods for every method, log-log).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import bed, machine, namespace, operator, pyplot, summarise, wait_status, write
from cachekit import cmd_flush, create_cs, create_deployment, memcached, patch_cs, pod_ips, wait_memcached
from harness import deployment, running_pods
from testbed.install import kubectl_path

METHODS = ["rolecall", "rolecall-50", "kubectl-loop", "xargs-P8", "floor", "floor-async"]
FLUSH = "exec 3<>/dev/tcp/{ip}/11211; printf 'flush_all\\r\\n' >&3; read -r answer <&3; echo \"$answer\""


def _rolecall(cluster, ns: str, name: str, token: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    patch_cs(cluster, ns, name, {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": token}}})
    t1 = wait_status(cluster, ns, "cacheservers", name, lambda s: s.get("lastHandledClearRequest") == token)
    return t1 - t0


def _kubectl_loop(kubeconfig: Path, ns: str, ips: dict[str, str]) -> float:
    t0 = time.monotonic()
    for pod, ip in ips.items():
        out = subprocess.run([kubectl_path(), "--kubeconfig", str(kubeconfig), "exec", "-n", ns, pod, "--",
                              "bash", "-c", FLUSH.format(ip=ip)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "OK", out
    return time.monotonic() - t0


def _xargs(kubeconfig: Path, ns: str, ips: dict[str, str], parallel: int = 8) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "flush_one.sh"
        # The same command as the sequential loop, built per pod from its name ($1) and IP ($2).
        script.write_text("#!/bin/bash\n"
                          f"exec {kubectl_path()} --kubeconfig {kubeconfig} exec -n {ns} \"$1\" -- bash -c "
                          "\"exec 3<>/dev/tcp/$2/11211; printf 'flush_all\\r\\n' >&3; read -r a <&3; echo \\$a\"\n")
        script.chmod(0o755)
        listing = "".join(f"{pod} {ip}\n" for pod, ip in ips.items())
        t0 = time.monotonic()
        out = subprocess.run(["xargs", "-P", str(parallel), "-n", "2", str(script)], input=listing, text=True,
                             capture_output=True, check=True)
        elapsed = time.monotonic() - t0
    assert out.stdout.split().count("OK") == len(ips), out.stdout[-500:] + out.stderr[-500:]
    return elapsed


def _floor(ips: dict[str, str]) -> float:
    def flush(ip: str) -> bool:
        c = memcached(ip)
        try:
            return bool(c.flush_all(noreply=False))
        finally:
            c.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(flush, ips.values()))
    return time.monotonic() - t0


def _floor_async(ips: dict[str, str], limit: int = 50) -> float:
    import aiomcache

    async def all_of() -> float:
        gate = asyncio.Semaphore(limit)

        async def one(ip: str) -> None:
            async with gate:
                c = aiomcache.Client(ip, 11211, pool_size=1)
                try:
                    await c.flush_all()
                finally:
                    await c.close()

        t0 = time.monotonic()
        await asyncio.gather(*(one(ip) for ip in ips.values()))
        return time.monotonic() - t0

    return asyncio.run(all_of())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200, 1000])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    samples: dict[int, dict[str, list[float]]] = {}
    with bed("fanout") as cluster:
        ns = namespace(cluster, "bench-fanout")
        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-fanout-")))
        for n in args.sizes:
            name = f"mc{n}"
            create_deployment(cluster, ns, deployment(name, "memcached", n))
            running_pods(cluster, ns, f"app={name}", n, timeout=600)
            ips = pod_ips(cluster, ns, f"app={name}")
            wait_memcached(list(ips.values()))
            for cs, concurrency in ((name, 10), (f"{name}-c50", 50)):
                create_cs(cluster, ns, {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
                                        "metadata": {"name": cs},
                                        "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": name}},
                                                 "concurrency": concurrency, "statsIntervalSeconds": 86400}})
            for cs in (name, f"{name}-c50"):  # warm-up, not timed: the first reconcile after creation
                _rolecall(cluster, ns, cs, "warm-up")
            samples[n] = {m: [] for m in METHODS}
            for run in range(args.runs):
                for method in METHODS:
                    before = {ip: cmd_flush(ip) for ip in ips.values()}
                    if method == "rolecall":
                        elapsed = _rolecall(cluster, ns, name, f"r{run}")
                    elif method == "rolecall-50":
                        elapsed = _rolecall(cluster, ns, f"{name}-c50", f"r{run}")
                    elif method == "kubectl-loop":
                        elapsed = _kubectl_loop(cluster.kubeconfig, ns, ips)
                    elif method == "xargs-P8":
                        elapsed = _xargs(cluster.kubeconfig, ns, ips)
                    elif method == "floor":
                        elapsed = _floor(ips)
                    else:
                        elapsed = _floor_async(ips)
                    after = {ip: cmd_flush(ip) for ip in ips.values()}
                    assert all(after[ip] == before[ip] + 1 for ip in ips.values()), f"{method}: not one flush per pod"
                    samples[n][method].append(elapsed)
                    print(f"{n:>4} pods  run {run + 1}  {method:<13} {elapsed:8.3f}s", file=sys.stderr)
        op.stop_all()
    rows = []
    for n, by_method in samples.items():
        loop = summarise(by_method["kubectl-loop"])["median"]
        floor = min(summarise(by_method[f])["median"] for f in ("floor", "floor-async"))
        for method, values in by_method.items():
            s = summarise(values)
            rows.append({"pods": n, "method": method, "median_s": round(s["median"], 4), "min_s": round(s["min"], 4),
                         "max_s": round(s["max"], 4), "runs": s["n"],
                         "speedup_vs_kubectl_loop": round(loop / s["median"], 1),
                         "times_the_faster_floor": round(s["median"] / floor, 2)})
    print(f"\nfan-out: clear the cache on N pods ({machine()}), {args.runs} runs each")
    print(f"{'pods':>5} {'method':<13}{'median s':>10}{'min s':>9}{'max s':>9}{'x loop':>8}{'/ floor':>9}")
    for r in rows:
        print(f"{r['pods']:>5} {r['method']:<13}{r['median_s']:>10.3f}{r['min_s']:>9.3f}{r['max_s']:>9.3f}"
              f"{r['speedup_vs_kubectl_loop']:>8.1f}{r['times_the_faster_floor']:>9.2f}")
    write("fanout", {"samples": samples, "summary": rows}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sizes = list(samples)
    for method in METHODS:
        meds = [next(r["median_s"] for r in rows if r["pods"] == n and r["method"] == method) for n in sizes]
        ax.plot(sizes, meds, marker="o", label=method, linestyle="--" if method.startswith("floor") else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pods")
    ax.set_ylabel("seconds to clear every pod (median)")
    ax.set_title(f"rolecall vs kubectl exec loops vs one-process floors ({machine()})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "fanout.png", dpi=110)
    print("wrote benchmarks/results/fanout.{json,csv,png}")


if __name__ == "__main__":
    main()
