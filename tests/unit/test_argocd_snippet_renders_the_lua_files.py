"""The chart's Argo CD snippet (templates/argocd-cm.yaml) carries the Lua files exactly: each health key is
its health.lua, each actions key is YAML whose discovery.lua and action.lua equal the files; without
argocd.customizations the chart renders no argocd-cm at all."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.install import tool_path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/rolecall"
ARGOCD = CHART / "files/argocd/rolecall.dev"


def _helm(*args: str) -> str:
    helm = tool_path("helm")
    try:
        out = subprocess.run([helm, *args], text=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        pytest.fail(f"helm not found ({helm}): run `make cluster-bins`")
    assert out.returncode == 0, out.stderr
    return out.stdout


def _snippet(*sets: str) -> dict[str, Any]:
    text = _helm("template", "rolecall", str(CHART), "--set", "argocd.customizations=true", *sets,
                 "--show-only", "templates/argocd-cm.yaml")
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    return dict(doc)


def test_health_and_action_keys_carry_the_lua_files() -> None:
    cm = _snippet()
    assert (cm["apiVersion"], cm["kind"]) == ("v1", "ConfigMap")
    assert cm["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}, "no labels: a patch would merge them"
    data = cm["data"]
    kinds = sorted(p.name for p in ARGOCD.iterdir() if p.is_dir())
    expected_keys = {f"resource.customizations.health.rolecall.dev_{k}" for k in kinds}
    for kind in kinds:
        dir = ARGOCD / kind
        assert data[f"resource.customizations.health.rolecall.dev_{kind}"] == (dir / "health.lua").read_text()
        if not (dir / "actions").is_dir():
            continue
        key = f"resource.customizations.actions.rolecall.dev_{kind}"
        expected_keys.add(key)
        actions = yaml.safe_load(data[key])
        assert set(actions) == {"discovery.lua", "definitions"}
        assert actions["discovery.lua"] == (dir / "actions/discovery.lua").read_text()
        scripts = {d["name"]: d["action.lua"] for d in actions["definitions"]}
        assert scripts == {p.parent.name: p.read_text() for p in (dir / "actions").glob("*/action.lua")}
    assert set(data) == expected_keys


def test_namespace_follows_the_value() -> None:
    assert _snippet("--set", "argocd.namespace=gitops")["metadata"]["namespace"] == "gitops"


def test_without_the_flag_nothing_is_rendered() -> None:
    docs = [d for d in yaml.safe_load_all(_helm("template", "rolecall", str(CHART))) if d]
    assert docs, "the chart rendered nothing at all"
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "argocd-cm"]
