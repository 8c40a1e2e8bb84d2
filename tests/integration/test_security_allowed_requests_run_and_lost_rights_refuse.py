"""Requests by users who hold the underlying right, or only the narrow rolecall right, are admitted and
carried out; a request whose requester lost the right before it ran is refused at run time; without the
admission policies the operator refuses to act at all (fail closed)."""

from __future__ import annotations

import datetime as dt

import yaml
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    GROUP,
    VERSION,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    create_deployment,
    events,
    memcached_deployment,
    status,
    wait_handled,
)
from dbkit import MAINTENANCES, SERVERS, create, sqlite_app, sqlite_server, status_of
from harness import REPO, Cluster, Operator, bind, client_as, deployment, running_pods, unbind, wait_for

CLEAR = "rolecall.dev/clear-requested-at"


def _as(cluster: Cluster, user: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(client_as(cluster, user))



def test_underlying_and_narrow_rights_are_admitted_and_carried_out(local_bed: Cluster, namespace: str,
                                                                   operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace)
    bind(local_bed, namespace, "bob", "edit")  # edit includes pods/exec and deployments/scale
    for user, narrow in (("carol", "rolecall-cache-clearer"), ("dave", "rolecall-stopper")):
        bind(local_bed, namespace, user, "rolecall-edit")
        bind(local_bed, namespace, user, narrow)
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"},
                                                workloadRef={"kind": "Deployment", "name": "mc"}))
    for n, user in enumerate(("bob", "carol"), start=1):
        api = _as(local_bed, user)
        wait_for(lambda api=api, user=user: api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "cacheservers", "mc", {"metadata": {"annotations": {CLEAR: user}}}),
            f"{user}'s clear to be admitted")
        st = wait_handled(local_bed, namespace, "mc", user)
        assert condition(st, "Cleared")["status"] == "True", st
        assert [cmd_flush(ip) for ip in ips] == [n, n], f"{user}'s clear must flush every pod once"
    annotations = _as(local_bed, "carol").get_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers",
                                                                       "mc")["metadata"]["annotations"]
    assert annotations["rolecall.dev/clear-requested-by"] == "carol"

    dave = _as(local_bed, "dave")  # rolecall-stopper only: no scale right on the Deployment
    dave.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers", "mc", {"spec": {"stopped": True}})
    wait_for(lambda: status(local_bed, namespace, "mc").get("phase") == "Stopped", "dave's stop carried out")
    dave.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers", "mc", {"spec": {"stopped": False}})
    running_pods(local_bed, namespace, "app=mc", 2)


def test_a_requester_who_lost_the_right_is_refused_when_the_request_comes_due(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace)
    bind(local_bed, namespace, "dave", "rolecall-edit")
    bind(local_bed, namespace, "dave", "rolecall-cache-clearer")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).isoformat(timespec="seconds").replace("+00:00", "Z")
    api = _as(local_bed, "dave")
    wait_for(lambda: api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers", "mc",
                                                        {"spec": {"clearedAfter": due}}), "dave's request admitted")
    unbind(local_bed, namespace, "dave", "rolecall-cache-clearer")  # dave loses the right before it is due
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("conditions") and
                  condition(s, "Cleared").get("reason") == "RequesterNotAllowed" and s, "the run-time refusal", 30)
    message = condition(st, "Cleared")["message"]
    assert message.startswith("dave: a cache clear") and "checked again just before acting" in message, message
    assert [cmd_flush(ip) for ip in ips] == [0, 0], "nothing may be flushed for a refused request"
    wait_for(lambda: "RequesterNotAllowed" in [e.reason for e in events(local_bed, namespace, "mc")], "the Event")


def test_a_scheduled_maintenance_whose_requester_lost_the_right_fails_with_the_reason(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    path = sqlite_app(local_bed, namespace)
    bind(local_bed, namespace, "carol", "rolecall-edit")
    bind(local_bed, namespace, "carol", "rolecall-database-maintainer")
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseMaintenance", "metadata": {"name": "m"},
            "spec": {"databaseServerRef": {"name": "db"}, "operations": [{"compact": {}}],
                     "schedule": "* * * * * */2"}}
    api = _as(local_bed, "carol")
    wait_for(lambda: api.create_namespaced_custom_object(GROUP, VERSION, namespace, MAINTENANCES, body),
             "carol's maintenance admitted (narrow right only)")
    wait_for(lambda: any(r["outcome"] == "Succeeded" for r in
                         status_of(local_bed, namespace, MAINTENANCES, "m").get("history") or []),
             "a run carried out on carol's narrow right", 30)
    unbind(local_bed, namespace, "carol", "rolecall-database-maintainer")
    st = wait_for(lambda: (s := status_of(local_bed, namespace, MAINTENANCES, "m")).get("history") and
                  s["history"][0]["outcome"] == "Refused" and s, "a later run refused", 30)
    assert st["lastRequest"]["reason"] == "RequesterNotAllowed", st["lastRequest"]
    assert ("carol: creating (or resuming, or turning dryRun off on) a DatabaseMaintenance"
            in st["lastRequest"]["message"]), st["lastRequest"]


