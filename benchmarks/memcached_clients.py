"""Which memcached client for the operator's hot path: flush_all on N memcached servers from one process.

  python -m benchmarks.memcached_clients [--servers 200 1000] [--runs 5]      (part of make bench)

N real memcached processes listen on loopback addresses 127.77.x.y (no cluster: only the client differs).
Each method sends flush_all (reply read) to every server once per run, a fresh connection per server as the
operator makes one per pod:
  threads-32          pymemcache on a pool of 32 threads (the fan-out benchmark's floor)
  to_thread-cC        asyncio, C at a time, pymemcache in asyncio.to_thread on a pool of 32 threads
                      (rolecall's fan-out before this benchmark)
  aiomcache-cC        asyncio, C at a time, aiomcache (aio-libs), no thread
  emcache-cC          asyncio, C at a time, emcache, no thread
Every run is checked to raise each server's cmd_flush by exactly one. Prints medians (min/max) and the
process's thread count after each method; writes results/memcached_clients.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import aiomcache
import emcache
from pymemcache.client.base import Client

from benchmarks.common import machine, pyplot, summarise, write

PORT = 11211


def _ip(i: int) -> str:
    return f"127.77.{i // 250}.{i % 250 + 1}"


@contextmanager
def _servers(n: int) -> Iterator[list[str]]:
    binary = shutil.which("memcached")
    if binary is None:
        raise SystemExit("memcached is not installed (make engines)")
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    ips = [_ip(i) for i in range(n)]
    procs = [subprocess.Popen([binary, "-l", ip, "-p", str(PORT), "-U", "0", "-t", "1", "-m", "8", "-c", "64",
                               *user]) for ip in ips]
    try:
        for ip in ips:
            deadline = time.monotonic() + 30
            while True:
                try:
                    Client((ip, PORT), connect_timeout=1, timeout=1).version()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        yield ips
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def _flush_blocking(ip: str) -> bool:
    c = Client((ip, PORT), connect_timeout=5, timeout=5)
    try:
        return bool(c.flush_all(noreply=False))
    finally:
        c.close()


async def _aiomcache(ip: str) -> bool:
    c = aiomcache.Client(ip, PORT, pool_size=1)
    try:
        await c.flush_all()
        return True
    finally:
        await c.close()


async def _emcache(ip: str) -> bool:
    address = emcache.MemcachedHostAddress(ip, PORT)
    c = await emcache.create_client([address], timeout=5, max_connections=1, min_connections=1,
                                    autodiscovery=False)
    try:
        await c.flush_all(address)
        return True
    finally:
        await c.close()


async def _to_thread(ip: str) -> bool:
    return await asyncio.to_thread(_flush_blocking, ip)


def _asyncio(flush: Callable[[str], Awaitable[bool]], ips: list[str], limit: int) -> float:
    async def all_of() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
        gate = asyncio.Semaphore(limit)

        async def one(ip: str) -> bool:
            async with gate:
                return await flush(ip)

        t0 = time.monotonic()
        done = await asyncio.gather(*(one(ip) for ip in ips))
        elapsed = time.monotonic() - t0
        assert all(done)
        return elapsed

    return asyncio.run(all_of())


def _threads(ips: list[str]) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(_flush_blocking, ips))
    return time.monotonic() - t0


def _cmd_flush(ips: list[str]) -> dict[str, int]:
    out = {}
    for ip in ips:
        c = Client((ip, PORT), connect_timeout=5, timeout=5)
        out[ip] = int(c.stats()[b"cmd_flush"])
        c.close()
    return out


METHODS: dict[str, Callable[[list[str]], float]] = {
    "threads-32": _threads,
    "to_thread-c10": lambda ips: _asyncio(_to_thread, ips, 10),
    "to_thread-c50": lambda ips: _asyncio(_to_thread, ips, 50),
    "aiomcache-c10": lambda ips: _asyncio(_aiomcache, ips, 10),
    "aiomcache-c50": lambda ips: _asyncio(_aiomcache, ips, 50),
    "emcache-c10": lambda ips: _asyncio(_emcache, ips, 10),
    "emcache-c50": lambda ips: _asyncio(_emcache, ips, 50),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    samples: dict[int, dict[str, list[float]]] = {}
    threads: dict[str, int] = {}
    for n in args.servers:
        samples[n] = {m: [] for m in METHODS}
        with _servers(n) as ips:
            for run in range(args.runs):
                for method, timed in METHODS.items():
                    before = _cmd_flush(ips)
                    elapsed = timed(ips)
                    threads[method] = threading.active_count()
                    after = _cmd_flush(ips)
                    assert all(after[ip] == before[ip] + 1 for ip in ips), f"{method}: not one flush per server"
                    samples[n][method].append(elapsed)
                    print(f"{n:>5} servers run {run + 1} {method:<15}{elapsed:8.4f}s", file=sys.stderr)
    rows = []
    for n, by_method in samples.items():
        base = summarise(by_method["threads-32"])["median"]
        for method, values in by_method.items():
            s = summarise(values)
            rows.append({"servers": n, "method": method, "median_s": round(s["median"], 4),
                         "min_s": round(s["min"], 4), "max_s": round(s["max"], 4), "runs": s["n"],
                         "vs_threads_32": round(s["median"] / base, 2)})
    print(f"\nflush_all on N memcached servers from one process ({machine()}), {args.runs} runs each")
    print(f"{'servers':>7} {'method':<15}{'median s':>10}{'min s':>9}{'max s':>9}{'x threads-32':>14}")
    for r in rows:
        print(f"{r['servers']:>7} {r['method']:<15}{r['median_s']:>10.4f}{r['min_s']:>9.4f}{r['max_s']:>9.4f}"
              f"{r['vs_threads_32']:>14.2f}")
    write("memcached_clients", {"samples": samples, "summary": rows}, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for method in METHODS:
        ax.plot(list(samples), [next(r["median_s"] for r in rows if r["servers"] == n and r["method"] == method)
                                for n in samples], marker="o", label=method)
    ax.set_xlabel("memcached servers")
    ax.set_ylabel("seconds to flush all (median)")
    ax.set_title(f"memcached clients ({machine()})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / "results" / "memcached_clients.png", dpi=110)
    print("wrote benchmarks/results/memcached_clients.{json,csv,png}")


if __name__ == "__main__":
    main()
