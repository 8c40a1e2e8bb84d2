"""The Helm chart: `helm lint` and `helm template` pass (helm built from its Go module with the bed), the
rendered RBAC and policies are exactly the plain manifests', namespaced mode renders RoleBindings, the
Deployment carries probes, pod-IP addresses and locked-down security contexts and honours the usual chart
values, values.schema.json refuses typos and wrong types by name, the plain Deployment is the chart's
default rendering, the rendered Deployments pass the apiserver's strict validation (a server-side dry
run), and the rendered output is accepted by the apiserver and works: an operator with the chart's
ServiceAccount token carries out a request. Only the last two need a cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
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
from testbed.install import kubectl, operator_kubeconfig, tool_path

CHART = REPO / "charts" / "rolecall"
# The plain manifests are the policy mode (Kubernetes 1.36+). `helm template` resolves admission.mode auto from
# Helm's built-in API list, which has no MutatingAdmissionPolicy v1: it renders the webhook mode.
POLICY_MODE = ("--set", "admission.mode=policy")


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool_path(name), *args], text=True, capture_output=True, timeout=120)


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return _tool("helm", *args)


def _render(*sets: str) -> list[dict[str, Any]]:
    """The chart's output, in policy mode unless `sets` choose another (a later --set wins)."""
    out = _helm("template", "rolecall", str(CHART), "--namespace", "rolecall-system", *POLICY_MODE, *sets)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _plain() -> list[dict[str, Any]]:
    docs = []
    for name in ("rbac.yaml", "user-roles.yaml", "admission-policies.yaml", "serviceaccount.yaml"):
        docs += [d for d in yaml.safe_load_all((REPO / "manifests" / name).read_text()) if d]
    return docs


def _by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} rendered"
    return found[0]


def _pod(*sets: str) -> dict[str, Any]:
    template: dict[str, Any] = _one(_render(*sets), "Deployment")["spec"]["template"]
    return template


def test_helm_lint_passes() -> None:
    for sets in ([], ["--set", "replicaCount=2,podDisruptionBudget.enabled=true,metrics.serviceMonitor.enabled=true"]):
        out = _helm("lint", "--strict", str(CHART), *sets)
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
    off = _render("--set", "admission.enabled=false")
    assert not any(d["kind"].endswith(("AdmissionPolicy", "WebhookConfiguration")) for d in off)


