"""Turns pydantic's JSON Schema into a Kubernetes structural schema (what a CRD's openAPIV3Schema accepts).

The traps handled here: no $ref/$defs (inlined); Optional[X] becomes X + nullable instead of anyOf with
type null; int|str becomes x-kubernetes-int-or-string; no title, no uniqueItems, no additionalProperties
beside properties; const becomes a one-value enum; defaults of None are dropped.
"""

from __future__ import annotations

import copy
from typing import Any

_DROP = {"title", "uniqueItems", "discriminator"}


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    root = {k: v for k, v in schema.items() if k != "$defs"}
    return _convert(root, defs)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
    # Keys beside $ref (a field's description, default) win over the referenced model's own.
    target.update({k: v for k, v in node.items() if k != "$ref"})
    return _resolve(target, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key in ("anyOf", "oneOf"):
        if key in node:
            node = _collapse_union(node, key, defs)
    for k, v in node.items():
        if k in _DROP or (k == "default" and v is None):
            continue
        if k == "const":
            out["enum"] = [v]
        elif k == "properties":
            out["properties"] = {name: _convert(sub, defs) for name, sub in v.items()}
        elif k == "items":
            out["items"] = _convert(v, defs)
        elif k == "additionalProperties":
            if isinstance(v, dict):
                out["additionalProperties"] = _convert(v, defs)
        elif k == "required":
            out["required"] = sorted(v)
        else:
            out[k] = v
    if "properties" in out:
        out.pop("additionalProperties", None)
    if "enum" in out and "type" not in out:
        out["type"] = "string" if all(isinstance(e, str) for e in out["enum"]) else out.get("type", "integer")
    return out


def _collapse_union(node: dict[str, Any], key: str, defs: dict[str, Any]) -> dict[str, Any]:
    members = [_resolve(m, defs) for m in node[key]]
    rest = {k: v for k, v in node.items() if k != key}
    non_null = [m for m in members if m.get("type") != "null"]
    nullable = len(non_null) < len(members)
    if len(non_null) == 1:
        merged = {**non_null[0], **rest}
    elif {m.get("type") for m in non_null} == {"integer", "string"}:
        merged = {"x-kubernetes-int-or-string": True, **rest}
    elif all("x-kubernetes-int-or-string" in m for m in non_null):
        merged = {**non_null[0], **rest}
    else:
        raise ValueError(f"cannot express union {members} in a structural schema")
    if nullable:
        merged["nullable"] = True
    return merged
