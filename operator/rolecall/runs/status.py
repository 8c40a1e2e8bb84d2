"""Writing status: one writer per object, serialised, fenced by the resourceVersion it was computed from.

Nothing is written when nothing changed, so an idle resource costs no API calls. Every patch carries the
resourceVersion of the object as this process last wrote or read it, so the apiserver refuses a writer
whose view is stale (another operator wrote since). On such a conflict the writer re-reads the object:
if its status is still what we last wrote (only the user's metadata or spec moved), the same patch is sent
again on the new resourceVersion; otherwise the writer raises StaleStatus with the fresh object, and the
reconcile starts over from it instead of overwriting what another writer recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rolecall import kube, metrics
from rolecall.api.types import Condition, Model, format_time

ModelT = TypeVar("ModelT", bound=Model)
CONFLICT_RETRIES = 5


def now() -> str:
    return format_time(dt.datetime.now(dt.UTC))


class StaleStatus(Exception):
    """Another writer changed this object's status since we last read or wrote it."""

    def __init__(self, fresh: dict[str, Any]) -> None:
        super().__init__("the object's status was changed by another writer")
        self.fresh = fresh


CONDITION_ORDER = {"Ready": 0, "Reconciling": 1, "Stalled": 2, "Cleared": 3, "Compacted": 3, "Stopped": 4,
                   "Degraded": 5}


def set_condition(conditions: list[Condition] | None, type: str, status: str, reason: str, message: str,
                  generation: int | None = None, at: str | None = None) -> list[Condition]:
    """Returns the list with `type` set; lastTransitionTime moves only when the status flips."""
    out = [c for c in (conditions or []) if c.type != type]
    old = next((c for c in (conditions or []) if c.type == type), None)
    since = old.last_transition_time if old is not None and old.status == status else (at or now())
    out.append(Condition(type=type, status=status, reason=reason, message=message[:2048],
                         last_transition_time=since, observed_generation=generation))
    return sorted(out, key=lambda c: (CONDITION_ORDER.get(c.type, 9), c.type))


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


@dataclass
class StatusWriter(Generic[ModelT]):
    """Holds the status as last written, and writes only the difference (nothing if unchanged)."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str
    status: ModelT
    written: dict[str, Any]
    resource_version: str | None
    # Status fields another object's reconcile may write (e.g. a DatabaseMaintenance reporting its result
    # to its DatabaseServer): a conflict on those alone is adopted, not treated as a stale writer.
    foreign: frozenset[str] = frozenset()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    writes: int = 0

    async def flush(self) -> bool:
        """Writes what changed since the last write; returns whether anything was written."""
        async with self.lock:
            new = self.status.dump()
            patch = merge_patch(self.written, new)
            if not patch:
                return False
            for _ in range(CONFLICT_RETRIES):
                try:
                    result = await _patch(self, patch)
                except kube.ApiException as e:
                    if e.status != 409:
                        raise
                    await self._after_conflict(new)
                    new = self.status.dump()
                    patch = merge_patch(self.written, new)
                    if not patch:
                        return False
                    continue
                self.written = new
                self.resource_version = result["metadata"]["resourceVersion"]
                self.writes += 1
                return True
            raise kube.Unavailable(f"status of {self.namespace}/{self.name} kept conflicting")

    async def _after_conflict(self, new: dict[str, Any]) -> None:
        fresh = await get(self.group, self.version, self.plural, self.namespace, self.name)
        current = type(self.status).model_validate(fresh.get("status") or {}).dump()
        changed = {k for k in current.keys() | self.written.keys() if current.get(k) != self.written.get(k)}
        if changed - self.foreign:
            raise StaleStatus(fresh)
        adopted = type(self.status).model_validate(fresh.get("status") or {})
        for attr, info in type(self.status).model_fields.items():
            key = info.alias or attr
            # Another object's report: keep it, unless this write sets the field itself.
            if key in changed and new.get(key) == self.written.get(key):
                setattr(self.status, attr, getattr(adopted, attr))
        self.written = current
        self.resource_version = fresh["metadata"]["resourceVersion"]


async def _patch(w: StatusWriter[Any], patch: dict[str, Any]) -> dict[str, Any]:
    body = {"metadata": {"resourceVersion": w.resource_version}, "status": patch} if w.resource_version \
        else {"status": patch}
    metrics.api("patch", f"{w.plural}/status")
    result = await asyncio.to_thread(kube.custom().patch_namespaced_custom_object_status, w.group, w.version,
                                     w.namespace, w.plural, w.name, body)
    return dict(result)


async def get(group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
    metrics.api("get", plural)
    return dict(await asyncio.to_thread(kube.custom().get_namespaced_custom_object, group, version, namespace,
                                        plural, name))


async def patch_status(group: str, version: str, plural: str, namespace: str, name: str,
                       patch: dict[str, Any]) -> dict[str, Any]:
    """An unconditional merge patch of a few status fields (for reports to another object)."""
    api = kube.custom()
    metrics.api("patch", f"{plural}/status")
    result = await asyncio.to_thread(
        api.patch_namespaced_custom_object_status, group, version, namespace, plural, name, {"status": patch})
    return dict(result)