def test_defaults_render_probes_pod_ip_addresses_and_locked_down_security() -> None:
    deployment = _one(_render(), "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "rolecall"}}
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "rolecall/operator:0.1.0"
    # Bound to the pod's own IP (two replicas on a host network must not collide), from the downward API.
    assert "--metrics-address=$(POD_IP):8080" in container["args"]
    assert "--health-address=$(POD_IP):8081" in container["args"]
    assert "--lease-namespace=rolecall-system" in container["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_IP": "status.podIP", "POD_NAMESPACE": "metadata.namespace"}
    assert [e["name"] for e in container["env"]].index("POD_IP") == 0, "$(POD_IP) needs POD_IP defined first"
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {("metrics", 8080), ("health", 8081)}
    assert not any("hostPort" in p for p in container["ports"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["livenessProbe"]["periodSeconds"] == 10 and container["livenessProbe"]["failureThreshold"] == 3
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["spec"]["serviceAccountName"] == "rolecall-operator"
    for absent in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert absent not in pod["spec"], absent


def test_plain_deployment_is_the_charts_default_rendering() -> None:
    plain = yaml.safe_load((REPO / "manifests" / "deployment.yaml").read_text())
    assert plain["spec"] == _one(_render(), "Deployment")["spec"]
    assert plain["metadata"]["name"] == "rolecall-operator" and plain["metadata"]["namespace"] == "rolecall-system"


def test_kustomize_renders_the_plain_install_and_its_image_override(tmp_path: Path) -> None:
    out = _tool("kubectl", "kustomize", str(REPO / "manifests"))
    assert out.returncode == 0, out.stderr
    deployment = _one([d for d in yaml.safe_load_all(out.stdout) if d], "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "rolecall/operator:0.1.0"
    # An overlay points the install at a local build, as the comment in kustomization.yaml says.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(REPO / "manifests", overlay)],
        "images": [{"name": "rolecall/operator", "newName": "localhost/rolecall/operator"}]}))
    out = _tool("kubectl", "kustomize", str(overlay))
    assert out.returncode == 0, out.stderr
    deployment = _one([d for d in yaml.safe_load_all(out.stdout) if d], "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/rolecall/operator:0.1.0"


def test_scheduling_image_and_pod_values_are_honoured() -> None:
    deployment = _one(_render(
        "--set", "replicaCount=2", "--set", "nodeSelector.kubernetes\\.io/os=linux",
        "--set", "tolerations[0].key=dedicated,tolerations[0].operator=Equal,tolerations[0].value=ops,"
                 "tolerations[0].effect=NoSchedule",
        "--set", "podLabels.team=platform", "--set", "podAnnotations.example\\.com/owner=ops",
        "--set", "imagePullSecrets[0].name=regcred", "--set", "priorityClassName=system-cluster-critical",
        "--set", "image.repository=localhost/rolecall/operator", "--set", "image.tag=",
        "--set", "image.pullPolicy=Never", "--set", "extraArgs={--verbose}",
        "--set", "extraEnv[0].name=TZ,extraEnv[0].value=UTC",
        "--set", "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1,"
                 "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm"
                 ".topologyKey=kubernetes.io/hostname"), "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ops",
                                           "effect": "NoSchedule"}]
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "rolecall", "team": "platform"}
    assert pod["metadata"]["annotations"] == {"example.com/owner": "ops"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert "podAntiAffinity" in pod["spec"]["affinity"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"localhost/rolecall/operator:{chart['appVersion']}", "empty tag: appVersion"
    assert container["imagePullPolicy"] == "Never"
    assert container["args"][-1] == "--verbose"
    assert container["env"][-1] == {"name": "TZ", "value": "UTC"}
    assert _pod("--set", "image.tag=0.2.0-rc1")["spec"]["containers"][0]["image"] == "rolecall/operator:0.2.0-rc1"
    digest = "sha256:" + "ab" * 32
    assert _pod("--set", f"image.digest={digest}")["spec"]["containers"][0]["image"] == f"rolecall/operator@{digest}"
    # The selector label stays the chart's own whatever podLabels say (the selector must match the pods).
    assert _pod("--set", "podLabels.app\\.kubernetes\\.io/name=other")["metadata"]["labels"] == {
        "app.kubernetes.io/name": "rolecall"}


def test_operator_flags_follow_values() -> None:
    container = _pod("--set", "leaseSeconds=30", "--set", "health.port=9091", "--set", "metrics.port=9090",
                     "--set", "allowWithoutAdmissionPolicies=true")["spec"]["containers"][0]
    assert {"--lease-seconds=30", "--health-address=$(POD_IP):9091", "--metrics-address=$(POD_IP):9090",
            "--allow-without-admission-policies"} <= set(container["args"])
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {("metrics", 9090), ("health", 9091)}
    # Metrics off: the operator gets an empty address (off), no metrics port, no Service to scrape.
    docs = _render("--set", "metrics.enabled=false")
    container = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-address=" in container["args"]
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not [d for d in docs if d["kind"] == "Service"]
    out = _helm("template", "rolecall", str(CHART), "--set", "health.port=8080")
    assert out.returncode != 0 and "metrics.port and health.port must differ" in out.stderr


def test_metrics_service_by_default_and_service_monitor_only_when_enabled() -> None:
    docs = _render()
    service = _one(docs, "Service")
    pod = _one(docs, "Deployment")["spec"]["template"]
    assert service["metadata"]["name"] == "rolecall-operator-metrics"
    assert service["metadata"]["namespace"] == "rolecall-system"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PodDisruptionBudget")]
    assert not [d for d in _render("--set", "metrics.service.enabled=false") if d["kind"] == "Service"]
    # The test bed has no Prometheus Operator CRDs: the ServiceMonitor is checked as rendered only.
    docs = _render("--set", "metrics.serviceMonitor.enabled=true",
                   "--set", "metrics.serviceMonitor.additionalLabels.release=prometheus",
                   "--set", "metrics.serviceMonitor.interval=15s")
    monitor, service = _one(docs, "ServiceMonitor"), _one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["rolecall-system"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]
    out = _helm("template", "rolecall", str(CHART), "--set", "metrics.serviceMonitor.enabled=true",
                "--set", "metrics.service.enabled=false")
    assert out.returncode != 0 and "metrics.serviceMonitor.enabled needs" in out.stderr


def test_pod_disruption_budget_and_service_account_toggles() -> None:
    pdb = _one(_render("--set", "replicaCount=2,podDisruptionBudget.enabled=true"), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "rolecall"}}}
    account = _one(_render("--set", "serviceAccount.annotations.example\\.com/role=ops"), "ServiceAccount")
    assert account["metadata"]["annotations"] == {"example.com/role": "ops"}
    docs = _render("--set", "serviceAccount.create=false")
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    assert _one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "rolecall-operator"


