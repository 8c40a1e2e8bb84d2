"""One place for each kind's identity: group, version, kind, plural, short names, its models, printer
columns, spec rules and the actions (with their rights) it can trigger.

The CRD generator (crd.py), the admission policies (admission.py), the kopf handlers and the run-time
checks (runs/authz.py) all read these, so a kind is named and described exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rolecall.api import rights
from rolecall.api.v1alpha1 import cacheserver, database, webserver

GROUP = "rolecall.dev"
VERSION = "v1alpha1"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[dict[str, Any], ...]
    spec_rules: tuple[dict[str, Any], ...] = field(default=())
    categories: tuple[str, ...] = ("rolecall",)
    # Status fields that another kind's reconcile writes (a DatabaseMaintenance reports to its server).
    foreign_status: frozenset[str] = frozenset()
    group: str = GROUP
    version: str = VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def handler_id(self) -> str:
        """The pinned kopf handler id (renaming a function must never orphan kopf's state)."""
        return f"{self.kind.lower()}-watch"

    @property
    def actions(self) -> tuple[rights.Action, ...]:
        return rights.ACTIONS[self.plural]

    def action(self, name: str) -> rights.Action:
        return next(a for a in self.actions if a.name == name)


CACHE_SERVER = Kind(
    kind="CacheServer", plural="cacheservers", short_names=("cache", "caches"),
    spec=cacheserver.CacheServerSpec, status=cacheserver.CacheServerStatus,
    description=cacheserver.CacheServer.__doc__ or "",
    columns=(
        {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Pods", "type": "integer", "jsonPath": ".status.targets"},
        {"name": "Items", "type": "integer", "jsonPath": ".status.stats.items"},
        {"name": "HitRatio", "type": "string", "jsonPath": ".status.stats.hitRatio"},
        {"name": "LastCleared", "type": "date", "jsonPath": ".status.lastClearedAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    spec_rules=tuple(cacheserver.SPEC_RULES),
)

WEB_SERVER = Kind(
    kind="WebServer", plural="webservers", short_names=("web", "webs"),
    spec=webserver.WebServerSpec, status=webserver.WebServerStatus,
    description=webserver.WebServer.__doc__ or "",
    columns=(
        {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Healthy", "type": "integer", "jsonPath": ".status.healthyPods"},
        {"name": "Connections", "type": "integer", "jsonPath": ".status.activeConnections"},
        {"name": "Users", "type": "integer", "jsonPath": ".status.currentUsers"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    spec_rules=tuple(webserver.SPEC_RULES),
)

DATABASE_SERVER = Kind(
    kind="DatabaseServer", plural="databaseservers", short_names=("db", "dbs"),
    spec=database.DatabaseServerSpec, status=database.DatabaseServerStatus,
    description=database.DatabaseServer.__doc__ or "",
    columns=(
        {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Primary", "type": "string", "jsonPath": ".status.primary"},
        {"name": "Size", "type": "integer", "jsonPath": ".status.sizeBytes"},
        {"name": "Connections", "type": "integer", "jsonPath": ".status.connections"},
        {"name": "LastCompacted", "type": "date", "jsonPath": ".status.lastCompactedAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    spec_rules=tuple(database.SERVER_SPEC_RULES),
    foreign_status=frozenset({"lastClearOldData", "lastCompaction"}),
)

DATABASE_MAINTENANCE = Kind(
    kind="DatabaseMaintenance", plural="databasemaintenances", short_names=("dbm",),
    spec=database.DatabaseMaintenanceSpec, status=database.DatabaseMaintenanceStatus,
    description=database.DatabaseMaintenance.__doc__ or "",
    columns=(
        {"name": "Database", "type": "string", "jsonPath": ".spec.databaseServerRef.name"},
        {"name": "Operations", "type": "string", "jsonPath": ".status.summary"},
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.rowsDeleted"},
        {"name": "Reclaimed", "type": "integer", "jsonPath": ".status.bytesReclaimed"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    spec_rules=tuple(database.MAINTENANCE_RULES),
)

KINDS = (CACHE_SERVER, WEB_SERVER, DATABASE_SERVER, DATABASE_MAINTENANCE)




def by_plural(plural: str) -> Kind:
    return next(k for k in KINDS if k.plural == plural)
