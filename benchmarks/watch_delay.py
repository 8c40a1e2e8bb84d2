"""The pod index's freshness: how long after a change at the apiserver the operator's index shows it, and
how long the first listing takes (what a starting operator waits before it resolves any target).

  python -m benchmarks.watch_delay [--pods 100 1000 5000] [--changes 50]      (part of make bench)

It runs the operator's own index code (rolecall.targets.podwatch.PodWatch, rolecall.targets.index) in this
process against a fresh bed, with the bed's admin credentials:
  first-listing  start a watch over a namespace holding N plain pods -> the index serves it (paged LIST)
  label-change   PATCH a pod's label -> the index shows the new value (the patch's round trip included)
  delete         DELETE a pod (grace 0) -> the index no longer has it; this is the bound in the README's
                 rule "a pod is acted on at the IP of the latest watch event"
Prints medians (p95, max) and writes results/watch_delay.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client  # type: ignore[import-untyped]

from benchmarks.common import bed, machine, namespace, pyplot, summarise, write
from harness import Cluster, wait_for


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _plain_pods(cluster: Cluster, ns: str, count: int) -> None:
    """Pods without a server behind them (KWOK runs nothing): what an untargeted cluster is made of."""
    core = client.CoreV1Api(cluster.api_client)

    def one(i: int) -> None:
        core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": f"p-{i:05d}", "labels": {"app": "plain", "n": str(i)}},
                                        "spec": {"containers": [{"name": "c", "image": "plain:none"}]}})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    wait_for(lambda: sum(p.status.phase == "Running" for p in core.list_namespaced_pod(ns).items) == count,
             f"{count} plain pods Running", 900, interval=1)


def _until(check: Any, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the index never showed the change")
        time.sleep(0.0002)
    return time.monotonic()


def _changes(core: Any, index: Any, ns: str, n: int, count: int, delays: dict[str, list[float]]) -> None:
    """Times label changes and deletions from the API call until the index shows them."""
    from rolecall.api.types import LabelSelector

    for i in range(count):
        name, value = f"p-{i % n:05d}", f"v{i}"
        uid = index.select(ns, LabelSelector(match_labels={"n": str(i % n)}))[0].uid
        t0 = time.monotonic()
        core.patch_namespaced_pod(name, ns, {"metadata": {"labels": {"mark": value}}})
        seen = _until(lambda uid=uid, value=value: (e := index.get(ns, uid)) is not None
                      and e.labels.get("mark") == value)
        delays["label-change"].append(seen - t0)
    for i in range(min(count, n)):
        uid = index.select(ns, LabelSelector(match_labels={"n": str(i)}))[0].uid
        t0 = time.monotonic()
        core.delete_namespaced_pod(f"p-{i:05d}", ns, grace_period_seconds=0)
        delays["delete"].append(_until(lambda uid=uid: index.get(ns, uid) is None) - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--changes", type=int, default=50)
    args = p.parse_args()
    listing: dict[int, float] = {}
    delays: dict[str, list[float]] = {"label-change": [], "delete": []}
    with bed("watch-delay") as cluster:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        from rolecall import kube
        from rolecall.targets.index import PodIndex
        from rolecall.targets.podwatch import PodWatch

        kube.load()
        core = client.CoreV1Api(cluster.api_client)
        for n in args.pods:
            ns = namespace(cluster, f"bench-watch-{n}")
            _plain_pods(cluster, ns, n)
            index = PodIndex()
            watch = PodWatch(ns, index=index)
            t0 = time.monotonic()
            watch.start()
            asyncio.run(index.synced(ns, wait=600))
            listing[n] = time.monotonic() - t0
            print(f"{n:>6} pods  first listing {listing[n]:.3f}s", file=sys.stderr)
            if n == args.pods[0]:
                _changes(core, index, ns, n, args.changes, delays)
            watch.stop()
    rows = [{"measure": f"first-listing ({n} pods)", "median_ms": round(s * 1000, 1), "p95_ms": "", "max_ms": "",
             "n": 1} for n, s in listing.items()]
    for what, values in delays.items():
        s = summarise(values)
        rows.append({"measure": what, "median_ms": round(s["median"] * 1000, 2),
                     "p95_ms": round(_pct(values, 0.95) * 1000, 2), "max_ms": round(s["max"] * 1000, 2), "n": s["n"]})
    print(f"\npod index freshness ({machine()})")
    print(f"{'measure':<28}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}{'n':>5}")
    for r in rows:
        print(f"{r['measure']:<28}{r['median_ms']:>11}{r['p95_ms']!s:>9}{r['max_ms']!s:>9}{r['n']:>5}")
    write("watch_delay", {"first_listing_s": listing, "delays_s": delays, "summary": rows}, rows)
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(list(listing), list(listing.values()), marker="o")
    left.set_xlabel("pods in the watched namespace")
    left.set_ylabel("first listing, s")
    left.set_title("index ready after")
    right.boxplot([[v * 1000 for v in delays[k]] for k in delays], tick_labels=list(delays))
    right.set_ylabel("change at the apiserver -> index, ms")
    right.set_title("watch delay")
    fig.suptitle(machine(), fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(__file__), "results", "watch_delay.png"), dpi=110)
    print("wrote benchmarks/results/watch_delay.{json,csv,png}")


if __name__ == "__main__":
    main()
