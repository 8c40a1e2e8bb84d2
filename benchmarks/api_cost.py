"""API cost: the Kubernetes API requests the operator makes per handled request and per idle minute,
counted from the apiserver's audit log filtered on the operator's own ServiceAccount (the apiserver's
request metrics cannot tell clients apart).

  python -m benchmarks.api_cost [--pods 40] [--requests 10] [--idle-seconds 60]   (part of make bench)

Prints requests by verb and resource, per handled clear request (targets = --pods) and per idle minute,
and writes results/api_cost.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import bed, machine, namespace, operator, pyplot, wait_status, write
from cachekit import create_cs, create_deployment, patch_cs, pod_ips, wait_memcached
from harness import deployment, running_pods

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=40)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--idle-seconds", type=int, default=60)
    args = p.parse_args()
    with bed("apicost", audit=True) as cluster:
        log = cluster.bed.dir / "audit.log"
        ns = namespace(cluster, "bench-api")
        create_deployment(cluster, ns, deployment("mc", "memcached", args.pods))
        running_pods(cluster, ns, "app=mc", args.pods, timeout=600)
        wait_memcached(list(pod_ips(cluster, ns, "app=mc").values()))
        op = operator(cluster, [ns], Path(tempfile.mkdtemp(prefix="bench-api-")))
        create_cs(cluster, ns, {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer",
                                "metadata": {"name": "mc"},
                                "spec": {"engine": "memcached", "selector": {"matchLabels": {"app": "mc"}},
                                         "statsIntervalSeconds": 86400}})
        wait_status(cluster, ns, "cacheservers", "mc", lambda s: s.get("phase") == "Running")
        patch_cs(cluster, ns, "mc", {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": "warm"}}})
        wait_status(cluster, ns, "cacheservers", "mc", lambda s: s.get("lastHandledClearRequest") == "warm")
        time.sleep(3)  # let the warm-up's Events land before counting starts
        _, offset = _audit(log, 0)

        time.sleep(args.idle_seconds)  # idle: nothing requested, nothing changes
        idle, offset = _audit(log, offset)

        t0 = time.monotonic()
        for i in range(args.requests):
            patch_cs(cluster, ns, "mc", {"metadata": {"annotations": {"rolecall.dev/clear-requested-at": f"r{i}"}}})
            wait_status(cluster, ns, "cacheservers", "mc", lambda s, i=i: s.get("lastHandledClearRequest") == f"r{i}")
        time.sleep(3)  # the Events that follow the last status write
        busy_seconds = time.monotonic() - t0
        busy, offset = _audit(log, offset)
        op.stop_all()
    per_minute = 60 / args.idle_seconds
    idle_rate = {k: v * per_minute for k, v in idle.items()}
    # What the requests themselves cost: the busy window minus what idling would have cost in that time.
    per_request = {k: (v - idle_rate.get(k, 0) * busy_seconds / 60) / args.requests for k, v in busy.items()}
    keys = sorted(set(idle) | set(busy))
    rows = [{"request": k, "per_handled_request": round(per_request.get(k, 0.0), 2),
             "per_idle_minute": round(idle_rate.get(k, 0.0), 2)} for k in keys]
    writes = sum(v for k, v in per_request.items() if k.split()[0] in ("patch", "create", "update", "delete"))
    status_patches = per_request.get("patch cacheservers/status", 0.0)
    budget = math.ceil(args.pods / 20) + 2
    print(f"\nAPI cost of the operator ({machine()}): {args.pods} target pods, {args.requests} requests, "
          f"{args.idle_seconds}s idle")
    print(f"{'verb resource':<52}{'per request':>12}{'per idle min':>14}")
    for r in rows:
        print(f"{r['request']:<52}{r['per_handled_request']:>12.2f}{r['per_idle_minute']:>14.2f}")
    print(f"\nstatus patches per request: {status_patches:.2f} (budget ceil({args.pods}/20) + 2 = {budget}); "
          f"Events per request: {per_request.get('create events', 0):.2f} (budget 2); all writes per request: "
          f"{writes:.2f}; requests per idle minute: {sum(idle_rate.values()):.1f}")
    write("api_cost", {"pods": args.pods, "requests": args.requests, "idle_seconds": args.idle_seconds,
                       "idle": dict(idle), "busy": dict(busy), "busy_seconds": busy_seconds}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["per_handled_request"] for r in rows], 0.4, label="per handled request")
    ax.barh([y - 0.2 for y in ys], [r["per_idle_minute"] for r in rows], 0.4, label="per idle minute")
    ax.set_yticks(list(ys), [r["request"] for r in rows], fontsize=7)
    ax.set_xlabel("API requests by the operator's ServiceAccount (audit log)")
    ax.set_title(f"API cost, {args.pods} target pods ({machine()})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "api_cost.png", dpi=110)
    print("wrote benchmarks/results/api_cost.{json,csv,png}")


if __name__ == "__main__":
    main()
