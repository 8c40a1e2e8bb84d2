"""The generated CRDs on a real apiserver: Established, documented, invalid CacheServers rejected readably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from harness import REPO, Cluster, wait_for
from rolecall.api.crd import KINDS

GROUP, VERSION, PLURAL = "rolecall.dev", "v1alpha1", "cacheservers"
VALID: dict[str, Any] = {"engine": "memcached", "selector": {"matchLabels": {"app": "cache"}}}
CRD_FILES = sorted(p for p in (REPO / "crds").glob("*.yaml") if p.name != "kustomization.yaml")


def _body(spec: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CacheServer", "metadata": {"name": name},
            "spec": spec}


def _create(cluster: Cluster, namespace: str, spec: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    kwargs = {"dry_run": "All"} if dry_run else {}
    return dict(client.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _body(spec), **kwargs))


def _established(cluster: Cluster, name: str) -> bool:
    crd = client.ApiextensionsV1Api(cluster.api_client).read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


@pytest.mark.parametrize("path", CRD_FILES, ids=[p.name for p in CRD_FILES])
def test_crd_file_is_established(installed: Cluster, path: Path) -> None:
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    wait_for(lambda: _established(installed, name), f"CRD {name} Established")


def test_every_kind_has_a_crd_file() -> None:
    assert [p.name for p in CRD_FILES] == sorted(f"{k.crd_name}.yaml" for k in KINDS)


def test_valid_cache_server_is_accepted_with_defaults(installed: Cluster, namespace: str) -> None:
    dry = _create(installed, namespace, VALID, dry_run=True)
    assert dry["spec"]["concurrency"] == 10 and dry["spec"]["timeoutSeconds"] == 30, dry["spec"]
    full = {**VALID, "concurrency": "25%", "port": 11211, "clearedAfter": "2026-11-25T11:00:00+01:00",
            "stopped": True, "workloadRef": {"kind": "Deployment", "name": "cache"},
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["cache"]}]}}
    created = _create(installed, namespace, full)
    assert created["spec"]["concurrency"] == "25%" and created["spec"]["stopped"] is True, created["spec"]
    listed = client.CustomObjectsApi(installed.api_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)
    assert [o["metadata"]["name"] for o in listed["items"]] == ["c"]


SELECTOR_RULE = "selector must not be empty: set matchLabels or matchExpressions to pick the target pods"
TIME_RULE = "must be an RFC 3339 time with an offset, e.g. 2026-11-25T10:00:00Z or 2026-11-25T11:00:00+01:00"
CONCURRENCY_RULE = "must be a whole number of pods (1 or more) or a percentage of the targets from 1% to 100%"
STOP_RULE = ("stopped: true needs spec.workloadRef: rolecall stops a role by scaling its Deployment or "
             "StatefulSet to 0")
NEAR = {"matchExpressions": [{"key": "a", "operator": "Near"}]}

# (id, spec, the phrase the apiserver's message must contain: field path, offending value, explanation)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("bad-engine", {**VALID, "engine": "mongodb"},
     'spec.engine: Unsupported value: "mongodb": supported values: "memcached", "redis"'),
    ("clearedAfter-without-offset", {**VALID, "clearedAfter": "2026-11-25T10:00:00"},
     f'spec.clearedAfter: Invalid value: "2026-11-25T10:00:00": {TIME_RULE}'),
    ("clearedAfter-garbage", {**VALID, "clearedAfter": "tomorrow"},
     f'spec.clearedAfter: Invalid value: "tomorrow": {TIME_RULE}'),
    ("stopped-without-workloadRef", {**VALID, "stopped": True}, f"spec.stopped: Required value: {STOP_RULE}"),
    ("empty-selector", {**VALID, "selector": {}}, f"spec.selector: Required value: {SELECTOR_RULE}"),
    ("selector-empty-matchLabels", {**VALID, "selector": {"matchLabels": {}}},
     f"spec.selector: Required value: {SELECTOR_RULE}"),
    ("missing-selector", {"engine": "redis"}, "spec.selector: Required value"),
    ("missing-engine", {"selector": {"matchLabels": {"app": "cache"}}}, "spec.engine: Required value"),
    ("negative-concurrency", {**VALID, "concurrency": -1},
     f"spec.concurrency: Invalid value: -1: {CONCURRENCY_RULE}"),
    ("concurrency-0-percent", {**VALID, "concurrency": "0%"},
     f'spec.concurrency: Invalid value: "0%": {CONCURRENCY_RULE}'),
    ("concurrency-150-percent", {**VALID, "concurrency": "150%"},
     f'spec.concurrency: Invalid value: "150%": {CONCURRENCY_RULE}'),
    ("clearWaves-size-0", {**VALID, "clearWaves": {"size": 0, "pauseSeconds": 10}},
     f"spec.clearWaves.size: Invalid value: 0: {CONCURRENCY_RULE}"),
    ("clearWaves-size-0-percent", {**VALID, "clearWaves": {"size": "0%", "pauseSeconds": 10}},
     f'spec.clearWaves.size: Invalid value: "0%": {CONCURRENCY_RULE}'),
    ("clearWaves-pause-0", {**VALID, "clearWaves": {"size": 2, "pauseSeconds": 0}},
     "spec.clearWaves.pauseSeconds: Invalid value: 0: spec.clearWaves.pauseSeconds in body should be greater "
     "than or equal to 1"),
    ("clearWaves-without-pause", {**VALID, "clearWaves": {"size": 2}}, "spec.clearWaves.pauseSeconds: Required value"),
    ("clearSchedule-startWindow-1-5", {**VALID, "clearSchedule": {"cron": "0 3 * * *", "startWindow": "1-5"}},
     'spec.clearSchedule.startWindow: Invalid value: "1-5": must be a local time range HH:MM-HH:MM'),
    ("historyLimit-51", {**VALID, "historyLimit": 51},
     "spec.historyLimit: Invalid value: 51: spec.historyLimit in body should be less than or equal to 50"),
    ("port-70000", {**VALID, "port": 70000},
     "spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535"),
    ("timeoutSeconds-0", {**VALID, "timeoutSeconds": 0},
     "spec.timeoutSeconds: Invalid value: 0: spec.timeoutSeconds in body should be greater than or equal "
     "to 1"),
    ("workloadRef-kind-Pod", {**VALID, "workloadRef": {"kind": "Pod", "name": "cache"}},
     'spec.workloadRef.kind: Unsupported value: "Pod": supported values: "Deployment", "StatefulSet"'),
    # Malformed types get the schema's own message (the mutating policy's JSON patch converts nothing first).
    ("clearedAfter-a-number", {**VALID, "clearedAfter": 12},
     'spec.clearedAfter: Invalid value: "integer": spec.clearedAfter in body must be of type string'),
    ("stopped-yes", {**VALID, "stopped": "yes"},
     'spec.stopped: Invalid value: "string": spec.stopped in body must be of type boolean'),
    ("clearedAfter-30-February", {**VALID, "clearedAfter": "2026-02-30T10:00:00Z"},
     f'spec.clearedAfter: Invalid value: "2026-02-30T10:00:00Z": {TIME_RULE} (on a date that exists)'),
    ("selector-label-key-with-a-space", {**VALID, "selector": {"matchLabels": {"bad key": "x"}}},
     "spec.selector.matchLabels: Invalid value: every key must be a qualified name"),
    ("selector-In-without-values", {**VALID, "selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.selector.matchExpressions[0]: Invalid value: In and NotIn need at least one value"),
    ("nodeSelector-bad-value", {**VALID, "nodeSelector": {"zone": "-a"}},
     "spec.nodeSelector: Invalid value: every value must be at most 63 letters"),
    ("selector-operator-Near", {**VALID, "selector": NEAR},
     'spec.selector.matchExpressions[0].operator: Unsupported value: "Near": '
     'supported values: "In", "NotIn", "Exists", "DoesNotExist"'),
]


@pytest.mark.parametrize(("spec", "phrase"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_cache_server_is_rejected_with_a_readable_message(installed: Cluster, namespace: str,
                                                                  spec: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ApiException) as err:
        _create(installed, namespace, spec)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]  # what kubectl prints to the person
    assert phrase in message


def test_kubectl_create_prints_the_rule_message(installed: Cluster, namespace: str) -> None:
    manifest = json.dumps(_body({**VALID, "selector": {}}, name="nothing"))
    out = installed.kubectl("create", "-n", namespace, "-f", "-", input=manifest, check=False)
    assert out.returncode != 0
    assert 'The CacheServer "nothing" is invalid' in out.stderr, out.stderr
    assert f"spec.selector: Required value: {SELECTOR_RULE}" in out.stderr, out.stderr


def _explain(cluster: Cluster, field: str) -> str:
    return " ".join(cluster.kubectl("explain", f"cacheserver.{field}").stdout.split())  # unwrapped


def test_kubectl_explain_prints_the_model_descriptions(installed: Cluster) -> None:
    cleared = _explain(installed, "spec.clearedAfter")
    assert ("The cache has been cleared at or after this time. If the last completed clear is older (or none "
            "happened), every target is cleared once; a future time waits until then.") in cleared, cleared
    selector = _explain(installed, "spec.selector")
    assert ("Picks the target Pods in this resource's own namespace by label. Required and not empty (an "
            "empty selector would pick every pod in the namespace).") in selector, selector
    assert "matchLabels" in selector and "matchExpressions" in selector, selector


@pytest.mark.parametrize(("plural", "header"), [
    ("cacheservers", ["NAME", "ENGINE", "PHASE", "PODS", "ITEMS", "HITRATIO", "LASTCLEARED", "AGE"]),
    ("webservers", ["NAME", "ENGINE", "PHASE", "REPLICAS", "HEALTHY", "CONNECTIONS", "USERS", "AGE"]),
])
def test_printer_columns_are_served(installed: Cluster, namespace: str, plural: str, header: list[str]) -> None:
    kind = "CacheServer" if plural == "cacheservers" else "WebServer"
    engine = "memcached" if plural == "cacheservers" else "nginx"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "shown"},
            "spec": {"engine": engine, "selector": {"matchLabels": {"app": "x"}}}}
    client.CustomObjectsApi(installed.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                  plural, body)
    assert installed.kubectl("get", plural, "-n", namespace).stdout.splitlines()[0].split() == header
