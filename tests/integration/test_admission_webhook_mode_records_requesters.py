"""Webhook mode, for Kubernetes 1.34 and 1.35 where MutatingAdmissionPolicy v1 is not served: the operator's
own mutating webhook records who asked, the ValidatingAdmissionPolicies still refuse what a user may not do,
and the operator acts on the recorded requester's rights. The webhook is installed from the chart's webhook
rendering with a `url` client config (the bed's pod IPs are loopback, which Endpoints refuse), and the mutating
policies' bindings are removed for the test, so every requester seen was recorded by the webhook. Two
operator processes share the webhook's port (SO_REUSEPORT), as replicas share a Service.

The rotation test shortens the certificates' lives to seconds and keeps requesting while the leader renews
the serving certificate and the CA: every request must be admitted with its requester, and the apiserver
must have verified every certificate the replicas served (a failed TLS handshake fails the request)."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from cachekit import (
    GROUP,
    VERSION,
    cacheserver,
    cmd_flush,
    create_cs,
    memcached_deployment,
    wait_handled,
)
from harness import REPO, Cluster, Operator, bind, client_as, wait_for
from testbed.cluster import free_port
from testbed.install import kubectl, tool_path

CLEAR = "rolecall.dev/clear-requested-at"
BY = "rolecall.dev/clear-requested-by"
CONFIG = "rolecall-requester"


def _webhook_rendering(port: int) -> list[dict[str, Any]]:
    out = subprocess.run([tool_path("helm"), "template", "rolecall", str(REPO / "charts" / "rolecall"),
                          "--namespace", "rolecall-system", "--set", "admission.mode=webhook",
                          "--set", f"admission.webhook.url=https://127.0.0.1:{port}"],
                         text=True, capture_output=True, timeout=120, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture
def webhook_mode(local_bed: Cluster, namespace: str) -> Iterator[int]:
    """The chart's webhook-mode objects on the bed (its namespaced ones in the test's namespace, which is the
    operator's own here), the mutating policies unbound; all undone afterwards. Yields the webhook's port."""
    port = free_port()
    wanted = {"MutatingWebhookConfiguration", "Secret", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    docs = [d for d in _webhook_rendering(port) if d["kind"] in wanted
            and (d["kind"] == "MutatingWebhookConfiguration" or "webhook" in d["metadata"]["name"])]
    for d in docs:
        if d["metadata"].get("namespace"):
            d["metadata"]["namespace"] = namespace
    assert {d["kind"] for d in docs} == wanted, [d["metadata"]["name"] for d in docs]
    admission = client.AdmissionregistrationV1Api(local_bed.api_client)
    bindings = [admission.read_mutating_admission_policy_binding(b.metadata.name)
                for b in admission.list_mutating_admission_policy_binding().items
                if b.metadata.name.startswith("rolecall-")]
    for b in bindings:
        admission.delete_mutating_admission_policy_binding(b.metadata.name)
    try:
        kubectl(local_bed.kubeconfig, "apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
        yield port
    finally:
        for kind, name in (("mutatingwebhookconfiguration", CONFIG),
                           ("clusterrolebinding", "rolecall-operator-webhook"),
                           ("clusterrole", "rolecall-operator-webhook")):
            kubectl(local_bed.kubeconfig, "delete", "--ignore-not-found", kind, name)
        for b in bindings:
            admission.create_mutating_admission_policy_binding(
                {"metadata": {"name": b.metadata.name, "labels": b.metadata.labels},
                 "spec": {"policyName": b.spec.policy_name}})


def _start(operator: Operator, port: int, *extra: str) -> None:
    for _ in range(2):
        operator.start("--admission-mode", "webhook", "--webhook-address", f"127.0.0.1:{port}",
                       "--webhook-dns-name", "127.0.0.1", *extra)


def _ca_bundle(cluster: Cluster) -> bytes:
    hooks = client.AdmissionregistrationV1Api(cluster.api_client).read_mutating_webhook_configuration(CONFIG).webhooks
    bundles = {h.client_config.ca_bundle for h in hooks}
    return base64.b64decode(bundles.pop()) if len(bundles) == 1 and None not in bundles else b""


def _served(port: int, bundle: bytes) -> x509.Certificate:
    """The certificate one replica presents, verified against `bundle` for the name 127.0.0.1."""
    context = ssl.create_default_context(cadata=bundle.decode())
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def _clear_as(cluster: Cluster, ns: str, user: str, token: str, extra: dict[str, str] | None = None) -> Any:
    return client.CustomObjectsApi(client_as(cluster, user)).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "cacheservers", "mc", {"metadata": {"annotations": {CLEAR: token, **(extra or {})}}})



def test_the_webhook_records_the_requester_policies_refuse_and_no_operator_means_no_request(
        local_bed: Cluster, namespace: str, webhook_mode: int, operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace)
    bind(local_bed, namespace, "carol", "rolecall-edit")
    bind(local_bed, namespace, "carol", "rolecall-cache-clearer")
    bind(local_bed, namespace, "dave", "rolecall-edit")  # may edit CacheServers, may not clear
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    _start(operator, webhook_mode)
    bundle = wait_for(lambda: _ca_bundle(local_bed), "the leader to put its CA into the webhook configuration", 60)
    assert _served(webhook_mode, bundle).not_valid_after_utc > _served(webhook_mode, bundle).not_valid_before_utc
    # A forged requester is overwritten with the real one, as the mutating policy does.
    wait_for(lambda: _clear_as(local_bed, namespace, "carol", "first", {BY: "root"}), "carol's clear admitted", 60)
    wait_handled(local_bed, namespace, "mc", "first")
    cs = client.CustomObjectsApi(local_bed.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "cacheservers", "mc")
    assert cs["metadata"]["annotations"][BY] == "carol"
    assert "system:authenticated" in cs["metadata"]["annotations"]["rolecall.dev/clear-requested-by-groups"].split(",")
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
    # The validating policy still refuses a user without the right, with its message.
    with pytest.raises(ApiException) as refused:
        _clear_as(local_bed, namespace, "dave", "daves")
    assert refused.value.status == 403 and "a cache clear" in refused.value.body, refused.value.body
    # No operator serving: a change that requests an action is refused (failurePolicy Fail), others pass.
    operator.stop_all()
    with pytest.raises(ApiException) as unserved:
        _clear_as(local_bed, namespace, "carol", "while-down")
    assert "failed calling webhook" in unserved.value.body, unserved.value.body
    client.CustomObjectsApi(client_as(local_bed, "carol")).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "cacheservers", "mc", {"metadata": {"labels": {"team": "shop"}}})
    assert [cmd_flush(ip) for ip in ips] == [1, 1]


def test_certificates_rotate_while_the_webhook_serves_every_request(
        local_bed: Cluster, namespace: str, webhook_mode: int, operator: Operator) -> None:
    memcached_deployment(local_bed, namespace)
    bind(local_bed, namespace, "carol", "rolecall-edit")
    bind(local_bed, namespace, "carol", "rolecall-cache-clearer")
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    # Serving certificates live 30 s (renewed at 20 s), the CA 75 s (renewed at 50 s); a pass every second.
    _start(operator, webhook_mode, "--webhook-check-seconds", "1",
           "--webhook-certificate-days", str(30 / 86400), "--webhook-ca-days", str(75 / 86400))
    wait_for(lambda: _ca_bundle(local_bed), "the first CA in the webhook configuration", 60)
    wait_for(lambda: _clear_as(local_bed, namespace, "carol", "warm-up"), "the webhook serving", 60)
    serials: set[int] = set()
    issuers: set[str] = set()
    most_cas = 0
    failures: list[str] = []
    sent = 0
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        sent += 1
        try:
            _clear_as(local_bed, namespace, "carol", f"t{sent}", {BY: "someone-else"})
        except ApiException as e:
            failures.append(f"request {sent}: {e.status} {e.body}")
        bundle = _ca_bundle(local_bed)
        most_cas = max(most_cas, len(x509.load_pem_x509_certificates(bundle)))
        cert = _served(webhook_mode, bundle)
        serials.add(cert.serial_number)
        issuers.add(cert.issuer.rfc4514_string())
        time.sleep(0.2)
    print(f"rotation: {sent} requests, {len(failures)} failed, {len(serials)} serving certificates and "
          f"{len(issuers)} CAs seen, at most {most_cas} CAs trusted at once")
    assert not failures, f"{len(failures)} of {sent} requests failed: {failures[:3]}"
    assert sent > 200
    cs = client.CustomObjectsApi(local_bed.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "cacheservers", "mc")
    assert cs["metadata"]["annotations"][BY] == "carol", "the last request's requester, recorded by the webhook"
    assert len(serials) >= 4, f"serving certificates seen: {len(serials)}"
    assert len(issuers) >= 2 and most_cas == 2, "the CA was renewed, and old and new were trusted side by side"
    renewals = sum(operator.metric("rolecall_webhook_certificate_changes_total", proc=i) for i in (0, 1))
    assert renewals >= 4, renewals
    assert sum(operator.metric("rolecall_webhook_certificate_errors_total", proc=i) for i in (0, 1)) == 0
    wait_handled(local_bed, namespace, "mc", f"t{sent}")
