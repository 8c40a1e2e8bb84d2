"""Invalid WebServers are rejected by the apiserver (OpenAPI + CEL) with messages a person understands."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from harness import Cluster
from webkit import GROUP, PLURAL, VERSION, webserver

VALID: dict[str, Any] = webserver("w", "nginx", {"app": "web"})["spec"]
SLASH = "must be an HTTP path that starts with /, e.g. /nginx_status"

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("bad-engine", {**VALID, "engine": "lighttpd"},
     'spec.engine: Unsupported value: "lighttpd": supported values: "nginx", "apache"'),
    ("statusPath-without-slash", {**VALID, "statusPath": "nginx_status"},
     f'spec.statusPath: Invalid value: "nginx_status": {SLASH}'),
    ("statusPath-with-query", {**VALID, "statusPath": "/server-status?auto"},
     'spec.statusPath: Invalid value: "/server-status?auto": may hold only URL path characters (no spaces, '
     'quotes or query string)'),
    ("port-70000", {**VALID, "port": 70000},
     "spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535"),
    ("userCount-path-without-slash", {**VALID, "userCount": {"path": "stats", "field": "users"}},
     f'spec.userCount.path: Invalid value: "stats": {SLASH}'),
    ("userCount-bad-field", {**VALID, "userCount": {"path": "/stats", "field": "a..b"}},
     'spec.userCount.field: Invalid value: "a..b": must be a dotted path of JSON keys, e.g. sessions.active'),
    ("userCount-bad-aggregate", {**VALID, "userCount": {"path": "/stats", "field": "n", "aggregate": "avg"}},
     'spec.userCount.aggregate: Unsupported value: "avg": supported values: "sum", "max"'),
    ("refresh-1s", {**VALID, "refreshIntervalSeconds": 1},
     "spec.refreshIntervalSeconds: Invalid value: 1: spec.refreshIntervalSeconds in body should be greater "
     "than or equal to 5"),
    ("negative-drain", {**VALID, "drainTimeoutSeconds": -1},
     "spec.drainTimeoutSeconds: Invalid value: -1: spec.drainTimeoutSeconds in body should be greater than "
     "or equal to 0"),
    ("drainOn-currentUsers-without-userCount", {**VALID, "drainOn": "currentUsers"},
     "spec.drainOn: Required value: drainOn: currentUsers needs spec.userCount"),
    ("drainOn-bad-figure", {**VALID, "drainOn": "requests"},
     'spec.drainOn: Unsupported value: "requests": supported values: "activeConnections", "currentUsers"'),
    ("drainOnTimeout-bad", {**VALID, "drainOnTimeout": "wait"},
     'spec.drainOnTimeout: Unsupported value: "wait": supported values: "proceed", "abort"'),
    ("stopped-without-workloadRef", {**VALID, "stopped": True},
     "spec.stopped: Required value: stopped: true needs spec.workloadRef"),
    ("empty-selector", {**VALID, "selector": {}},
     "spec.selector: Required value: selector must not be empty"),
]


@pytest.mark.parametrize(("spec", "phrase"), [(s, p) for _, s, p in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_webserver_is_rejected_with_a_readable_message(installed: Cluster, namespace: str,
                                                               spec: dict[str, Any], phrase: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WebServer", "metadata": {"name": "w"}, "spec": spec}
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(installed.api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body)
    assert err.value.status == 422, err.value.body
    assert phrase in json.loads(err.value.body)["message"]


def test_valid_webserver_gets_defaults_and_explain_docs(installed: Cluster, namespace: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WebServer", "metadata": {"name": "w"}, "spec": VALID}
    obj = client.CustomObjectsApi(installed.api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body)
    assert obj["spec"]["port"] == 80 and obj["spec"]["refreshIntervalSeconds"] == 30
    explained = " ".join(installed.kubectl("explain", "webserver.spec.userCount.aggregate").stdout.split())
    assert "max when every pod reports the same shared total" in explained, explained


@pytest.mark.parametrize("key", ["rolecall.dev/keep-running-until", "rolecall.dev/keep-stopped-until"])
def test_an_override_that_is_not_a_time_is_refused_readably(installed: Cluster, namespace: str, key: str) -> None:
    api = client.CustomObjectsApi(installed.api_client)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WebServer",
            "metadata": {"name": "w", "annotations": {key: "tomorrow"}},
            "spec": {**VALID, "workloadRef": {"kind": "Deployment", "name": "web"}}}
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert err.value.status == 422, err.value.body
    assert f"{key} must be an RFC 3339 time with an offset" in json.loads(err.value.body)["message"]
    body["metadata"]["annotations"] = {}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    for bad in ("2026-02-30T10:00:00Z", "2026-11-27 08:00"):
        with pytest.raises(ApiException) as err:
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w",
                                               {"metadata": {"annotations": {key: bad}}})
        assert err.value.status == 422 and "RFC 3339" in json.loads(err.value.body)["message"], bad
    ok = api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w",
                                            {"metadata": {"annotations": {key: "2026-11-27T08:00:00+01:00"}}})
    assert ok["metadata"]["annotations"][key] == "2026-11-27T08:00:00+01:00"
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w",
                                       {"metadata": {"annotations": {key: None}}})  # removing it ends the override
