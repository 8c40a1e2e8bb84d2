"""API cost: the Kubernetes API requests the operator makes per handled request and per idle minute,
counted from the apiserver's audit log filtered on the operator's own ServiceAccount (the apiserver's
request metrics cannot tell clients apart).

  python -m benchmarks.api_cost [--pods 40 400] [--requests 10] [--idle-seconds 600]   (part of make bench)

Prints requests by verb and resource, per handled clear request for each number of target pods (one
CacheServer per size: a request's reads must not grow with its pods) and per idle minute, the idle window's
counts of requests about rolecall resources, about pods, watch (re)connects and Lease renewals, and writes
results/api_cost.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import bed, machine, namespace, operator, pyplot, wait_status, write
from cachekit import create_cs, create_deployment, patch_cs, pod_ips, wait_memcached
from harness import deployment, running_pods
from rolecall.runs.pod_executor import PROGRESS_BATCH

OPERATOR_USER = "system:serviceaccount:rolecall-system:rolecall-operator"


def _audit(path: Path, offset: int) -> tuple[Counter[str], int]:
    """Operator requests (by 'verb resource[/sub]') in the audit log after byte `offset`; the new offset."""
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    seen = set()
    for line in data.splitlines():
        ev = json.loads(line)
        if ev.get("user", {}).get("username") != OPERATOR_USER or ev["auditID"] in seen:
            continue
        seen.add(ev["auditID"])  # a watch logs ResponseStarted and ResponseComplete: count it once
        ref = ev.get("objectRef") or {}
        resource = ref.get("resource", ev.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{ev['verb']} {resource}"] += 1
    return counts, offset + len(data)


CATEGORIES = {  # the idle counts benchmarks/README.md reports, each on its own
    "rolecall resources": lambda verb, res: res.split("/")[0] in ROLE_PLURALS,
    "pods": lambda verb, res: res.split("/")[0] == "pods",
    "watch (re)connects": lambda verb, res: verb == "watch",
    "Lease renewals": lambda verb, res: res == "leases" and verb in ("update", "patch"),
}
ROLE_PLURALS = ("cacheservers", "webservers", "databaseservers", "databasemaintenances")


def _per_request(busy: Counter[str], idle_rate: dict[str, float], busy_seconds: float,
                 requests: int) -> dict[str, float]:
    """What the requests themselves cost: the busy window minus what idling would have cost in that time."""
    return {k: (v - idle_rate.get(k, 0) * busy_seconds / 60) / requests for k, v in busy.items()}


def _requests(cluster: Any, ns: str, name: str, count: int) -> float:
    t0 = time.monotonic()
    for i in range(count):
        patch_cs(cluster, ns, name, {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": f"r{i}"}}})
        wait_status(cluster, ns, "cacheservers", name, lambda s, i=i: s.get("lastHandledClearRequest") == f"r{i}")
    time.sleep(3)  # the Events that follow the last status write
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, nargs="+", default=[40, 400])
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--idle-seconds", type=int, default=600)
    args = p.parse_args()
    per_size: dict[int, dict[str, float]] = {}
    with bed("apicost", audit=True) as cluster:
        log = cluster.bed.dir / "audit.log"
        ns = namespace(cluster, "bench-api")
        for n in args.pods:
            create_deployment(cluster, ns, deployment(f"mc{n}", "memcached", n))
            running_pods(cluster, ns, f"app=mc{n}", n, timeout=900)
            wait_memcached(list(pod_ips(cluster, ns, f"app=mc{n}").values()))
        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-api-")))
        for n in args.pods:
            create_cs(cluster, ns, {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
                                    "metadata": {"name": f"mc{n}"},
                                    "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": f"mc{n}"}},
                                             "statsIntervalSeconds": 86400}})
            wait_status(cluster, ns, "cacheservers", f"mc{n}", lambda s: s.get("phase") == "Running")
            patch_cs(cluster, ns, f"mc{n}", {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": "warm"}}})
            wait_status(cluster, ns, "cacheservers", f"mc{n}", lambda s: s.get("lastHandledClearRequest") == "warm")
        time.sleep(3)  # let the warm-up's Events land before counting starts
        _, offset = _audit(log, 0)

        time.sleep(args.idle_seconds)  # idle: nothing requested, nothing changes
        idle, offset = _audit(log, offset)
        idle_rate = {k: v * 60 / args.idle_seconds for k, v in idle.items()}

        busy: dict[int, Counter[str]] = {}
        for n in args.pods:
            busy_seconds = _requests(cluster, ns, f"mc{n}", args.requests)
            busy[n], offset = _audit(log, offset)
            per_size[n] = _per_request(busy[n], idle_rate, busy_seconds, args.requests)
        op.stop_all()
    keys = sorted(set(idle) | {k for b in busy.values() for k in b})
    rows = [{"request": k, **{f"per_request_{n}_pods": round(per_size[n].get(k, 0.0), 2) for n in args.pods},
             "per_idle_minute": round(idle_rate.get(k, 0.0), 2)} for k in keys]
    print(f"\nAPI cost of the operator ({machine()}): {args.pods} target pods, {args.requests} requests each, "
          f"{args.idle_seconds}s idle")
    print(f"{'verb resource':<52}" + "".join(f"{f'per req ({n} pods)':>20}" for n in args.pods)
          + f"{'per idle min':>14}")
    for r in rows:
        print(f"{r['request']:<52}" + "".join(f"{r[f'per_request_{n}_pods']:>20.2f}" for n in args.pods)
              + f"{r['per_idle_minute']:>14.2f}")
    summary = {}
    for n in args.pods:
        per_request = per_size[n]
        summary[n] = {
            "status_patches": round(per_request.get("patch cacheservers/status", 0.0), 2),
            "budget": math.ceil(n / PROGRESS_BATCH) + 2,
            "events": round(per_request.get("create events", 0.0), 2),
            "pod_reads": round(sum(v for k, v in per_request.items() if k.split()[1].startswith("pods")
                                   and k.split()[0] in ("get", "list")), 2),
            "all_reads": round(sum(v for k, v in per_request.items() if k.split()[0] in ("get", "list")), 2)}
        print(f"{n} pods: status patches per request {summary[n]['status_patches']} (budget ceil({n}/"
              f"{PROGRESS_BATCH}) + 2 = {summary[n]['budget']}), Events {summary[n]['events']} (budget 2), pod "
              f"reads {summary[n]['pod_reads']}, all reads {summary[n]['all_reads']}")
    minutes = args.idle_seconds / 60
    idle_counts = {name: sum(v for k, v in idle.items() if match(*k.split(" ", 1)))
                   for name, match in CATEGORIES.items()}
    print(f"idle over {minutes:g} min: " + ", ".join(f"{name} {count}" for name, count in idle_counts.items())
          + f" (all: {sum(idle.values())})")
    write("api_cost", {"pods": args.pods, "requests": args.requests, "idle_seconds": args.idle_seconds,
                       "idle": dict(idle), "idle_counts": idle_counts, "busy": {n: dict(b) for n, b in busy.items()},
                       "summary": summary}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ys = list(range(len(rows)))
    width = 0.8 / (len(args.pods) + 1)
    for i, n in enumerate(args.pods):
        ax.barh([y + (i - len(args.pods) / 2) * width for y in ys], [r[f"per_request_{n}_pods"] for r in rows], width,
                label=f"per handled request, {n} pods")
    ax.barh([y + (len(args.pods) / 2) * width for y in ys], [r["per_idle_minute"] for r in rows], width,
            label="per idle minute")
    ax.set_yticks(ys, [r["request"] for r in rows], fontsize=7)
    ax.set_xlabel("API requests by the operator's ServiceAccount (audit log)")
    ax.set_title(f"API cost ({machine()})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "api_cost.png", dpi=110)
    print("wrote benchmarks/results/api_cost.{json,csv,png}")


if __name__ == "__main__":
    main()
