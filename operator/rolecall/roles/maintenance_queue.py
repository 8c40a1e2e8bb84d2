"""One DatabaseMaintenance per database at a time, and none while its DatabaseServer is stopped: the hold the
request core asks before it accepts a run (runs/request.py), so a run already in status is never held, queued
or overwritten.

The claim is the run ledger in status (`status.run`), listed from the apiserver, so it survives a restart or a
takeover; this process also keeps its own claim per database from before its listing until the reconcile that
accepted the run ends, so two reconciles of this process cannot both find the database free.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rolecall import kube, metrics
from rolecall.api.kinds import DATABASE_MAINTENANCE
from rolecall.roles import database
from rolecall.runs import events
from rolecall.runs.context import Context

GROUP, VERSION, PLURAL = DATABASE_MAINTENANCE.group, DATABASE_MAINTENANCE.version, DATABASE_MAINTENANCE.plural
QUEUE_CHECK_SECONDS = 2.0  # a queued maintenance looks again this often
STOPPED_CHECK_SECONDS = 10.0  # one held by a stopped DatabaseServer looks this often (one GET)
# (namespace, DatabaseServer) -> the maintenance that holds it in this operator process.
_running: dict[tuple[str, str], str] = {}
Maintenance = Context[Any, Any]


def _key(m: Maintenance) -> tuple[str, str]:
    return m.ns, m.spec.database_server_ref.name


def claim(m: Maintenance) -> None:
    _running[_key(m)] = m.name


def release(m: Maintenance) -> None:
    if _running.get(_key(m)) == m.name:
        del _running[_key(m)]


async def hold(m: Maintenance) -> tuple[str, str] | None:
    """Why a new run waits: its DatabaseServer is stopped on purpose (held like any kind's request while its
    role is stopped), or another maintenance runs on that database (one at a time: a run in status, also one
    left by a restart or a takeover, holds it; this one waits in phase Queued until none does)."""
    key = _key(m)
    if await _server_stopped(m):
        m.wake_in(STOPPED_CHECK_SECONDS)
        return "HeldWhileStopped", f"DatabaseServer {key[1]} is stopped; the run starts once it runs again"
    holder = _running.get(key)
    if holder is None:
        _running[key] = m.name  # taken before the listing, so no reconcile of this process slips past it
        try:
            holder = await _running_elsewhere(m)
        finally:
            if holder is not None and _running.get(key) == m.name:
                del _running[key]
    if holder is None or holder == m.name:
        return None
    message = f"Waiting for DatabaseMaintenance {holder} on {key[1]} to finish."
    m.status.phase = "Queued"
    if m.condition_status("Queued") != "True":
        m.condition("Queued", True, "AnotherMaintenanceRunning", message)
        await events.post(m.obj, "Normal", "Queued", message)
    m.mark_busy("Queued", message)
    m.wake_in(QUEUE_CHECK_SECONDS)
    return "AnotherMaintenanceRunning", f"DatabaseMaintenance {holder} is running on {key[1]}"


async def server_of(m: Maintenance) -> dict[str, Any] | None:
    """The DatabaseServer the maintenance names, as the apiserver has it now (None: there is none)."""
    metrics.api("get", database.PLURAL)
    try:
        return dict(await asyncio.to_thread(kube.custom().get_namespaced_custom_object, GROUP, VERSION, m.ns,
                                            database.PLURAL, m.spec.database_server_ref.name))
    except kube.ApiException as e:
        if e.status == 404:
            return None
        raise


async def _server_stopped(m: Maintenance) -> bool:
    obj = await server_of(m)  # a missing one is not held: the run says DatabaseServerNotFound
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Stopped" and c.get("status") == "True" for c in conditions)


async def _running_elsewhere(m: Maintenance) -> str | None:
    """Another DatabaseMaintenance of this namespace whose run on the same database is in its status."""
    metrics.api("list", PLURAL)
    listed = await asyncio.to_thread(kube.custom().list_namespaced_custom_object, GROUP, VERSION, m.ns, PLURAL)
    for item in listed.get("items") or []:
        name = item["metadata"]["name"]
        ref = ((item.get("spec") or {}).get("databaseServerRef") or {}).get("name")
        st = item.get("status") or {}
        running = st.get("run") or st.get("phase") == "Running"
        if name != m.name and ref == m.spec.database_server_ref.name and running:
            return str(name)
    return None
