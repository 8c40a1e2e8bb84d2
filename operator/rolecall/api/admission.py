"""The admission policies shipped with rolecall, generated from one table of rights (like the CRDs).

The rights table is api/rights.py. ValidatingAdmissionPolicies check both with CEL `authorizer` whenever a trigger
changes; a MutatingAdmissionPolicy records who changed a trigger (rolecall.dev/requested-by[-groups])
so the operator can repeat the check (a SubjectAccessReview) when it finally acts.
"""

from __future__ import annotations

from typing import Any

from rolecall.api.kinds import KINDS as _KINDS
from rolecall.api.rights import ACTIONS, REQUEST_ANNOTATIONS, Action, ann, token_changed

OPERATOR_USER = "system:serviceaccount:rolecall-system:rolecall-operator"
REQUESTED_BY = "rolecall.dev/requested-by"
REQUESTED_BY_GROUPS = "rolecall.dev/requested-by-groups"
PART_OF = {"app.kubernetes.io/part-of": "rolecall"}
KINDS = {k.plural: k.kind for k in _KINDS}


def _allowed(action: Action) -> str:
    return " || ".join(f"({r.cel()})" for r in action.rights)


NOT_OPERATOR = {"name": "not-the-rolecall-operator",
                "expression": f"request.userInfo.username != '{OPERATOR_USER}'"}


def validating_policy(plural: str) -> dict[str, Any]:
    validations = [{"expression": f"!({a.trigger}) || {_allowed(a)}", "message": a.message(),
                    "reason": "Forbidden"} for a in ACTIONS[plural]]
    # The recorded requester may only ever be the requesting user themself (the mutating policy sets it).
    validations.append({
        "expression": f"{ann(REQUESTED_BY)} == '' || {ann(REQUESTED_BY)} == request.userInfo.username || "
                      f"(request.operation == 'UPDATE' && {ann(REQUESTED_BY)} == {ann(REQUESTED_BY, 'oldObject')})",
        "message": f"{REQUESTED_BY} is set by admission to the requesting user and cannot name someone else",
        "reason": "Forbidden"})
    validations.append({
        "expression": f"{ann(REQUESTED_BY_GROUPS)} == '' || "
                      f"{ann(REQUESTED_BY_GROUPS)} == request.userInfo.groups.join(',') || "
                      f"(request.operation == 'UPDATE' && {ann(REQUESTED_BY_GROUPS)} == "
                      f"{ann(REQUESTED_BY_GROUPS, 'oldObject')})",
        "message": f"{REQUESTED_BY_GROUPS} is set by admission to the requesting user's groups",
        "reason": "Forbidden"})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": f"rolecall-{plural}", "labels": PART_OF},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["rolecall.dev"], "apiVersions": ["*"],
                                                    "operations": ["CREATE", "UPDATE"], "resources": [plural]}]},
            "matchConditions": [NOT_OPERATOR],
            "validations": validations,
        },
    }


def validating_binding(plural: str) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": f"rolecall-{plural}", "labels": PART_OF},
            "spec": {"policyName": f"rolecall-{plural}", "validationActions": ["Deny"]}}


def _any_trigger_changed() -> str:
    tokens = " || ".join(token_changed(k) for k in REQUEST_ANNOTATIONS)
    return f"request.operation == 'CREATE' || object.spec != oldObject.spec || {tokens}"


def mutating_policy() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "rolecall-record-requester", "labels": PART_OF},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["rolecall.dev"], "apiVersions": ["*"],
                                                    "operations": ["CREATE", "UPDATE"],
                                                    "resources": sorted(KINDS)}]},
            "matchConditions": [NOT_OPERATOR, {"name": "a-trigger-changed", "expression": _any_trigger_changed()}],
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": (
                "Object{metadata: Object.metadata{annotations: {"
                f"'{REQUESTED_BY}': request.userInfo.username, "
                f"'{REQUESTED_BY_GROUPS}': request.userInfo.groups.join(',')}}}}}}")}}],
        },
    }


def mutating_binding() -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": "rolecall-record-requester", "labels": PART_OF},
            "spec": {"policyName": "rolecall-record-requester"}}


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [mutating_policy(), mutating_binding()]
    for plural in KINDS:
        docs += [validating_policy(plural), validating_binding(plural)]
    return docs


POLICY_NAMES = {"validatingadmissionpolicies": [f"rolecall-{p}" for p in KINDS],
                "mutatingadmissionpolicies": ["rolecall-record-requester"]}
