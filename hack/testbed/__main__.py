"""CLI of the local bed: `python -m testbed up|down|env [--dir DIR]` (the Makefile calls these)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from testbed import cluster


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=cluster.REPO / ".testbed" / "run",
                        help="where the bed keeps its state (default: .testbed/run)")
    parser.add_argument("--no-standins", action="store_true", help="do not run engine stand-ins")
    parser.add_argument("--kube-dir", type=Path, default=None,
                        help="take kube-apiserver, -controller-manager and -scheduler from this directory, e.g. "
                             "the oldest supported Kubernetes that `make compat-bins` prints (default: the main "
                             "bed's, KUBE_VERSION)")
    args = parser.parse_args()
    dir = args.dir.resolve()
    if args.command == "up":
        t0 = time.monotonic()
        bed = cluster.up(dir, standins=not args.no_standins, kube_dir=args.kube_dir)
        print(f"bed up in {time.monotonic() - t0:.1f}s: {bed.server}")
        print(f"export KUBECONFIG={bed.kubeconfig}")
    elif args.command == "down":
        cluster.down(dir)
        print(f"bed in {dir} stopped")
    else:
        try:
            bed = cluster.Bed.load(dir)
        except FileNotFoundError:
            raise SystemExit(f"no bed in {dir}") from None
        state = "running" if bed.alive() else "stopped (or partly)"
        print(f"{state}: {bed.server}  KUBECONFIG={bed.kubeconfig}")
        raise SystemExit(0 if bed.alive() else 1)


if __name__ == "__main__":
    main()
