"""The install paths agree: the chart ships the generated CRDs and the same operator RBAC as manifests/."""

from __future__ import annotations

from pathlib import Path

import yaml

from rolecall.api.crdgen import render_chart_files

REPO = Path(__file__).resolve().parents[2]


def _role_rules(text: str) -> dict[str, list[dict[str, list[str]]]]:
    """Each ClusterRole's rules, read from the text (the chart's template is not YAML until rendered)."""
    out = {}
    for doc in text.split("\n---\n"):
        if "\nkind: ClusterRole\n" in f"\n{doc}\n" and "\nrules:" in doc:
            name = doc.split("\n  name: ", 1)[1].split("\n", 1)[0].strip()
            out[name] = list(yaml.safe_load(doc[doc.index("\nrules:") + 1:])["rules"])
    return out


def _rules(text: str) -> list[dict[str, list[str]]]:
    return [rule for rules in _role_rules(text).values() for rule in rules]


def test_chart_rbac_rules_equal_the_manifests() -> None:
    chart = _role_rules((REPO / "charts/rolecall/templates/rbac.yaml").read_text())
    plain = _role_rules((REPO / "manifests/rbac.yaml").read_text())
    assert set(plain) == {"rolecall-operator", "rolecall-operator-cluster"}
    assert chart == plain


def test_namespaced_role_holds_no_cluster_scoped_resources() -> None:
    """RoleBindings (namespaced mode) cannot grant cluster-scoped resources: those live in -cluster."""
    plain = _role_rules((REPO / "manifests/rbac.yaml").read_text())
    cluster_scoped = {"nodes", "subjectaccessreviews", "validatingadmissionpolicies", "mutatingadmissionpolicies",
                      "validatingadmissionpolicybindings", "mutatingadmissionpolicybindings"}
    assert not cluster_scoped & {r for rule in plain["rolecall-operator"] for r in rule["resources"]}
    assert {r for rule in plain["rolecall-operator-cluster"] for r in rule["resources"]} == cluster_scoped


def test_chart_crds_are_the_generated_ones() -> None:
    for crd in (REPO / "crds").glob("*.rolecall.dev.yaml"):
        assert (REPO / "charts/rolecall/files/crds" / crd.name).read_text() == crd.read_text(), (
            f"charts/rolecall/files/crds/{crd.name} is stale: run `make crds`")


def test_operator_rbac_has_no_wildcards_and_no_escalation_verbs() -> None:
    for rule in _rules((REPO / "manifests/rbac.yaml").read_text()):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not {"impersonate", "escalate", "bind", "deletecollection"} & set(rule["verbs"]), rule
        assert "customresourcedefinitions" not in rule["resources"]
        assert not any(r.endswith("webhookconfigurations") for r in rule["resources"])


def test_chart_ships_the_same_admission_policies_and_user_roles() -> None:
    for name, text in render_chart_files().items():
        assert (REPO / "charts/rolecall/files" / name).read_text() == text, f"files/{name} is stale: run `make crds`"
    assert not (REPO / "charts/rolecall/files/admission-policies.yaml").exists(), "split into the files above"
    assert (REPO / "charts/rolecall/templates/user-roles.yaml").read_text() == (
        REPO / "manifests/user-roles.yaml").read_text(), "run `make crds`"


def test_roles_for_people_never_grant_status_or_escalation() -> None:
    for doc in yaml.safe_load_all((REPO / "manifests/user-roles.yaml").read_text()):
        for rule in doc["rules"]:
            assert not any(r.endswith("/status") for r in rule["resources"]), (doc["metadata"]["name"], rule)
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    names = ("rolecall-cache-clearer", "rolecall-stopper", "rolecall-database-maintainer")
    narrow = [d for d in yaml.safe_load_all((REPO / "manifests/user-roles.yaml").read_text())
              if d["metadata"]["name"] in names]
    for doc in narrow:  # delegated on purpose, never by aggregation into edit/admin
        assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in doc["metadata"]["labels"])


# Every (apiGroup, resource, verb) the operator may use, and why. A grant that is not here fails the test
# (an extra verb); a verb the code needs and lacks fails the integration tests (they run with this RBAC).
OPERATOR_NEEDS = {
    **{("rolecall.dev", r, v): "watch its resources" for r in (
        "cacheservers", "webservers", "databaseservers", "databasemaintenances") for v in ("get", "list", "watch")},
    ("rolecall.dev", "databasemaintenances", "delete"): "ttlSecondsAfterFinished",
    **{("rolecall.dev", f"{r}/status", v): "status is its only write" for r in (
        "cacheservers", "webservers", "databaseservers", "databasemaintenances") for v in ("get", "patch")},
    ("", "pods", "list"): "fill the pod index", ("", "pods", "watch"): "keep the pod index current",
    ("", "pods/exec", "get"): "sqlite3 (websocket GET)", ("", "pods/exec", "create"): "sqlite3 (upgrade)",
    **{("apps", r, v): "stop/start and the remembered count" for r in (
        "deployments", "statefulsets", "deployments/scale", "statefulsets/scale") for v in ("get", "patch")},
    ("", "secrets", "get"): "credentialsSecretRef", ("", "events", "create"): "Events",
    **{("coordination.k8s.io", "leases", v): "one active operator" for v in ("get", "create", "update", "patch")},
    ("authorization.k8s.io", "subjectaccessreviews", "create"): "run-time requester check",
    **{("admissionregistration.k8s.io", r, "get"): "fail closed without the policies" for r in (
        "validatingadmissionpolicies", "validatingadmissionpolicybindings", "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings")},
    ("", "nodes", "list"): "spec.nodeSelector",
}


def test_operator_rbac_grants_exactly_what_it_needs() -> None:
    granted = {(g, r, v) for rule in _rules((REPO / "manifests/rbac.yaml").read_text())
               for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted - OPERATOR_NEEDS.keys() == set(), "extra rights granted"
    assert OPERATOR_NEEDS.keys() - granted == set(), "rights listed as needed but not granted"
