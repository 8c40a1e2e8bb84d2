"""The CRDs rolecall serves: names, printer columns and CEL rules, with schemas generated from the models."""

from __future__ import annotations

from typing import Any

from rolecall.api import schema
from rolecall.api.kinds import KINDS, Kind

__all__ = ["KINDS", "Kind", "crd", "openapi_schema"]


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
            "group": kind.group,
            "scope": "Namespaced",
            "names": {"kind": kind.kind, "listKind": f"{kind.kind}List", "plural": kind.plural,
                      "singular": kind.kind.lower(), "shortNames": list(kind.short_names),
                      "categories": list(kind.categories)},
            "versions": [{
                "name": kind.version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": openapi_schema(kind)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(kind.columns),
            }],
        },
    }
