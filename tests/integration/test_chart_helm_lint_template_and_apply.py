"""The Helm chart: `helm lint` and `helm template` pass (helm built from its Go module with the bed), the
rendered RBAC and policies are exactly the plain manifests', namespaced mode renders RoleBindings, and the
rendered output is accepted by the apiserver and works: an operator with the chart's ServiceAccount token
carries out a request."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_pods,
    pod_ips,
    standin_pod,
    wait_handled,
    wait_memcached,
)
from harness import REPO, Cluster, Operator, running_pods
from testbed.cluster import cache_bin_dir
from testbed.install import kubectl, operator_kubeconfig

CHART = REPO / "charts" / "rolecall"


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm = shutil.which("helm", path=f"{cache_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
    assert helm, "helm is built by hack/build-cluster-bins.sh (make cluster-bins)"
    return subprocess.run([helm, *args], text=True, capture_output=True, timeout=120)


def _render(*sets: str) -> list[dict[str, Any]]:
    out = _helm("template", "rolecall", str(CHART), "--namespace", "rolecall-system", *sets)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _plain() -> list[dict[str, Any]]:
    docs = []
    for name in ("rbac.yaml", "user-roles.yaml", "admission-policies.yaml", "serviceaccount.yaml"):
        docs += [d for d in yaml.safe_load_all((REPO / "manifests" / name).read_text()) if d]
    return docs


def _by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_helm_lint_passes() -> None:
    out = _helm("lint", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_rendered_rbac_and_policies_equal_the_plain_manifests() -> None:
    chart, plain = _by_key(_render()), _by_key(_plain())
    for key, doc in plain.items():
        assert key in chart, f"the chart does not render {key}"
        for field in ("rules", "roleRef", "subjects", "spec"):
            assert chart[key].get(field) == doc.get(field), (key, field)


def test_namespaced_mode_renders_rolebindings_only_where_watched() -> None:
    docs = _render("--set", "watchNamespaces={shop,web}")
    bindings = {(d["kind"], d["metadata"].get("namespace"), d["roleRef"]["name"]) for d in docs
                if d["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    assert bindings == {("RoleBinding", "shop", "rolecall-operator"), ("RoleBinding", "web", "rolecall-operator"),
                        ("RoleBinding", "rolecall-system", "rolecall-operator"),
                        ("ClusterRoleBinding", None, "rolecall-operator-cluster")}
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args and "--namespace=web" in args
    assert not any(d["kind"].endswith("AdmissionPolicy") for d in _render("--set", "admissionPolicies.enabled=false"))


def test_rendered_output_applies_and_an_operator_with_its_account_works(
        local_bed: Cluster, namespace: str, tmp_path: Path) -> None:
    # The same objects the suite installed from manifests/ (same names): applying the chart's output over
    # them must be accepted and leave a working install. The Deployment is left out: its image cannot be
    # built here, the operator runs as a local process instead.
    docs = [d for d in _render() if d["kind"] != "Deployment"]
    kubectl(local_bed.kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager=helm-render",
            "-f", "-", input=yaml.safe_dump_all(docs))
    create_pods(local_bed, namespace, [standin_pod("mc-0", "memcached", {"app": "mc"})])
    running_pods(local_bed, namespace, "app=mc", 1)
    ip = pod_ips(local_bed, namespace, "app=mc")["mc-0"]
    wait_memcached([ip])
    chart_operator = Operator(kubeconfig=operator_kubeconfig(local_bed.kubeconfig, tmp_path / "chart.kubeconfig"),
                              namespaces=[namespace], log_dir=tmp_path, lease_namespace=namespace)
    try:
        chart_operator.start()
        create_cs(local_bed, namespace, cacheserver("c", "memcached", {"app": "mc"}))
        annotate_clear(local_bed, namespace, "c", "chart")
        wait_handled(local_bed, namespace, "c", "chart")
        assert cmd_flush(ip) == 1
    finally:
        chart_operator.stop_all()
