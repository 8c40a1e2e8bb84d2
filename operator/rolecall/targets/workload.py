"""Stop and start a workload through its scale subresource, remembering the replica count on it.

The remembered count is kept both in the role's status and as an annotation on the workload (as KEDA's
paused-replicas does), so it survives the role resource being deleted and re-created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

from rolecall import kube, metrics
from rolecall.api.types import WorkloadRef

REMEMBERED = "rolecall.dev/remembered-replicas"
STOPPED_BY = "rolecall.dev/stopped-by"
# Our name in managedFields: who set spec.replicas last tells a stop undone by GitOps from our own scale.
FIELD_MANAGER = "rolecall-operator"


@dataclass(frozen=True)
class WorkloadState:
    replicas: int
    ready: int
    remembered: int | None
    controller: str | None  # "Kind/name" of a controller owning the workload, if any
    stopped_by: str | None = None  # the rolecall resource that stopped it (annotation), if any
    pre_stop: bool = True  # every container of its pod template has a preStop hook
    grace_seconds: int = 30  # the pod template's terminationGracePeriodSeconds
    replicas_manager: str | None = None  # the field manager that set spec.replicas last (managedFields)


class WorkloadError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _plural(ref: WorkloadRef) -> str:
    return "deployments" if ref.kind == "Deployment" else "statefulsets"


async def read(namespace: str, ref: WorkloadRef) -> WorkloadState:
    api = kube.apps()
    get = api.read_namespaced_deployment if ref.kind == "Deployment" else api.read_namespaced_stateful_set
    metrics.api("get", _plural(ref))
    try:
        w = await asyncio.to_thread(get, ref.name, namespace)
    except kube.ApiException as e:
        if e.status == 404:
            raise WorkloadError("WorkloadNotFound", f"{ref.kind} {ref.name} not found in {namespace}") from e
        raise
    owner = next((o for o in (w.metadata.owner_references or []) if o.controller), None)
    annotations = w.metadata.annotations or {}
    remembered = annotations.get(REMEMBERED)
    pod_spec = w.spec.template.spec
    grace = pod_spec.termination_grace_period_seconds
    return WorkloadState(
        pre_stop=all(c.lifecycle is not None and c.lifecycle.pre_stop is not None for c in pod_spec.containers),
        grace_seconds=30 if grace is None else int(grace),
        replicas=w.spec.replicas if w.spec.replicas is not None else 1,
        ready=w.status.ready_replicas or 0,
        remembered=int(remembered) if remembered and remembered.isdigit() else None,
        stopped_by=annotations.get(STOPPED_BY),
        controller=f"{owner.kind}/{owner.name}" if owner else None,
        replicas_manager=_replicas_manager(w.metadata.managed_fields or []),
    )


def _replicas_manager(entries: list[Any]) -> str | None:
    """The manager owning spec.replicas (server-side apply and updates both move ownership to the last
    writer); the newest entry if several share it."""
    owners = [e for e in entries if "f:replicas" in ((e.fields_v1 or {}).get("f:spec") or {})]
    newest = max(owners, key=lambda e: e.time or dt.datetime.min.replace(tzinfo=dt.UTC), default=None)
    return str(newest.manager) if newest is not None and newest.manager else None


async def annotate(namespace: str, ref: WorkloadRef, remembered: int | None, by: str | None) -> None:
    api = kube.apps()
    patch = api.patch_namespaced_deployment if ref.kind == "Deployment" else api.patch_namespaced_stateful_set
    body = {"metadata": {"annotations": {REMEMBERED: None if remembered is None else str(remembered),
                                         STOPPED_BY: by}}}
    metrics.api("patch", _plural(ref))
    await asyncio.to_thread(patch, ref.name, namespace, body, field_manager=FIELD_MANAGER)


async def scale(namespace: str, ref: WorkloadRef, replicas: int) -> None:
    api = kube.apps()
    patch = (api.patch_namespaced_deployment_scale if ref.kind == "Deployment"
             else api.patch_namespaced_stateful_set_scale)
    metrics.api("patch", f"{_plural(ref)}/scale")
    await asyncio.to_thread(patch, ref.name, namespace, {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER)
