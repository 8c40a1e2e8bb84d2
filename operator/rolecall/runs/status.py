"""Writing status: conditions with transition times, and merge patches holding only what changed.

Nothing is written when nothing changed, so an idle resource costs no API calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from rolecall import kube, metrics
from rolecall.api.types import Condition


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def set_condition(conditions: list[Condition] | None, type: str, status: str, reason: str, message: str,
                  generation: int | None = None) -> list[Condition]:
    """Returns the list with `type` set; lastTransitionTime moves only when the status flips."""
    out = [c for c in (conditions or []) if c.type != type]
    old = next((c for c in (conditions or []) if c.type == type), None)
    since = old.last_transition_time if old is not None and old.status == status else now()
    out.append(Condition(type=type, status=status, reason=reason, message=message[:2048],
                         last_transition_time=since, observed_generation=generation))
    order = {"Ready": 0, "Cleared": 1, "Stopped": 2, "Degraded": 3}
    return sorted(out, key=lambda c: (order.get(c.type, 9), c.type))


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 merge patch turning `old` into `new` (None where a key must be removed); {} if equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        if key not in new:
            patch[key] = None
        elif key not in old:
            patch[key] = new[key]
        elif old[key] != new[key]:
            patch[key] = merge_patch(old[key], new[key]) if isinstance(new[key], dict) else new[key]
    return patch


async def patch_status(group: str, version: str, plural: str, namespace: str, name: str,
                       patch: dict[str, Any]) -> dict[str, Any]:
    api = kube.custom()
    metrics.api("patch", f"{plural}/status")
    result = await asyncio.to_thread(
        api.patch_namespaced_custom_object_status, group, version, namespace, plural, name, {"status": patch})
    return dict(result)
