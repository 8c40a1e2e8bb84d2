"""The admission policies shipped with rolecall, generated from one table of rights (like the CRDs).

Each action a rolecall resource can trigger is allowed when the requesting user holds either the
underlying Kubernetes right (what they could do by hand) or a narrower rolecall right checked the way
cert-manager checks signers: create on a pseudo-subresource of the rolecall resource, e.g.
cacheservers/clear. ValidatingAdmissionPolicies check both with CEL `authorizer` whenever a trigger
changes; a MutatingAdmissionPolicy records who changed a trigger (rolecall.dev/requested-by[-groups])
so the operator can repeat the check (a SubjectAccessReview) when it finally acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPERATOR_USER = "system:serviceaccount:rolecall-system:rolecall-operator"
REQUESTED_BY = "rolecall.dev/requested-by"
REQUESTED_BY_GROUPS = "rolecall.dev/requested-by-groups"
PART_OF = {"app.kubernetes.io/part-of": "rolecall"}
KINDS = {"cacheservers": "CacheServer", "webservers": "WebServer", "databaseservers": "DatabaseServer",
         "databasemaintenances": "DatabaseMaintenance"}
REQUEST_ANNOTATIONS = ("rolecall.dev/clear-requested-at", "rolecall.dev/compact-requested-at")


@dataclass(frozen=True)
class Right:
    """One way to be allowed an action: a Kubernetes authorizer check (CEL), and its words for messages."""

    group: str
    resource: str  # a CEL expression (usually a quoted literal)
    subresource: str | None
    verb: str
    name: str | None  # a CEL expression for the object name, or None for the whole namespace
    words: str

    def cel(self) -> str:
        expr = f"authorizer.group('{self.group}').resource({self.resource})"
        if self.subresource:
            expr += f".subresource('{self.subresource}')"
        expr += ".namespace(request.namespace)"
        if self.name:
            expr += f".name({self.name})"
        return expr + f".check('{self.verb}').allowed()"


EXEC = Right("", "'pods'", "exec", "create", None, "create on pods/exec")
SCALE = Right("apps", "object.spec.workloadRef.kind == 'Deployment' ? 'deployments' : 'statefulsets'", "scale",
              "patch", "object.spec.workloadRef.name",
              "patch on the workload's scale subresource (deployments/scale or statefulsets/scale)")


def _narrow(plural: str, what: str) -> Right:
    return Right("rolecall.dev", f"'{plural}'", what, "create", "object.metadata.name",
                 f"create on {plural}/{what} (rolecall.dev)")


def _ann(key: str, obj: str = "object") -> str:
    return f"(has({obj}.metadata.annotations) && '{key}' in {obj}.metadata.annotations ? " \
           f"{obj}.metadata.annotations['{key}'] : '')"


def _field_changed(field: str) -> str:
    """True on CREATE when spec.<field> is set, on UPDATE when it changed (presence or value)."""
    return (f"(request.operation == 'CREATE' ? has(object.spec.{field}) : "
            f"(has(object.spec.{field}) != has(oldObject.spec.{field}) || "
            f"(has(object.spec.{field}) && object.spec.{field} != oldObject.spec.{field})))")


def _token_changed(key: str) -> str:
    return f"(request.operation == 'CREATE' ? {_ann(key)} != '' : {_ann(key)} != {_ann(key, 'oldObject')})"


STOP_CHANGED = ("(request.operation == 'CREATE' ? object.spec.stopped == true : "
                "(object.spec.stopped != oldObject.spec.stopped || "
                f"(object.spec.stopped == true && {_field_changed('workloadRef')})))")


@dataclass(frozen=True)
class Action:
    name: str  # e.g. clear
    trigger: str  # CEL: the request asks for this action
    rights: tuple[Right, ...]  # any one suffices
    says: str  # what the user asked for, for the message

    def message(self) -> str:
        return (f"{self.says} needs " + " or ".join(r.words for r in self.rights) + " in this namespace, "
                "which the requesting user does not have")


def _stop(plural: str) -> Action:
    return Action("stop", f"has(object.spec.workloadRef) && {STOP_CHANGED}", (SCALE, _narrow(plural, "stop")),
                  "stopping or starting (spec.stopped, or spec.workloadRef while stopped)")


SECRET = Action(
    "credentials", _field_changed("credentialsSecretRef"),
    (Right("", "'secrets'", None, "get", "object.spec.credentialsSecretRef.name", "get on that Secret"),),
    "spec.credentialsSecretRef (rolecall reads that Secret for you)")

ACTIONS: dict[str, tuple[Action, ...]] = {
    "cacheservers": (
        Action("clear", f"{_token_changed(REQUEST_ANNOTATIONS[0])} || {_field_changed('clearedAfter')}",
               (EXEC, _narrow("cacheservers", "clear")), "a cache clear (clear-requested-at or spec.clearedAfter)"),
        _stop("cacheservers"), SECRET),
    "webservers": (_stop("webservers"),),
    "databaseservers": (
        Action("compact", f"{_token_changed(REQUEST_ANNOTATIONS[1])} || {_field_changed('compactedAfter')}",
               (EXEC, _narrow("databaseservers", "compact")),
               "a compaction (compact-requested-at or spec.compactedAfter)"),
        _stop("databaseservers"), SECRET),
    "databasemaintenances": (
        Action("run", "request.operation == 'CREATE' || (oldObject.spec.suspend == true && "
                      "object.spec.suspend == false)",
               (EXEC, _narrow("databasemaintenances", "run")),
               "creating (or resuming) a DatabaseMaintenance, which runs SQL on the database"),),
}


def _allowed(action: Action) -> str:
    return " || ".join(f"({r.cel()})" for r in action.rights)


NOT_OPERATOR = {"name": "not-the-rolecall-operator",
                "expression": f"request.userInfo.username != '{OPERATOR_USER}'"}


def validating_policy(plural: str) -> dict[str, Any]:
    validations = [{"expression": f"!({a.trigger}) || {_allowed(a)}", "message": a.message(),
                    "reason": "Forbidden"} for a in ACTIONS[plural]]
    # The recorded requester may only ever be the requesting user themself (the mutating policy sets it).
    validations.append({
        "expression": f"{_ann(REQUESTED_BY)} == '' || {_ann(REQUESTED_BY)} == request.userInfo.username || "
                      f"(request.operation == 'UPDATE' && {_ann(REQUESTED_BY)} == {_ann(REQUESTED_BY, 'oldObject')})",
        "message": f"{REQUESTED_BY} is set by admission to the requesting user and cannot name someone else",
        "reason": "Forbidden"})
    validations.append({
        "expression": f"{_ann(REQUESTED_BY_GROUPS)} == '' || "
                      f"{_ann(REQUESTED_BY_GROUPS)} == request.userInfo.groups.join(',') || "
                      f"(request.operation == 'UPDATE' && {_ann(REQUESTED_BY_GROUPS)} == "
                      f"{_ann(REQUESTED_BY_GROUPS, 'oldObject')})",
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
    tokens = " || ".join(_token_changed(k) for k in REQUEST_ANNOTATIONS)
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
