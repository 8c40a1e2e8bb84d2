"""`make run` (python -m testbed.demo up): a cluster where kubectl works, the operator runs in it as a pod from the
image (Running and Ready, `kubectl logs` shows its log), and the demo of all four kinds works."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REPO, Cluster, wait_for
from testbed.install import kubectl_path


@pytest.fixture
def demo_dir(local_bed: Cluster) -> Iterator[Path]:
    # A bed of its own beside the suite's (each bed has its own pod CIDR and ports). Not under pytest's
    # tmp_path: its 0700 parents would keep the bed user (the PostgreSQL stand-in runs as it) out.
    d = REPO / ".testbed" / "make-run-test"
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

    operator = json.loads(kubectl("get", "pods", "-n", "rolecall-system", "-o", "json"))["items"]
    assert len(operator) == 1 and operator[0]["status"]["phase"] == "Running", operator
    assert operator[0]["status"]["containerStatuses"][0]["imageID"].startswith("localhost/rolecall/operator:")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in operator[0]["status"]["conditions"])
    wait_for(lambda: "leader lease rolecall-system/rolecall-operator acquired" in kubectl(
        "logs", "-n", "rolecall-system", operator[0]["metadata"]["name"]), "the operator's log: Lease acquired", 60)
    wait_for(demo_running, "the demo CacheServer Running", 60)
    kubectl("wait", "databasemaintenance/demo-purge", "--for=jsonpath={.status.rowsDeleted}=30", "--timeout=90s")
    kubectl("wait", "webserver/demo-web", "--for=jsonpath={.status.healthyPods}=2", "--timeout=60s")
    kubectl("annotate", "cacheserver", "demo-cache", "rolecall.dev/clear-requested-at=demo-1")
    kubectl("wait", "cacheserver/demo-cache", "--for=jsonpath={.status.lastHandledClearRequest}=demo-1",
            "--timeout=60s")
    assert "Cleared 3 of 3" in kubectl("describe", "cacheserver", "demo-cache")

    ran: list[str] = []
    # Every verb the printout offers, as a newcomer types it: one command each, through kubectl.
    assert f"export PATH={Path(kubectl_path()).parent}:{REPO / '.testbed' / 'plugin' / 'bin'}:$PATH" in up.stdout
    path = f"{Path(kubectl_path()).parent}:{REPO / '.testbed' / 'plugin' / 'bin'}:{env['PATH']}"
    for line in up.stdout.splitlines():
        command = line.split("#")[0].strip()
        if not command.startswith("kubectl rolecall "):
            continue
        done = subprocess.run(shlex.split(command), env={**env, "KUBECONFIG": str(kubeconfig), "PATH": path},
                              text=True, capture_output=True, timeout=180, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        ran.append(command.split()[2])
    assert sorted(set(ran)) == ["clear", "compact", "history", "purge", "start", "status", "stop", "users"], ran
