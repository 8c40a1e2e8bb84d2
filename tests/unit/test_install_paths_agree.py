"""The install paths agree: the chart ships the generated CRDs and the same operator RBAC as manifests/."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _rules(text: str) -> list[dict[str, list[str]]]:
    block = text[text.index("\nrules:") + 1:].split("\n---", 1)[0]
    return list(yaml.safe_load(block)["rules"])


def test_chart_rbac_rules_equal_the_manifests() -> None:
    chart = (REPO / "charts/rolecall/templates/rbac.yaml").read_text()
    assert _rules(chart) == _rules((REPO / "manifests/rbac.yaml").read_text())


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
