"""Run-time guard: before acting, the recorded requester must still hold the right to what they asked for.

Admission (manifests/admission-policies.yaml) checks rights when a request is made and records who made
it, per action (rolecall.dev/<action>-requested-by[-groups]); the request core copies that into the run's
ledger when it accepts the request. A request may run much later (a future clearedAfter, a
schedule, a retry), so the operator asks the API server again, with a SubjectAccessReview for that user
and their groups, just before it acts: the same alternatives admission accepts (the underlying
Kubernetes right, or the narrow rolecall right); an allowed answer is reused for ALLOWED_SECONDS, a refusal
never. It also refuses to act at all when the admission
policies are missing from the cluster (fail closed) unless started with --allow-without-admission-policies.
Under GitOps the requester is the GitOps controller's account, and its rights are what count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from rolecall import kube, metrics
from rolecall.api.admission import POLICY_NAMES, WEBHOOK_MODE_NAMES
from rolecall.api.rights import ACTIONS

log = logging.getLogger(__name__)
POLICY_CHECK_SECONDS = 60.0
# Set by main from --allow-without-admission-policies (or ROLECALL_ALLOW_WITHOUT_POLICIES=1).
allow_without_policies = os.environ.get("ROLECALL_ALLOW_WITHOUT_POLICIES") == "1"
# Set by main from --admission-mode: "policy" (MutatingAdmissionPolicy records requesters) or "webhook" (the
# operator's own mutating webhook does, where that policy API is not served).
admission_mode = "policy"
_policies: dict[str, Any] = {"checked_at": -1e9, "missing": []}


@dataclass(frozen=True)
class Attributes:
    group: str
    resource: str
    subresource: str | None
    verb: str
    name: str | None

    def sar(self, namespace: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {"group": self.group, "resource": self.resource, "verb": self.verb,
                                 "namespace": namespace}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if self.name:
            attrs["name"] = self.name
        return attrs


def _alternatives(plural: str, action: str, obj: dict[str, Any]) -> list[Attributes]:
    """What admission's CEL checks for `action`, evaluated for this object (same order, same meaning)."""
    name, spec = obj["metadata"]["name"], obj.get("spec") or {}
    exec_ = Attributes("", "pods", "exec", "create", None)
    narrow = Attributes("rolecall.dev", plural, action, "create", name)
    if action in ("clear", "compact", "run"):
        return [exec_, narrow]
    if action == "stop":
        ref = spec.get("workloadRef") or {}
        resource = "deployments" if ref.get("kind") == "Deployment" else "statefulsets"
        return [Attributes("apps", resource, "scale", "patch", ref.get("name")), narrow]
    if action == "credentials":
        secret = (spec.get("credentialsSecretRef") or {}).get("name")
        return [Attributes("", "secrets", None, "get", secret)]
    raise ValueError(f"unknown action {action}")


def _message(plural: str, action: str) -> str:
    return next(a.message() for a in ACTIONS[plural] if a.name == action)


# An allowed answer is reused this long for the same user, groups and attributes (100 requests by one GitOps
# account in a burst cost one review, not 100); a refusal is never reused. The apiserver's own webhook
# authorizer keeps allowed answers for 5 minutes by default; RBAC itself answers from informer caches.
ALLOWED_SECONDS = float(os.environ.get("ROLECALL_ALLOWED_CACHE_SECONDS", "5"))
_allowed_until: dict[tuple[str, tuple[str, ...], str, Attributes], float] = {}


async def _allowed(user: str, groups: list[str], namespace: str, attrs: Attributes) -> bool:
    key = (user, tuple(groups), namespace, attrs)
    now = time.monotonic()
    if _allowed_until.get(key, 0.0) > now:
        return True
    body = {"spec": {"user": user, "groups": groups, "resourceAttributes": attrs.sar(namespace)}}
    metrics.api("create", "subjectaccessreviews")
    raw = await asyncio.to_thread(lambda: kube.authorization().create_subject_access_review(
        body, _preload_content=False).data)  # only status.allowed is read: no model built
    allowed = bool((json.loads(raw).get("status") or {}).get("allowed"))
    if len(_allowed_until) > 10_000:  # many distinct requesters: forget the expired ones
        for k in [k for k, until in _allowed_until.items() if until <= now]:
            del _allowed_until[k]
    if allowed:
        _allowed_until[key] = now + ALLOWED_SECONDS
    else:
        _allowed_until.pop(key, None)
    return allowed


@dataclass(frozen=True)
class Requester:
    user: str
    groups: tuple[str, ...] = ()


def requester_of(obj: dict[str, Any], plural: str, action: str) -> Requester | None:
    """Who asked for `action`, as admission recorded it for that action's trigger."""
    recorded = next(a for a in ACTIONS[plural] if a.name == action)
    annotations = obj["metadata"].get("annotations") or {}
    user = annotations.get(recorded.requested_by)
    if not user:
        return None
    return Requester(user, tuple(g for g in annotations.get(recorded.requested_by_groups, "").split(",") if g))


async def refusal(plural: str, obj: dict[str, Any], requester: Requester | None,
                  *actions: str) -> tuple[str, str] | None:
    """(reason, message) when `requester` may not do one of `actions` now; None when allowed."""
    missing = await _missing_policies()
    if missing:
        return ("AdmissionPoliciesMissing",
                f"rolecall's admission policies are missing from the cluster ({', '.join(missing)}): refusing to "
                "act, since requests were not checked (install them with the chart or manifests/, or start the "
                "operator with --allow-without-admission-policies)")
    if requester is None:
        if allow_without_policies:
            return None
        return ("NoRecordedRequester",
                f"no requester recorded for {', '.join(actions)}: the request was made before rolecall's admission "
                "policies were installed (or by the operator itself); re-apply it to record who asks")
    ns = obj["metadata"]["namespace"]
    for action in actions:
        if not await _any_allowed(requester.user, list(requester.groups), ns, _alternatives(plural, action, obj)):
            return ("RequesterNotAllowed",
                    f"{requester.user}: {_message(plural, action)} (checked again just before acting)")
    return None


async def _any_allowed(user: str, groups: list[str], namespace: str, alternatives: list[Attributes]) -> bool:
    for attrs in alternatives:  # in order, stopping at the first allowed: usually one review per action
        if await _allowed(user, groups, namespace, attrs):
            return True
    return False


async def _missing_policies() -> list[str]:
    if allow_without_policies:
        return []
    if time.monotonic() - _policies["checked_at"] < POLICY_CHECK_SECONDS:
        return list(_policies["missing"])
    missing = []
    for kind, names in (WEBHOOK_MODE_NAMES if admission_mode == "webhook" else POLICY_NAMES).items():
        for name in names:
            pair = (kind,) if kind.endswith("configurations") else (kind, kind.replace("policies", "policybindings"))
            for resource in pair:
                metrics.api("get", resource)
                if not await asyncio.to_thread(kube.admission_object_exists, resource, name):
                    missing.append(f"{resource}/{name}")
    if missing:
        log.error("rolecall admission policies missing: %s; refusing to act", ", ".join(missing))
    _policies.update(checked_at=time.monotonic(), missing=missing)
    return missing