@pytest.mark.parametrize(("value", "named"), [
    ("replicaCount=two", ["/replicaCount", "want integer"]),
    ("replicaCount=0", ["/replicaCount", "minimum"]),
    ("image.pullPolicy=Sometimes", ["/image/pullPolicy", "IfNotPresent"]),
    ("replicaCont=2", ["additional properties 'replicaCont' not allowed"]),
    ("image.repo=x", ["/image", "additional properties 'repo' not allowed"]),
    ("metrics.serviceMonitr.enabled=true", ["/metrics", "'serviceMonitr' not allowed"]),
    ("metrics.port=70000", ["/metrics/port", "maximum"]),
    ("leaseSeconds=fifteen", ["/leaseSeconds", "want integer"]),
    ("watchNamespaces={Shop_1}", ["/watchNamespaces/0", "does not match pattern"]),
    ("metrics.serviceMonitor.interval=30", ["/metrics/serviceMonitor/interval"]),
    ("podSecurityContext.runAsUser=root", ["/podSecurityContext/runAsUser", "want integer"]),
])
def test_schema_rejects_bad_values_by_name(value: str, named: list[str]) -> None:
    out = _helm("template", "rolecall", str(CHART), "--set", value)
    assert out.returncode != 0, f"{value} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    for text in named:
        assert text in out.stderr, (value, out.stderr)


def test_rendered_deployments_pass_the_apiservers_validation(installed: Cluster) -> None:
    """A server-side dry run with strict field validation: the apiserver accepts the chart's Deployment (with
    every pod option set) and the plain one, without creating them (no image is needed)."""
    chart = _one(_render("--set", "replicaCount=2,podDisruptionBudget.enabled=true,podLabels.team=ops",
                         "--set", "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
                         "--set", "nodeSelector.kubernetes\\.io/os=linux,extraEnv[0].name=TZ,extraEnv[0].value=UTC",
                         "--set", "imagePullSecrets[0].name=regcred,extraArgs={--verbose}"), "Deployment")
    plain = yaml.safe_load((REPO / "manifests" / "deployment.yaml").read_text())
    for doc in (chart, plain):
        kubectl(installed.kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", "-",
                input=yaml.safe_dump(doc))


@pytest.mark.usefixtures("installed")  # the install from manifests/ this output is applied over
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


