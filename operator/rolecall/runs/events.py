"""Kubernetes Events for people: one when an action starts, one when it ends (success or failure)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rolecall import kube, metrics
from rolecall.runs import fence
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
        # Refused in the renew-deadline gap: it waits for acting to resume, as every write does (runs/fence.py),
        # so an outcome's Event is neither lost nor, by a reconcile that starts over, posted twice.
        await fence.when_allowed(obj["kind"], lambda: asyncio.to_thread(kube.create_event, meta["namespace"], body))
    except kube.ApiException as e:
        # An Event is a courtesy copy of what status already says; losing one must not fail the action.
        log.warning("could not post Event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], e.reason)


def post_soon(obj: dict[str, Any], type: str, reason: str, message: str) -> asyncio.Task[None]:
    """Posts an Event alongside what follows (e.g. a start's Event while the targets are acted on); the caller
    awaits the task before posting anything that must come after it."""
    return asyncio.get_running_loop().create_task(_post_quietly(obj, type, reason, message),
                                                  name=f"event {reason}")


async def _post_quietly(obj: dict[str, Any], type: str, reason: str, message: str) -> None:
    try:
        await post(obj, type, reason, message)
    except Exception as e:  # e.g. Unavailable, or the term ended: it must not mask the fan-out's own failure
        log.warning("could not post Event %s for %s: %s", reason, obj["metadata"]["name"],
                    str(e) or e.__class__.__name__)
