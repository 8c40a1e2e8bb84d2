"""Installs rolecall from the repo's own manifests and mints the operator's ServiceAccount token.

Shared by `make run` (testbed.demo) and the test suite, so both run the operator with exactly the
rights the manifests grant, never as admin.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml
from kubernetes import client, config  # type: ignore[import-untyped]

from testbed.cluster import REPO, cache_bin_dir

OPERATOR_NAMESPACE = "rolecall-system"
OPERATOR_SA = "rolecall-operator"


def tool_path(name: str) -> str:
    """A command built with the bed (kubectl, helm), else the one on PATH."""
    built = cache_bin_dir() / name
    return str(built) if built.exists() else name


def kubectl_path() -> str:
    return tool_path("kubectl")


def kubectl(kubeconfig: Path, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run([kubectl_path(), *args], env=env, input=input, text=True, capture_output=True,
                          check=False, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def install(kubeconfig: Path) -> None:
    """Applies manifests/ (CRDs, namespace, ServiceAccount, RBAC) except the operator Deployment, which
    would need an image; the operator runs as a local process with the same ServiceAccount instead."""
    rendered = kubectl(kubeconfig, "kustomize", str(REPO / "manifests")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Deployment"]
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs))
    for d in docs:
        if d["kind"] == "CustomResourceDefinition":
            kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/{d['metadata']['name']}",
                    "--timeout=60s")
    wait_admissible(kubeconfig)


def crd_kinds() -> list[str]:
    """The kinds of rolecall's CRDs (crds/)."""
    return sorted(yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in (REPO / "crds").glob("*.yaml")
                  if p.name != "kustomization.yaml")


def wait_admissible(kubeconfig: Path) -> None:
    """After a fresh install, Established is not enough: a MutatingAdmissionPolicy finds a new kind's schema
    through the apiserver's OpenAPI, which it polls every 5 s, and until then answers "Resource kind ... not
    found. There can be a delay ..." (503). Waits until a server-side dry run of an object of each kind gets
    past admission. Under the webhook mode there is no such delay and the first dry run answers."""
    for kind in crd_kinds():
        probe = yaml.safe_dump({"apiVersion": "rolecall.dev/v1alpha1", "kind": kind,
                                "metadata": {"name": "admission-probe", "namespace": "default"}, "spec": {}})
        deadline = time.monotonic() + 60
        while True:
            out = kubectl(kubeconfig, "create", "--dry-run=server", "-f", "-", input=probe, check=False)
            if "ServiceUnavailable" not in out.stderr and "not found" not in out.stderr:
                break  # admitted, or refused by the schema (the spec is empty): either way the kind is known
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} still not admissible after 60s: {out.stderr.strip()}")
            time.sleep(0.2)


def operator_kubeconfig(admin_kubeconfig: Path, path: Path, hours: int = 2, sa: str = OPERATOR_SA) -> Path:
    """Writes a kubeconfig holding a TokenRequest token of the operator's ServiceAccount (or `sa`)."""
    api = config.new_client_from_config(config_file=str(admin_kubeconfig))
    tr = client.CoreV1Api(api).create_namespaced_service_account_token(
        sa, OPERATOR_NAMESPACE, {"spec": {"expirationSeconds": hours * 3600}})
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    ctx = {c["name"]: c["context"] for c in admin["contexts"]}[admin["current-context"]]
    clus = {c["name"]: c["cluster"] for c in admin["clusters"]}[ctx["cluster"]]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "c", "cluster": clus}],
        "users": [{"name": sa, "user": {"token": tr.status.token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "c", "user": sa}}],
    }))
    path.chmod(0o600)
    return path
