"""Kubernetes Events for people: one when an action starts, one when it ends (success or failure)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rolecall import kube, metrics
from rolecall.runs.status import now

log = logging.getLogger(__name__)


async def post(obj: dict[str, Any], type: str, reason: str, message: str) -> None:
    meta = obj["metadata"]
    ts = now()
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "type": type, "reason": reason, "message": message[:1024],
        "source": {"component": "rolecall"}, "reportingComponent": "rolecall.dev/operator",
        "reportingInstance": "rolecall", "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
    }
    metrics.api("create", "events")
    try:
        await asyncio.to_thread(kube.core().create_namespaced_event, meta["namespace"], body)
    except kube.ApiException as e:
        # An Event is a courtesy copy of what status already says; losing one must not fail the action.
        log.warning("could not post Event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], e.reason)
