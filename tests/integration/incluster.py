"""Helpers for the in-cluster tests: Helm, the locally built image, and the operator pod's container as the
bed's container stand-in (hack/testbed/containers.py) runs it under podman."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import REPO, Cluster, wait_for
from testbed.containers import POD_UID_LABEL, podman
from testbed.install import tool_path, wait_admissible

CHART = REPO / "charts" / "rolecall"
NAMESPACE = "rolecall-system"
SELECTOR = "app.kubernetes.io/name=rolecall"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE_REPOSITORY = "localhost/rolecall/operator"
IMAGE = f"{IMAGE_REPOSITORY}:{VERSION}"
RUN_IN_PODMAN = "testbed.rolecall.dev/runtime"


def image_id(ref: str = IMAGE) -> str:
    out = podman("image", "inspect", "--format", "{{.Id}}", ref)
    assert out.returncode == 0, f"image {ref} is missing from local podman storage: run `make image` ({out.stderr})"
    return out.stdout.strip()


def helm(cluster: Cluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([tool_path("helm"), *args], text=True, capture_output=True, timeout=timeout, env=env)


def bed_values(*extra: str, tag: str = VERSION) -> list[str]:
    """Chart values for the bed: the local image, run by the container stand-in, a short lease."""
    return ["--set", f"image.repository={IMAGE_REPOSITORY}", "--set", f"image.tag={tag}",
            "--set-string", "podLabels.testbed\\.rolecall\\.dev/runtime=podman", "--set", "leaseSeconds=6", *extra]


def release(cluster: Cluster, chart: Path, *values: str) -> Iterator[Cluster]:
    """The body of a module fixture: `helm install` the chart (waiting for it and for admission to know the
    kinds), yield, `helm uninstall`."""
    out = helm(cluster, "install", "rolecall", str(chart), "--namespace", NAMESPACE, "--create-namespace", *values,
               "--wait", "--timeout", "180s")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_admissible(cluster.kubeconfig)
    yield cluster
    helm(cluster, "uninstall", "rolecall", "--namespace", NAMESPACE, "--wait", "--timeout", "120s")


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", SELECTOR, "-o", "json")
    return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def wait_ready_operators(cluster: Cluster, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    return wait_for(lambda: (pods := operator_pods(cluster)) and len(pods) == count and all(map(ready, pods))
                    and pods, f"{count} Ready operator pod(s)", timeout, interval=0.5)


def container(pod: dict[str, Any]) -> dict[str, Any]:
    """podman's view of the pod's running container."""
    out = podman("ps", "--filter", f"label={POD_UID_LABEL}={pod['metadata']['uid']}", "--format", "{{.ID}}")
    ids = out.stdout.split()
    assert len(ids) == 1, f"expected one running container for {pod['metadata']['name']}: {out.stdout}{out.stderr}"
    return json.loads(podman("container", "inspect", ids[0]).stdout)[0]


def process_facts(pid: int) -> tuple[int, str]:
    """(effective uid, root mount options) of a process, read from /proc as the host sees it."""
    uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return int(uids.split()[2]), mount_points(pid)["/"]


def lease_holder(cluster: Cluster) -> str:
    out = cluster.kubectl("get", "lease", "-n", NAMESPACE, "rolecall-operator", "-o",
                          "jsonpath={.spec.holderIdentity}", check=False)
    return out.stdout.strip()


def memory_limit(pid: int) -> int:
    """The memory limit the kernel enforces on a process: its memory cgroup's (v1 or v2) limit in bytes."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return int(Path(f"/sys/fs/cgroup{line[3:]}/memory.max").read_text())
    raise AssertionError(f"no memory cgroup for {pid}")


def mount_points(pid: int) -> dict[str, str]:
    """Mount point -> mount options, as the process sees its mounts."""
    return {fields[4]: fields[5] for fields in (line.split() for line in
                                                   Path(f"/proc/{pid}/mountinfo").read_text().splitlines())}
