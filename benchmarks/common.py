"""What every benchmark shares: a local bed with rolecall installed, the operator as a real process (with its
ServiceAccount token and metrics), and result files (JSON, CSV, PNG) in benchmarks/results/.

Benchmarks reuse the test harness (tests/harness.py) for the bed, the operator process and waiting, so they
measure the same setup the tests prove correct.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
for extra in (REPO / "hack", REPO / "tests", REPO / "tests" / "integration"):
    sys.path.insert(0, str(extra))

from kubernetes import client, watch  # type: ignore[import-untyped]  # noqa: E402

from harness import Cluster, Operator, install, new_namespace, operator_kubeconfig  # noqa: E402
from testbed import cluster as bed_mod  # noqa: E402


@contextmanager
def bed(name: str, audit: bool = False) -> Iterator[Cluster]:
    """A fresh local bed in .testbed/bench-<name> with rolecall installed; torn down afterwards."""
    os.environ["PATH"] = f"{bed_mod.cache_bin_dir()}{os.pathsep}{os.environ['PATH']}"
    state = REPO / ".testbed" / f"bench-{name}"
    b = bed_mod.up(state, audit=audit)
    try:
        from kubernetes import config  # type: ignore[import-untyped]

        c = Cluster(b.kubeconfig, local=True, bed=b, api_client=config.new_client_from_config(str(b.kubeconfig)))
        install(c)
        yield c
    finally:
        bed_mod.down(state)


def operator(cluster: Cluster, namespaces: list[str], log_dir: Path, *extra: str, lease_namespace: str = "",
             launcher: tuple[str, ...] = ("-m", "rolecall")) -> Operator:
    """The operator with its ServiceAccount's token: only `namespaces`, or all of them when empty."""
    log_dir.mkdir(parents=True, exist_ok=True)
    op = Operator(kubeconfig=operator_kubeconfig(cluster, log_dir / "operator.kubeconfig"), namespaces=namespaces,
                  log_dir=log_dir, lease_namespace=lease_namespace or namespaces[0], lease_seconds=15,
                  launcher=launcher)
    op.start(*extra)
    return op


def metric(op: Operator, name: str, labels: dict[str, str] | None = None) -> float:
    """A metric of the operator, 0 while its metrics server is not up yet (a just-started process)."""
    import httpx

    try:
        return op.metric(name, labels)
    except httpx.HTTPError:
        return 0.0


def namespace(cluster: Cluster, prefix: str) -> str:
    return new_namespace(cluster, prefix)


def wait_status(cluster: Cluster, ns: str, plural: str, name: str, done: Callable[[dict[str, Any]], bool],
                timeout: float = 300) -> float:
    """Watches one object until `done(status)`; returns time.monotonic() when that event arrived."""
    api = client.CustomObjectsApi(cluster.api_client)
    obj = api.get_namespaced_custom_object("rolecall.dev", "v1alpha1", ns, plural, name)
    if done(obj.get("status") or {}):
        return time.monotonic()
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    for ev in w.stream(api.list_namespaced_custom_object, "rolecall.dev", "v1alpha1", ns, plural,
                       field_selector=f"metadata.name={name}", resource_version=obj["metadata"]["resourceVersion"],
                       timeout_seconds=int(timeout)):
        if done(ev["object"].get("status") or {}):
            w.stop()
            return time.monotonic()
        if time.monotonic() > deadline:
            break
    raise TimeoutError(f"{ns}/{name} did not reach the awaited status within {timeout}s")


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> str:
    return f"{platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"


def write(name: str, data: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), **data}, indent=1, default=str))
    if rows:
        with open(RESULTS / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


TICK = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / TICK


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Sampler:
    """Samples RSS and CPU of a process every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu s)
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, cpu = proc_figures(self.pid)
            except (FileNotFoundError, ProcessLookupError, StopIteration):  # between one process and the next
                pass
            else:
                self.samples.append((time.monotonic() - self.t0, rss, cpu))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Reconciled(threading.Thread):
    """Counts the CacheServers of a namespace whose status has a phase (their first reconcile is written),
    from a watch, so waiting for 10,000 of them lists nothing over and over."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        super().__init__(daemon=True)
        self.api, self.ns = client.CustomObjectsApi(cluster.api_client), ns
        self.phased: set[str] = set()
        self.handled: dict[str, str] = {}  # name -> lastHandledClearRequest
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                for ev in watch.Watch().stream(self.api.list_namespaced_custom_object, "rolecall.dev", "v1alpha1",
                                               self.ns, "cacheservers", timeout_seconds=300):
                    obj, st = ev["object"], ev["object"].get("status") or {}
                    with self.lock:
                        if st.get("phase"):
                            self.phased.add(obj["metadata"]["name"])
                        if st.get("lastHandledClearRequest"):
                            self.handled[obj["metadata"]["name"]] = st["lastHandledClearRequest"]
            except Exception:
                time.sleep(0.5)

    def count(self) -> int:
        with self.lock:
            return len(self.phased)

    def handled_with(self, token: str) -> int:
        with self.lock:
            return sum(1 for v in self.handled.values() if v == token)