def test_shards_render_a_deployment_and_lease_each_and_warn_about_unowned_namespaces() -> None:
    docs = _render("--set", "shards[0].name=a", "--set", "shards[0].namespaces={t1,t2}",
                   "--set", "shards[1].name=b", "--set", "shards[1].namespaces={t3}")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"rolecall-operator-a", "rolecall-operator-b"}
    a = deployments["rolecall-operator-a"]["spec"]
    args = a["template"]["spec"]["containers"][0]["args"]
    assert "--lease-name=rolecall-operator-a" in args and {"--namespace=t1", "--namespace=t2"} <= set(args)
    assert "--namespace=t3" not in args
    assert a["selector"]["matchLabels"] == {"app.kubernetes.io/name": "rolecall", "rolecall.dev/shard": "a"}
    assert a["template"]["metadata"]["labels"]["rolecall.dev/shard"] == "a"
    bound = {d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding"}
    assert {"t1", "t2", "t3", "rolecall-system"} <= bound
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "rolecall-operator"]
    binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"
                   and d["metadata"]["name"] == "rolecall-unowned-namespace")
    assert binding["spec"]["validationActions"] == ["Warn"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == ["t1", "t2", "t3"]
    assert not [d for d in _render() if d["metadata"]["name"] == "rolecall-unowned-namespace"]  # all namespaces


@pytest.mark.parametrize(("sets", "error"), [
    (["shards[0].name=a", "shards[0].namespaces={t1}", "shards[1].name=b", "shards[1].namespaces={t1}"],
     'namespace "t1" is in shards "a" and "b"'),
    (["shards[0].name=a", "shards[0].namespaces={t1}", "watchNamespaces={t2}"], "set either shards or watchNamespaces"),
    (["shards[0].name=a", "shards[0].namespaces={t1}", "shards[1].name=a", "shards[1].namespaces={t2}"],
     'shard "a" is listed twice'),
])
def test_shards_that_would_act_twice_or_conflict_are_refused(sets: list[str], error: str) -> None:
    out = _helm("template", "rolecall", str(CHART), *[x for s in sets for x in ("--set", s)])
    assert out.returncode != 0 and error in out.stderr, out.stderr


WEBHOOK_MODE = ("--set", "admission.mode=webhook")


def test_auto_mode_follows_the_clusters_apis_and_old_clusters_are_refused() -> None:
    auto = ("--set", "admission.mode=auto")
    new = _render(*auto, "--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy")
    assert {d["kind"] for d in new} >= {"MutatingAdmissionPolicy", "ValidatingAdmissionPolicy"}
    assert "MutatingWebhookConfiguration" not in {d["kind"] for d in new}
    old = _render(*auto, "--kube-version", "1.34.0")
    assert {d["kind"] for d in old} >= {"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy"}
    assert "MutatingAdmissionPolicy" not in {d["kind"] for d in old}
    out = _helm("template", "rolecall", str(CHART), "--kube-version", "1.33.5")
    assert out.returncode != 0 and "chart requires kubeVersion: >= 1.34.0-0" in out.stderr, out.stderr


def test_webhook_mode_renders_the_generated_webhooks_behind_a_service_with_narrow_rights() -> None:
    from rolecall.api.admission import requester_webhooks

    docs = _render(*WEBHOOK_MODE)
    config = _one(docs, "MutatingWebhookConfiguration")
    generated = requester_webhooks()
    assert [w["name"] for w in config["webhooks"]] == [w["name"] for w in generated]
    for rendered, want in zip(config["webhooks"], generated, strict=True):
        path = want.pop("path")
        assert rendered["clientConfig"] == {"service": {"name": "rolecall-operator-webhook",
                                                        "namespace": "rolecall-system", "path": path, "port": 443}}
        assert {k: v for k, v in rendered.items() if k != "clientConfig"} == want
        assert rendered["failurePolicy"] == "Fail" and rendered["sideEffects"] == "None"
    assert not [d for d in docs if d["kind"] == "MutatingAdmissionPolicy"]
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "rolecall-operator-webhook")
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]
    container = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"--admission-mode=webhook", "--webhook-address=$(POD_IP):9443", "--webhook-certificates=self",
            "--webhook-dns-name=rolecall-operator-webhook.rolecall-system.svc"} <= set(container["args"])
    assert ("webhook", 9443) in {(p["name"], p["containerPort"]) for p in container["ports"]}
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["metadata"]["name"] == "rolecall-webhook-tls" and "data" not in secret  # the operator fills it
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "rolecall-operator-webhook")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rolecall-webhook-tls"],
                              "verbs": ["get", "update"]}]
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole"
                        and d["metadata"]["name"] == "rolecall-operator-webhook")
    assert cluster_role["rules"][0]["resourceNames"] == ["rolecall-requester"]
    assert cluster_role["rules"][0]["verbs"] == ["get", "patch"]


