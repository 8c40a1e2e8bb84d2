"""A user who may create rolecall resources must never make rolecall do what they could not do themselves.

alice holds rolecall-edit (create/update rolecall resources) but no pods/exec, no scale, no Secrets:
every action of every kind is denied at admission, with a message naming the missing right. bob holds
edit (which includes exec and scale): the same requests are admitted and carried out. carol holds only
rolecall-edit plus a narrow rolecall right: that action is admitted and carried out, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from harness import Cluster, bind, client_as, wait_for

GROUP, VERSION = "rolecall.dev", "v1alpha1"
EXEC_OR = "needs create on pods/exec or create on {}"
CLEAR = ("a cache clear (clear-requested-at, spec.clearedAfter, or spec.clearSchedule for every slot) "
         + EXEC_OR.format("cacheservers/clear (rolecall.dev)"))
STOP = ("stopping or starting (spec.stopped, spec.runWindows, keep-running-until or keep-stopped-until, or "
        "spec.workloadRef while stopped) needs patch on the workload's scale subresource (deployments/scale or "
        "statefulsets/scale) or create on {}/stop (rolecall.dev)")
SECRET = "spec.credentialsSecretRef (rolecall reads that Secret for you) needs get on that Secret"
COMPACT = ("a compaction (compact-requested-at, spec.compactedAfter, or spec.compactSchedule for every slot) "
           + EXEC_OR.format("databaseservers/compact (rolecall.dev)"))
RUN = ("creating (or resuming, or turning dryRun off on) a DatabaseMaintenance, which runs SQL on the database "
       + EXEC_OR.format("databasemaintenances/run (rolecall.dev)"))
CANCEL = "cancelling {} (rolecall.dev/cancel) " + EXEC_OR
FORGED = ("rolecall.dev/clear-requested-by is set by admission to the requesting user and cannot name someone "
          "else")
FORGED_GROUPS = ("rolecall.dev/clear-requested-by-groups is set by admission to the requesting user's groups and "
                 "cannot name someone else")

SEL = {"matchLabels": {"app": "x"}}
REF = {"kind": "Deployment", "name": "x"}


def _obj(kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


CACHE = {"engine": "memcached", "selector": SEL, "workloadRef": REF}
WEB = {"engine": "nginx", "selector": SEL, "workloadRef": REF}
DB = {"engine": "postgresql", "selector": SEL, "workloadRef": REF}
MAINT = {"databaseServerRef": {"name": "db"}, "operations": [{"compact": {}}]}
PLURAL = {"CacheServer": "cacheservers", "WebServer": "webservers", "DatabaseServer": "databaseservers",
          "DatabaseMaintenance": "databasemaintenances"}


@pytest.fixture
def targets(installed: Cluster, namespace: str) -> str:
    """Objects an admin made: the ones the users then try to misuse."""
    api = client.CustomObjectsApi(installed.api_client)
    for kind, name, spec in [("CacheServer", "cache", CACHE), ("CacheServer", "other", CACHE),
                             ("CacheServer", "stopped-cache", {**CACHE, "stopped": True}),
                             ("WebServer", "web", WEB), ("DatabaseServer", "db", DB),
                             ("DatabaseMaintenance", "paused", {**MAINT, "schedule": "0 3 * * *", "suspend": True}),
                             ("DatabaseMaintenance", "preview", {**MAINT, "dryRun": True})]:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[kind], _obj(kind, name, spec))
    client.CoreV1Api(installed.api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "data": {"password": "eA=="}})
    return namespace


def _create(kind: str, name: str, spec: dict[str, Any], ann: dict[str, str] | None = None) -> Callable[[Any, str], Any]:
    return lambda api, ns: api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL[kind],
                                                               _obj(kind, name, spec, ann))


def _patch(kind: str, name: str, body: dict[str, Any]) -> Callable[[Any, str], Any]:
    return lambda api, ns: api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL[kind], name, body)


def _annotate(kind: str, name: str, key: str, value: str) -> Callable[[Any, str], Any]:
    return _patch(kind, name, {"metadata": {"annotations": {key: value}}})


LATER = "2030-01-01T00:00:00Z"
# (id, who, what they try, the phrase the denial must contain)
ATTEMPTS: list[tuple[str, str, Callable[[Any, str], Any], str]] = [
    ("annotate-clear", "alice", _annotate("CacheServer", "cache", "rolecall.dev/clear-requested-at", "1"), CLEAR),
    ("patch-clearedAfter", "alice", _patch("CacheServer", "cache", {"spec": {"clearedAfter": LATER}}), CLEAR),
    ("create-with-clearedAfter", "alice", _create("CacheServer", "c2", {**CACHE, "clearedAfter": LATER}), CLEAR),
    ("patch-clearSchedule", "alice", _patch("CacheServer", "cache", {"spec": {"clearSchedule": {"cron": "0 3 * * *"}}}),
     CLEAR),
    ("create-with-clear-annotation", "alice",
     _create("CacheServer", "c3", CACHE, {"rolecall.dev/clear-requested-at": "now"}), CLEAR),
    ("stop-cache", "alice", _patch("CacheServer", "cache", {"spec": {"stopped": True}}), STOP.format("cacheservers")),
    ("create-stopped-cache", "alice", _create("CacheServer", "c4", {**CACHE, "stopped": True}),
     STOP.format("cacheservers")),
    ("start-a-stopped-cache", "alice", _patch("CacheServer", "stopped-cache", {"spec": {"stopped": False}}),
     STOP.format("cacheservers")),
    ("retarget-a-stopped-cache", "alice",
     _patch("CacheServer", "stopped-cache", {"spec": {"workloadRef": {"kind": "Deployment", "name": "prod"}}}),
     STOP.format("cacheservers")),
    ("cache-credentials-secret", "alice",
     _patch("CacheServer", "cache", {"spec": {"credentialsSecretRef": {"name": "creds"}}}), SECRET),
    ("create-cache-with-secret", "alice",
     _create("CacheServer", "c5", {**CACHE, "credentialsSecretRef": {"name": "creds"}}), SECRET),
    ("stop-web", "alice", _patch("WebServer", "web", {"spec": {"stopped": True}}), STOP.format("webservers")),
    ("create-stopped-web", "alice", _create("WebServer", "w2", {**WEB, "stopped": True}), STOP.format("webservers")),
    ("annotate-compact", "alice", _annotate("DatabaseServer", "db", "rolecall.dev/compact-requested-at", "1"),
     COMPACT),
    ("patch-compactedAfter", "alice", _patch("DatabaseServer", "db", {"spec": {"compactedAfter": LATER}}), COMPACT),
    ("patch-compactSchedule", "alice",
     _patch("DatabaseServer", "db", {"spec": {"compactSchedule": {"cron": "0 4 * * sun"}}}), COMPACT),
    ("stop-database", "alice", _patch("DatabaseServer", "db", {"spec": {"stopped": True}}),
     STOP.format("databaseservers")),
    ("database-credentials-secret", "alice",
     _create("DatabaseServer", "db2", {**DB, "credentialsSecretRef": {"name": "creds"}}), SECRET),
    ("create-maintenance", "alice", _create("DatabaseMaintenance", "m", MAINT), RUN),
    ("resume-a-suspended-maintenance", "alice", _patch("DatabaseMaintenance", "paused", {"spec": {"suspend": False}}),
     RUN),
    ("turn-dryRun-off", "alice", _patch("DatabaseMaintenance", "preview", {"spec": {"dryRun": False}}), RUN),
    ("cancel-a-maintenance-run", "alice", _annotate("DatabaseMaintenance", "paused", "rolecall.dev/cancel", "x"),
     CANCEL.format("a maintenance run", "databasemaintenances/run (rolecall.dev)")),
    ("cancel-a-clear", "alice", _annotate("CacheServer", "cache", "rolecall.dev/cancel", "x"),
     CANCEL.format("a cache clear", "cacheservers/clear (rolecall.dev)")),
    ("forge-requested-by", "alice", _annotate("CacheServer", "cache", "rolecall.dev/clear-requested-by", "bob"),
     FORGED),
    ("forge-requested-by-groups", "alice",
     _annotate("CacheServer", "cache", "rolecall.dev/clear-requested-by-groups", "system:masters"), FORGED_GROUPS),
    ("clearer-stops-the-web-tier", "carol", _patch("WebServer", "web", {"spec": {"stopped": True}}),
     STOP.format("webservers")),
    ("clearer-tries-to-stop", "carol", _patch("CacheServer", "cache", {"spec": {"stopped": True}}),
     STOP.format("cacheservers")),
    ("clearer-tries-to-compact", "carol", _annotate("DatabaseServer", "db", "rolecall.dev/compact-requested-at", "1"),
     COMPACT),
    ("clearer-tries-a-maintenance", "carol", _create("DatabaseMaintenance", "m2", MAINT), RUN),
    ("name-scoped-clearer-clears-another-cache", "dave",
     _annotate("CacheServer", "other", "rolecall.dev/clear-requested-at", "1"), CLEAR),
]


def _grant(cluster: Cluster, ns: str) -> None:
    for user in ("alice", "carol", "dave"):
        bind(cluster, ns, user, "rolecall-edit")
    bind(cluster, ns, "carol", "rolecall-cache-clearer")
    # dave may clear only the CacheServer named "cache" (a Role with resourceNames).
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    rbac.create_namespaced_role(ns, {"metadata": {"name": "clear-cache-only"}, "rules": [
        {"apiGroups": [GROUP], "resources": ["cacheservers/clear"], "resourceNames": ["cache"], "verbs": ["create"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "dave-clear-cache-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "clear-cache-only"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dave"}]})


def _wait_rbac(cluster: Cluster, ns: str, user: str) -> Any:
    api = client.CustomObjectsApi(client_as(cluster, user))
    wait_for(lambda: api.list_namespaced_custom_object(GROUP, VERSION, ns, "cacheservers") is not None,
             f"{user}'s rolecall-edit binding to take effect")
    return api


@pytest.mark.parametrize(("who", "attempt", "phrase"), [(w, a, p) for _, w, a, p in ATTEMPTS],
                         ids=[i for i, _, _, _ in ATTEMPTS])
def test_escalation_attempt_is_denied_with_the_missing_right(installed: Cluster, targets: str, who: str,
                                                             attempt: Callable[[Any, str], Any],
                                                             phrase: str) -> None:
    _grant(installed, targets)
    api = _wait_rbac(installed, targets, who)
    with pytest.raises(ApiException) as err:
        attempt(api, targets)
    assert err.value.status in (403, 422), err.value.body
    message = json.loads(err.value.body)["message"]
    assert phrase in message, message


def test_status_is_not_writable_by_people(installed: Cluster, targets: str) -> None:
    """rememberedReplicas: 1000 in status would make the next start scale to 1000: no user role grants it."""
    _grant(installed, targets)
    api = _wait_rbac(installed, targets, "alice")
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object_status(GROUP, VERSION, targets, "cacheservers", "stopped-cache",
                                                  {"status": {"rememberedReplicas": 1000}})
    assert err.value.status == 403
    assert 'cannot patch resource "cacheservers/status"' in json.loads(err.value.body)["message"]


def test_a_forged_requester_on_create_is_overwritten_with_the_real_one(installed: Cluster, targets: str) -> None:
    _grant(installed, targets)
    api = _wait_rbac(installed, targets, "carol")
    # The create asks for a clear (carol may clear): admission records its real requester over the forged one.
    forged = {"rolecall.dev/clear-requested-at": "1", "rolecall.dev/clear-requested-by": "system:admin",
              "rolecall.dev/clear-requested-by-groups": "system:masters"}
    made = _create("CacheServer", "c3", CACHE, forged)(api, targets)
    annotations = made["metadata"]["annotations"]
    assert annotations["rolecall.dev/clear-requested-by"] == "carol"
    assert "system:masters" not in annotations["rolecall.dev/clear-requested-by-groups"].split(",")
