"""The admission policies shipped with rolecall, generated from one table of rights (like the CRDs).

The rights table is api/rights.py. ValidatingAdmissionPolicies check both with CEL `authorizer` whenever a trigger
changes; a MutatingAdmissionPolicy per kind records, per action, who changed that action's trigger
(rolecall.dev/<action>-requested-by[-groups], e.g. clear-requested-by) so the operator can repeat the
check (a SubjectAccessReview) for that person when it finally acts. The mutation is a JSON patch: unlike
an apply configuration, it does not convert the object to its typed form first, so a malformed field
(clearedAfter: 12) gets the schema's own message instead of a conversion error.
"""

from __future__ import annotations

from typing import Any

from rolecall.api.kinds import KINDS as _KINDS
from rolecall.api.rights import ACTIONS, Action, ann
from rolecall.api.types import RFC3339_PATTERN
from rolecall.api.v1alpha1.common import OVERRIDE_RUNNING, OVERRIDE_STOPPED

OPERATOR_USER = "system:serviceaccount:rolecall-system:rolecall-operator"
PART_OF = {"app.kubernetes.io/part-of": "rolecall"}
KINDS = {k.plural: k.kind for k in _KINDS}


def _allowed(action: Action) -> str:
    return " || ".join(f"({r.cel()})" for r in action.rights)


NOT_OPERATOR = {"name": "not-the-rolecall-operator",
                "expression": f"request.userInfo.username != '{OPERATOR_USER}'"}


def validating_policy(plural: str) -> dict[str, Any]:
    validations = [{"expression": f"!({a.trigger}) || {_allowed(a)}", "message": a.message(),
                    "reason": "Forbidden"} for a in ACTIONS[plural]]
    if any(a.name == "stop" for a in ACTIONS[plural]):  # a role that can hibernate takes the two overrides
        validations += [_override_is_a_time(OVERRIDE_RUNNING), _override_is_a_time(OVERRIDE_STOPPED)]
    # A recorded requester may only ever be the requesting user themself (the mutating policy sets it).
    for a in _recorded(plural):
        validations += [_only_admission_writes(a.requested_by, "request.userInfo.username", "the requesting user"),
                        _only_admission_writes(a.requested_by_groups, "request.userInfo.groups.join(',')",
                                               "the requesting user's groups")]
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


def _recorded(plural: str) -> list[Action]:
    return [a for a in ACTIONS[plural] if a.has_requester]


def _only_admission_writes(key: str, value: str, words: str) -> dict[str, str]:
    return {"expression": f"{ann(key)} == '' || {ann(key)} == {value} || "
                          f"(request.operation == 'UPDATE' && {ann(key)} == {ann(key, 'oldObject')})",
            "message": f"{key} is set by admission to {words} and cannot name someone else",
            "reason": "Forbidden"}


def _override_is_a_time(key: str) -> dict[str, str]:
    """An override the operator could not read would be ignored (and reported) at run time: refuse it here.
    Only a changed value is checked, so an object admitted before this policy can still be edited."""
    pattern = RFC3339_PATTERN.replace("\\", "\\\\")  # a CEL string literal unescapes once
    unchanged = f"(request.operation == 'UPDATE' && {ann(key)} == {ann(key, 'oldObject')})"
    return {"expression": f"{ann(key)} == '' || {unchanged} || {ann(key)}.matches('{pattern}')",
            "message": f"{key} must be an RFC 3339 time with an offset until which the override holds, e.g. "
                       "2026-11-27T08:00:00Z (on a date that exists)",
            "reason": "Invalid"}


