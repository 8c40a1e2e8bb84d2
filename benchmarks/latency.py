"""Latency of one request on one pod: annotate -> pod flushed -> status written, over many requests.

  python -m benchmarks.latency [--requests 60]                      (part of make bench)

The total is timed by the client (patch sent -> the watch event carrying the handled token). The
operator's own histograms split its part: event-to-reconcile (queueing in the work queue), ledger write,
engine calls (re-read the pod by UID + flush_all), final status write; the remainder is watch delivery to
the operator plus delivery of the final status back to the client. Step figures are means (histogram
sum/count over the run); the total has p50/p95. Writes results/latency.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import bed, machine, namespace, operator, pyplot, wait_status, write
from cachekit import create_cs, create_pods, patch_cs, pod_ips, standin_pod, wait_memcached
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=60)
    args = p.parse_args()
    with bed("latency") as cluster:
        ns = namespace(cluster, "bench-latency")
        create_pods(cluster, ns, [standin_pod("mc-0", "memcached", {"app": "mc"})])
        running_pods(cluster, ns, "app=mc", 1)
        wait_memcached(list(pod_ips(cluster, ns, "app=mc").values()))
        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-latency-")))
        create_cs(cluster, ns, {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
                                "metadata": {"name": "mc"},
                                "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}},
                                         "statsIntervalSeconds": 86400}})
        for warm in range(3):  # untimed: the first requests pay for connection pools and imports
            _request(cluster, ns, f"w{warm}")

        def sums() -> dict[str, tuple[float, float]]:
            return {step: (op.metric(f"{name}_sum", labels), op.metric(f"{name}_count", labels))
                    for name, labels, step in STEPS}

        before = sums()
        totals = []
        for i in range(args.requests):
            token = f"r{i}"
            totals.append(_request(cluster, ns, token))
            time.sleep(0.05)  # let the request's Events go out before the next one starts
        after = sums()
        op.stop_all()
    steps = {}
    for step in (s for _, _, s in STEPS):
        d_sum, d_count = after[step][0] - before[step][0], after[step][1] - before[step][1]
        steps[step] = d_sum / d_count if d_count else 0.0
    total_mean = statistics.mean(totals)
    steps["watch-delivery+observation"] = max(0.0, total_mean - sum(steps.values()))
    rows = [{"measure": "total p50", "ms": round(1000 * statistics.median(totals), 1)},
            {"measure": "total p95", "ms": round(1000 * _pct(totals, 0.95), 1)},
            {"measure": "total min", "ms": round(1000 * min(totals), 1)},
            {"measure": "total max", "ms": round(1000 * max(totals), 1)},
            {"measure": "total mean", "ms": round(1000 * total_mean, 1)},
            *({"measure": f"mean {k}", "ms": round(1000 * v, 1)} for k, v in steps.items())]
    print(f"\nlatency of one clear request on one pod, {args.requests} requests ({machine()})")
    for r in rows:
        print(f"{r['measure']:<36}{r['ms']:>10.1f} ms")
    write("latency", {"requests": args.requests, "totals_s": totals, "steps_mean_s": steps}, rows)
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.hist([1000 * t for t in totals], bins=20, color="#4a7ab5")
    a1.axvline(1000 * statistics.median(totals), color="k", linestyle="--", label="p50")
    a1.axvline(1000 * _pct(totals, 0.95), color="r", linestyle=":", label="p95")
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
