"""The install paths agree: the chart ships the generated CRDs and the same operator RBAC as manifests/."""

from __future__ import annotations

from pathlib import Path

import yaml

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
        assert (REPO / "charts/rolecall/crds" / crd.name).read_text() == crd.read_text(), (
            f"charts/rolecall/crds/{crd.name} is stale: run `make crds`")


def test_operator_rbac_has_no_wildcards_and_no_escalation_verbs() -> None:
    for rule in _rules((REPO / "manifests/rbac.yaml").read_text()):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not {"impersonate", "escalate", "bind", "deletecollection"} & set(rule["verbs"]), rule
        assert "customresourcedefinitions" not in rule["resources"]
        assert not any(r.endswith("webhookconfigurations") for r in rule["resources"])


def test_chart_ships_the_same_admission_policies_and_user_roles() -> None:
    assert (REPO / "charts/rolecall/files/admission-policies.yaml").read_text() == (
        REPO / "manifests/admission-policies.yaml").read_text(), "run `make crds`"
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