def test_webhook_mode_by_url_and_with_cert_manager() -> None:
    by_url = _render(*WEBHOOK_MODE, "--set", "admission.webhook.url=https://127.0.0.1:19443/",
                     "--set", "admission.webhook.address=127.0.0.1:19443",
                     "--set", "admission.webhook.extraDNSNames={127.0.0.1}")
    hooks = _one(by_url, "MutatingWebhookConfiguration")["webhooks"]
    assert hooks[0]["clientConfig"] == {"url": "https://127.0.0.1:19443/requester-cacheservers-clear"}
    args = _one(by_url, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--webhook-address=127.0.0.1:19443", "--webhook-dns-name=127.0.0.1"} <= set(args)
    managed = _render(*WEBHOOK_MODE, "--set", "admission.webhook.certificates=cert-manager")
    config = _one(managed, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "rolecall-system/rolecall-webhook-serving"}
    serving = next(d for d in managed if d["kind"] == "Certificate"
                   and d["metadata"]["name"] == "rolecall-webhook-serving")
    assert serving["spec"]["secretName"] == "rolecall-webhook-tls"
    assert serving["spec"]["issuerRef"] == {"kind": "Issuer", "name": "rolecall-webhook-ca"}
    assert "rolecall-operator-webhook.rolecall-system.svc" in serving["spec"]["dnsNames"]
    assert not [d for d in managed if d["kind"] == "Secret"], "cert-manager makes the Secret"
    args = _one(managed, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-certificates=external" in args
    role = next(d for d in managed if d["kind"] == "Role" and d["metadata"]["name"] == "rolecall-operator-webhook")
    assert role["rules"][0]["verbs"] == ["get"]
    own_issuer = _render(*WEBHOOK_MODE, "--set", "admission.webhook.certificates=cert-manager",
                         "--set", "admission.webhook.certManagerIssuerRef.kind=ClusterIssuer",
                         "--set", "admission.webhook.certManagerIssuerRef.name=corp-ca")
    assert not [d for d in own_issuer if d["kind"] == "Issuer"]
    serving = next(d for d in own_issuer if d["kind"] == "Certificate")
    assert serving["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}


def test_crds_are_templates_helm_upgrades_and_keeps() -> None:
    """Helm installs a chart's crds/ directory once and never upgrades it: the CRDs are templates instead,
    equal to the generated ones, kept on uninstall unless crds.keep is false, and left out with crds.enabled."""
    rendered = {d["metadata"]["name"]: d for d in _render() if d["kind"] == "CustomResourceDefinition"}
    generated = {p.name.removesuffix(".yaml"): yaml.safe_load(p.read_text())
                 for p in (REPO / "crds").glob("*.rolecall.dev.yaml")}
    assert set(rendered) == set(generated)
    for name, crd in rendered.items():
        assert crd["spec"] == generated[name]["spec"], f"{name}: the template changed the CRD"
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rolecall"
    assert not (CHART / "crds").exists(), "a crds/ directory would be installed once and never upgraded"
    unkept = [d for d in _render("--set", "crds.keep=false") if d["kind"] == "CustomResourceDefinition"]
    assert len(unkept) == 4 and all("annotations" not in d["metadata"] for d in unkept)
    assert not [d for d in _render("--set", "crds.enabled=false") if d["kind"] == "CustomResourceDefinition"]


@pytest.mark.parametrize("mode", ["policy", "webhook"])
def test_rendered_manifests_are_the_charts_install(mode: str) -> None:
    """manifests/rendered/ ships the chart's default install per admission mode for `kubectl apply`."""
    shipped = [d for d in yaml.safe_load_all((REPO / "manifests" / "rendered" / f"rolecall-{mode}-mode.yaml")
                                             .read_text()) if d]
    assert shipped == _render("--set", f"admission.mode={mode}"), "stale: run `make manifests`"