def _pointer(key: str) -> str:
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def mutating_policy(plural: str) -> dict[str, Any]:
    """Records, for each action whose trigger this request changes, who asked (a JSON patch)."""
    actions = _recorded(plural)
    parts = ["(has(object.metadata.annotations) ? [] : "
             "[JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}])"]
    for a in actions:
        parts.append(f"({a.trigger} ? ["
                     f"JSONPatch{{op: 'add', path: '{_pointer(a.requested_by)}', value: request.userInfo.username}}, "
                     f"JSONPatch{{op: 'add', path: '{_pointer(a.requested_by_groups)}', "
                     "value: request.userInfo.groups.join(',')}] : [])")
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": f"rolecall-{plural}-requester", "labels": PART_OF},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["rolecall.dev"], "apiVersions": ["*"],
                                                    "operations": ["CREATE", "UPDATE"], "resources": [plural]}]},
            "matchConditions": [NOT_OPERATOR, {"name": "a-trigger-changed",
                                               "expression": " || ".join(f"({a.trigger})" for a in actions)}],
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": " +\n".join(parts)}}],
        },
    }


def mutating_binding(plural: str) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": f"rolecall-{plural}-requester", "labels": PART_OF},
            "spec": {"policyName": f"rolecall-{plural}-requester"}}


def documents(mutating: bool = True, validating: bool = True) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for plural in KINDS:
        if mutating:
            docs += [mutating_policy(plural), mutating_binding(plural)]
        if validating:
            docs += [validating_policy(plural), validating_binding(plural)]
    return docs


# Where MutatingAdmissionPolicy v1 is not served (Kubernetes 1.34 and 1.35), a mutating webhook served by the
# operator records requesters instead. One webhook per recorded action, whose matchConditions are that
# action's trigger: the apiserver evaluates the same CEL as the policy, and the webhook only names the user.
REQUESTER_WEBHOOKS = "rolecall-requester"  # the MutatingWebhookConfiguration
WEBHOOK_TIMEOUT_SECONDS = 10


def requester_webhook_id(plural: str, action: str) -> str:
    """The operator's handler id and the webhook's URL path (without the leading slash)."""
    return f"requester-{plural}-{action}"


def requester_webhooks() -> list[dict[str, Any]]:
    """The webhooks of the MutatingWebhookConfiguration, without their clientConfig (the install adds it).

    failurePolicy Fail: while no operator serves, a change that requests an action is refused with the
    apiserver's "failed calling webhook" message (nothing could act on it anyway); every other change, and
    every change the operator makes itself, is not sent to the webhook at all (matchConditions)."""
    return [{
        "name": f"{a.name}.{plural}.requester.rolecall.dev",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
        "rules": [{"apiGroups": ["rolecall.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                   "resources": [plural], "scope": "Namespaced"}],
        "matchConditions": [dict(NOT_OPERATOR), {"name": "a-trigger-changed", "expression": a.trigger}],
        "path": "/" + requester_webhook_id(plural, a.name),
    } for plural in KINDS for a in _recorded(plural)]


def requester_webhook_configuration(url: str, ca_bundle: str = "") -> dict[str, Any]:
    """The whole MutatingWebhookConfiguration with `url` clientConfigs (the test bed, an operator outside the
    cluster); the chart renders it with a Service reference instead."""
    webhooks = []
    for hook in requester_webhooks():
        path = hook.pop("path")
        hook["clientConfig"] = {"url": url.rstrip("/") + path, **({"caBundle": ca_bundle} if ca_bundle else {})}
        webhooks.append(hook)
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": REQUESTER_WEBHOOKS, "labels": PART_OF}, "webhooks": webhooks}


POLICY_NAMES = {"validatingadmissionpolicies": [f"rolecall-{p}" for p in KINDS],
                "mutatingadmissionpolicies": [f"rolecall-{p}-requester" for p in KINDS]}
# In webhook mode the requesters are recorded by the webhook configuration instead of the mutating policies.
WEBHOOK_MODE_NAMES = {"validatingadmissionpolicies": POLICY_NAMES["validatingadmissionpolicies"],
                      "mutatingwebhookconfigurations": [REQUESTER_WEBHOOKS]}
