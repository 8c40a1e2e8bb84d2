"""Test harness: the cluster under test, namespaces, users, and the operator as a real subprocess.

The cluster is the local bed (started once per session) unless KUBECONFIG names another one (e.g. kind);
there only API, admission and RBAC tests can run, since engine stand-ins and pod exec on this machine
need the local bed. Waiting is always on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from testbed import install as testbed_install
from testbed.cluster import free_port
from testbed.install import kubectl_path

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = 30, interval: float = 0.1) -> T:
    """Calls `check` until it returns something truthy; fails with `what` and the last value at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (ApiException, OSError, ConnectionError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass
class Cluster:
    kubeconfig: Path
    local: bool  # True: the local KWOK bed (stand-ins, exec on this machine); False: an external cluster
    bed: Any = None
    api_client: Any = None

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        return subprocess.run([kubectl_path(), *args], env=env, input=input, text=True, capture_output=True,
                              check=check, timeout=120)

    def user_kubeconfig(self, user: str) -> Path:
        if not self.local:
            raise RuntimeError("static test users exist only on the local bed")
        return Path(self.bed.user_kubeconfig(user))

    def user_client(self, user: str) -> Any:
        return config.new_client_from_config(config_file=str(self.user_kubeconfig(user)))


def pinned_version(name: str) -> str:
    """A pin of hack/versions.env: KUBE_VERSION (the main beds, the newest supported Kubernetes) or
    COMPAT_KUBE_VERSION (the compatibility bed, the oldest)."""
    pins = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    return pins[name]


def start_cluster(state_dir: Path, kube_dir: Path | None = None) -> Iterator[Cluster]:
    external = os.environ.get("KUBECONFIG")
    if external:
        kc = Path(external)
        yield Cluster(kc, local=False, api_client=config.new_client_from_config(config_file=str(kc)))
        return
    from testbed import cluster as bed_mod

    bed = bed_mod.up(state_dir, kube_dir=kube_dir)
    try:
        yield Cluster(bed.kubeconfig, local=True, bed=bed,
                      api_client=config.new_client_from_config(config_file=str(bed.kubeconfig)))
    finally:
        bed_mod.down(state_dir)


def install(cluster: Cluster) -> None:
    testbed_install.install(cluster.kubeconfig)


def operator_kubeconfig(cluster: Cluster, path: Path) -> Path:
    return testbed_install.operator_kubeconfig(cluster.kubeconfig, path)


@dataclass
class Operator:
    """The operator as a real subprocess, so a test can SIGKILL it and start another."""

    kubeconfig: Path
    namespaces: list[str]
    log_dir: Path
    lease_namespace: str
    lease_seconds: int = 3
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    health_ports: list[int] = field(default_factory=list)
    launcher: tuple[str, ...] = ("-m", "rolecall")  # e.g. ("-m", "memray", "run", ..., "-m", "rolecall")

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        port = free_port()
        self.metrics_ports.append(port)
        self.health_ports.append(free_port())
        log = open(self.log_dir / f"operator-{n}.log", "ab")  # noqa: SIM115 - handed to the child
        args = [sys.executable, *self.launcher, "--lease-namespace", self.lease_namespace,
                "--lease-seconds", str(self.lease_seconds), "--metrics-address", f"127.0.0.1:{port}",
                "--health-address", f"127.0.0.1:{self.health_ports[-1]}", *extra]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self.procs[-1]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 40) -> None:
        """SIGTERM, as a rollout stops a pod, and wait for the process to exit."""
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)

    def freeze(self, proc: subprocess.Popen[bytes], frozen: bool) -> None:
        """SIGSTOP (frozen) or SIGCONT: a process that stops answering without dying, like a starved pod."""
        os.killpg(proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)  # a frozen one must be able to act on the SIGTERM
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def metric(self, name: str, labels: dict[str, str] | None = None, proc: int = -1) -> float:
        """Sum of a Prometheus sample of the operator process `proc` (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_ports[proc]}/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += s.value
        return total

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("operator-*.log")))


def new_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{re.sub('[^a-z0-9-]+', '-', prefix[:40].lower()).strip('-')}-{uuid.uuid4().hex[:5]}"
    client.CoreV1Api(cluster.api_client).create_namespace({"metadata": {"name": name,
                                                                        "labels": {"rolecall.dev/test": "true"}}})
    return name


def namespace_for_test(cluster: Cluster, request: Any) -> Iterator[str]:
    """A fresh namespace named after the test, deleted after it (the body of the namespace fixtures)."""
    name = new_namespace(cluster, request.node.name.removeprefix("test_")[:30])
    yield name
    delete_namespace(cluster, name)


def delete_namespace(cluster: Cluster, name: str) -> None:
    try:
        client.CoreV1Api(cluster.api_client).delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


def pods(cluster: Cluster, namespace: str, selector: str) -> list[Any]:
    return list(client.CoreV1Api(cluster.api_client).list_namespaced_pod(namespace, label_selector=selector).items)


def running_pods(cluster: Cluster, namespace: str, selector: str, count: int, timeout: float = 60) -> list[Any]:
    def ready() -> list[Any] | None:
        ps = [p for p in pods(cluster, namespace, selector)
              if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp
              and _standin_ready(p)]
        return ps if len(ps) == count else None

    return wait_for(ready, f"{count} Running pods with {selector} in {namespace}", timeout)


def _standin_ready(pod: Any) -> bool:
    """A pod with an engine stand-in counts once its own server answers (see testbed.standins)."""
    labels, ann = pod.metadata.labels or {}, pod.metadata.annotations or {}
    if "testbed.rolecall.dev/engine" not in labels or pod.spec.host_network:
        return True  # no stand-in runs for it (host-networked pods never get one)
    return ann.get("testbed.rolecall.dev/standin") == "ready"


def deployment(name: str, engine: str, replicas: int, labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment whose pods get a real `engine` stand-in on the local bed."""
    pod_labels = {"app": name, "testbed.rolecall.dev/engine": engine, **(labels or {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": pod_labels, "annotations": annotations or {}},
                              "spec": {"containers": [{"name": engine, "image": f"{engine}:stand-in"}]}}},
    }


def secret_b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)


def client_as(cluster: Cluster, user: str) -> Any:
    """An API client acting as `user`: the user's own token on the local bed; elsewhere the admin
    impersonating the user (the same authorizer and admission see the same user)."""
    if cluster.local:
        return cluster.user_client(user)
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.set_default_header("Impersonate-User", user)
    api.set_default_header("Impersonate-Group", "system:authenticated")
    return api


def bind(cluster: Cluster, namespace: str, user: str, cluster_role: str) -> None:
    """A RoleBinding of `cluster_role` to `user` in `namespace`."""
    client.RbacAuthorizationV1Api(cluster.api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": f"{user}-{cluster_role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def unbind(cluster: Cluster, namespace: str, user: str, cluster_role: str) -> None:
    client.RbacAuthorizationV1Api(cluster.api_client).delete_namespaced_role_binding(
        f"{user}-{cluster_role}", namespace)
