"""`make run` (python -m testbed.demo up): a cluster where kubectl works, the operator runs, the demo is Running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REPO, Cluster, wait_for
from testbed.install import kubectl_path


@pytest.fixture
def demo_dir(local_bed: Cluster, tmp_path: Path) -> Iterator[Path]:
    # A bed of its own beside the suite's (each bed has its own pod CIDR and ports).
    d = tmp_path / "run"
    yield d
    subprocess.run([sys.executable, "-m", "testbed.demo", "down", "--dir", str(d)], cwd=REPO, check=False,
                   env={**os.environ, "PYTHONPATH": str(REPO / "hack")}, timeout=120)


def test_demo_up_gives_nodes_pods_and_a_running_cache_server(demo_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "hack")}
    env.pop("KUBECONFIG", None)
    up = subprocess.run([sys.executable, "-m", "testbed.demo", "up", "--dir", str(demo_dir)], cwd=REPO, env=env,
                        text=True, capture_output=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    kubeconfig = demo_dir / "admin.kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout and "kubectl get cacheservers" in up.stdout

    def kubectl(*args: str) -> str:
        return subprocess.run([kubectl_path(), *args], env={**env, "KUBECONFIG": str(kubeconfig)}, text=True,
                              capture_output=True, check=True, timeout=60).stdout

    listing = kubectl("get", "nodes,pods", "-A")
    assert listing.count("kwok-node-") >= 3 and "demo-cache-" in listing

    def demo_running() -> bool:
        cs = json.loads(kubectl("get", "cacheserver", "demo-cache", "-o", "json"))
        return cs.get("status", {}).get("phase") == "Running"

    wait_for(demo_running, "the demo CacheServer Running", 60)
    kubectl("annotate", "cacheserver", "demo-cache", "rolecall.dev/clear-requested-at=demo-1")
    kubectl("wait", "cacheserver/demo-cache", "--for=jsonpath={.status.lastHandledClearRequest}=demo-1",
            "--timeout=60s")
    assert "Cleared 3 of 3" in kubectl("describe", "cacheserver", "demo-cache")