def test_without_the_admission_policies_the_operator_refuses_to_act(local_bed: Cluster, namespace: str,
                                                                    operator: Operator) -> None:
    ips = memcached_deployment(local_bed, namespace)
    admission = client.AdmissionregistrationV1Api(local_bed.api_client)
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    admission.delete_validating_admission_policy_binding("rolecall-cacheservers")
    try:
        operator.start()
        patch = {"metadata": {"annotations": {CLEAR: "unchecked"}}}
        client.CustomObjectsApi(local_bed.api_client).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "cacheservers", "mc", patch)
        st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("conditions") and
                      condition(s, "Cleared").get("reason") == "AdmissionPoliciesMissing" and s, "fail closed", 30)
        assert "validatingadmissionpolicybindings/rolecall-cacheservers" in condition(st, "Cleared")["message"]
        assert [cmd_flush(ip) for ip in ips] == [0, 0]
        assert "refusing to act" in operator.logs()
    finally:
        docs = yaml.safe_load_all((REPO / "manifests" / "admission-policies.yaml").read_text())
        binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"
                       and d["metadata"]["name"] == "rolecall-cacheservers")
        admission.create_validating_admission_policy_binding(binding)


def test_narrow_rights_carry_out_a_compaction_and_a_web_stop(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    path = sqlite_app(local_bed, namespace)
    create_deployment(local_bed, namespace, deployment("web", "nginx", 1))
    running_pods(local_bed, namespace, "app=web", 1)
    bind(local_bed, namespace, "carol", "rolecall-edit")
    bind(local_bed, namespace, "carol", "rolecall-database-maintainer")
    bind(local_bed, namespace, "dave", "rolecall-edit")
    bind(local_bed, namespace, "dave", "rolecall-stopper")
    operator.start()
    create(local_bed, namespace, SERVERS, sqlite_server("db", {"app": "app"}, str(path)))
    create(local_bed, namespace, "webservers", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "WebServer", "metadata": {"name": "web"},
        "spec": {"engine": "nginx", "selector": {"matchLabels": {"app": "web"}},
                 "workloadRef": {"kind": "Deployment", "name": "web"}}})

    carol = _as(local_bed, "carol")  # databaseservers/compact only: no exec
    wait_for(lambda: carol.patch_namespaced_custom_object(GROUP, VERSION, namespace, SERVERS, "db", {
        "metadata": {"annotations": {"rolecall.dev/compact-requested-at": "carol"}}}), "carol's compaction admitted")
    st = wait_for(lambda: (s := status_of(local_bed, namespace, SERVERS, "db")).get("lastHandledCompactRequest")
                  == "carol" and s, "carol's compaction carried out")
    assert st["lastCompaction"]["phase"] == "Succeeded", st["lastCompaction"]

    dave = _as(local_bed, "dave")  # webservers/stop only: no scale right
    wait_for(lambda: dave.patch_namespaced_custom_object(GROUP, VERSION, namespace, "webservers", "web",
                                                         {"spec": {"stopped": True}}), "dave's web stop admitted")
    wait_for(lambda: status_of(local_bed, namespace, "webservers", "web").get("phase") == "Stopped",
             "dave's web stop carried out")
    apps = client.AppsV1Api(local_bed.api_client)
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 0


def test_the_requester_is_recorded_per_trigger_not_per_edit(local_bed: Cluster, namespace: str,
                                                             operator: Operator) -> None:
    """carol (narrow clear right) asks for a future clear; alice (rolecall-edit only: no clear right) then
    edits another field. The clear stays carol's: it runs, judged by carol's rights, not alice's."""
    ips = memcached_deployment(local_bed, namespace)
    bind(local_bed, namespace, "carol", "rolecall-edit")
    bind(local_bed, namespace, "carol", "rolecall-cache-clearer")
    bind(local_bed, namespace, "alice", "rolecall-edit")
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", {"app": "mc"}))
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat(timespec="seconds").replace("+00:00", "Z")
    carol, alice = _as(local_bed, "carol"), _as(local_bed, "alice")
    wait_for(lambda: carol.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers", "mc",
                                                          {"spec": {"clearedAfter": due}}), "carol's clear admitted")
    wait_for(lambda: alice.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers", "mc",
                                                          {"spec": {"statsIntervalSeconds": 120}}), "alice's edit")
    annotations = carol.get_namespaced_custom_object(GROUP, VERSION, namespace, "cacheservers",
                                                     "mc")["metadata"]["annotations"]
    assert annotations["rolecall.dev/clear-requested-by"] == "carol", annotations
    st = wait_for(lambda: (s := status(local_bed, namespace, "mc")).get("lastClearedAt") and s, "the clear", 30)
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["lastRequest"]["requestedAfter"] == due, st
    assert [cmd_flush(ip) for ip in ips] == [1, 1]
