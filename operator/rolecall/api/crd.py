"""The CRDs rolecall serves: names, printer columns and CEL rules, with schemas generated from the models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rolecall.api import schema
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

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


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


def openapi_schema(kind: Kind) -> dict[str, Any]:
    spec = schema.structural(kind.spec.model_json_schema(by_alias=True, mode="validation"))
    spec["description"] = (kind.spec.__doc__ or "").strip()
    if kind.spec_rules:
        spec["x-kubernetes-validations"] = [dict(r) for r in kind.spec_rules]
    status = schema.structural(kind.status.model_json_schema(by_alias=True, mode="serialization"))
    status["description"] = "What the operator observed and did; written by rolecall only."
    return {
        "type": "object",
        "description": kind.description.strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd(kind: Kind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": {"app.kubernetes.io/part-of": "rolecall"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind.kind, "listKind": f"{kind.kind}List", "plural": kind.plural,
                      "singular": kind.kind.lower(), "shortNames": list(kind.short_names),
                      "categories": list(kind.categories)},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": openapi_schema(kind)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(kind.columns),
            }],
        },
    }
