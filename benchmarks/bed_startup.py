"""Warm start of the local test bed (binaries cached): time to each phase, over repeated starts.

  python -m benchmarks.bed_startup [--runs 5]     (make bench-bed)
Prints a table of medians (min/max) and writes benchmarks/results/bed_startup.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "hack"))

from testbed import cluster  # noqa: E402

PHASES = ["pki", "etcd", "apiserver", "nodes", "controller-manager", "ready"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bed-") as tmp:
        for i in range(args.runs):
            dir = Path(tmp) / "bed"
            bed = cluster.up(dir, standins=False)
            runs.append(dict(bed.timings))
            cluster.down(dir)
            print(f"run {i + 1}/{args.runs}: ready after {bed.timings['ready']:.2f}s", file=sys.stderr)
    rows = []
    for phase in PHASES:
        values = [r[phase] for r in runs]
        rows.append({"phase": phase, "median_s": statistics.median(values), "min_s": min(values),
                     "max_s": max(values)})
    print(f"\nwarm bed start, {args.runs} runs, {platform.node()} ({cluster.os.cpu_count()} cores)")
    print(f"{'phase done':<20}{'median s':>10}{'min s':>10}{'max s':>10}")
    for r in rows:
        print(f"{r['phase']:<20}{r['median_s']:>10.2f}{r['min_s']:>10.2f}{r['max_s']:>10.2f}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "bed_startup.json").write_text(json.dumps({"runs": runs, "summary": rows}, indent=1))
    with open(out / "bed_startup.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["phase", "median_s", "min_s", "max_s"])
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    med = [r["median_s"] for r in rows]
    err = [[m - r["min_s"] for m, r in zip(med, rows, strict=True)],
           [r["max_s"] - m for m, r in zip(med, rows, strict=True)]]
    ax.barh(PHASES, med, xerr=err, color="#4a7ab5")
    ax.invert_yaxis()
    ax.set_xlabel("seconds since start (median, min-max)")
    ax.set_title(f"rolecall test bed: warm start ({args.runs} runs, 2 cores)")
    fig.tight_layout()
    fig.savefig(out / "bed_startup.png", dpi=110)
    print(f"\nwrote {out}/bed_startup.json, .csv, .png")


if __name__ == "__main__":
    main()
