"""The generated CRDs on a real apiserver: accepted, documented, and invalid manifests rejected readably."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from harness import Cluster

VALID: dict[str, Any] = {"engine": "memcached", "selector": {"matchLabels": {"app": "cache"}}}


def _create(cluster: Cluster, ns: str, spec: dict[str, Any], name: str = "c") -> dict[str, Any]:
    body = {"apiVersion": "rolecall.dev/v1alpha1", "kind": "CacheServer", "metadata": {"name": name}, "spec": spec}
    return dict(client.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(
        "rolecall.dev", "v1alpha1", ns, "cacheservers", body))


def test_valid_cache_server_is_accepted_with_defaults(installed: Cluster, namespace: str) -> None:
    obj = _create(installed, namespace, VALID)
    assert obj["spec"]["concurrency"] == 10 and obj["spec"]["timeoutSeconds"] == 30
    assert obj["spec"]["stopped"] is False


INVALID = [
    ("bad engine", {**VALID, "engine": "mongodb"}, 'Unsupported value: "mongodb"'),
    ("time without offset", {**VALID, "clearedAfter": "2026-11-25T10:00:00"}, "RFC 3339 time with an offset"),
    ("garbage time", {**VALID, "clearedAfter": "tomorrow"}, "RFC 3339 time with an offset"),
    ("stopped without workload", {**VALID, "stopped": True}, "stopped: true needs spec.workloadRef"),
    ("empty selector", {**VALID, "selector": {}}, "selector must not be empty"),
    ("empty matchLabels", {**VALID, "selector": {"matchLabels": {}}}, "selector must not be empty"),
    ("missing selector", {"engine": "redis"}, "spec.selector: Required value"),
    ("missing engine", {"selector": {"matchLabels": {"a": "b"}}}, "spec.engine: Required value"),
    ("negative concurrency", {**VALID, "concurrency": -1}, "must be a whole number of pods (1 or more)"),
    ("zero percent", {**VALID, "concurrency": "0%"}, "percentage of the targets from 1% to 100%"),
    ("150 percent", {**VALID, "concurrency": "150%"}, "percentage of the targets from 1% to 100%"),
    ("port out of range", {**VALID, "port": 70000}, "should be less than or equal to 65535"),
    ("timeout zero", {**VALID, "timeoutSeconds": 0}, "should be greater than or equal to 1"),
    ("workload kind Pod", {**VALID, "workloadRef": {"kind": "Pod", "name": "x"}}, 'Unsupported value: "Pod"'),
    ("bad selector operator", {**VALID, "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
     'Unsupported value: "Near"'),
]


@pytest.mark.parametrize(("case", "spec", "phrase"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_rejected_with_a_readable_message(installed: Cluster, namespace: str, case: str,
                                                              spec: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ApiException) as err:
        _create(installed, namespace, spec)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]  # what kubectl prints to the person
    assert phrase in message, f"{case}: {message}"


def test_kubectl_explain_shows_the_model_docs(installed: Cluster) -> None:
    out = " ".join(installed.kubectl("explain", "cacheserver.spec.clearedAfter").stdout.split())
    assert "The cache has been cleared at or after this time" in out
    out = " ".join(installed.kubectl("explain", "cacheserver.spec.selector").stdout.split())  # unwrap
    assert "Picks the target Pods in this resource's own namespace by label. Required and not empty" in out


def test_printer_columns_are_served(installed: Cluster, namespace: str) -> None:
    _create(installed, namespace, VALID, name="shown")
    header = installed.kubectl("get", "cacheservers", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "ENGINE", "PHASE", "PODS", "ITEMS", "HITRATIO", "LASTCLEARED", "AGE"]
