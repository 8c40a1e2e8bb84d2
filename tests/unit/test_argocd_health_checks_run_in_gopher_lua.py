"""rolecall's Argo CD health checks and resource actions pass their own tests (Argo CD's health_test.yaml and
action_test.yaml, over objects captured from the bed) on gopher-lua with the libraries Argo CD loads, every
kind has them, and an object rolecall has not reported on yet is Progressing, never a Lua error."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rolecall.api.kinds import KINDS
from testbed.cluster import cache_bin_dir

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "charts/rolecall/files/argocd/rolecall.dev"
# The clock the expected action outputs were computed with (the clear and compact tokens are the time now).
NOW = "2026-11-26T12:00:00Z"


def _argolua() -> str:
    found = shutil.which("argolua")
    if found:
        return found
    built = cache_bin_dir() / "argolua"
    if not built.exists():
        pytest.fail(f"argolua (the gopher-lua runner, hack/tools/argolua) is neither on PATH nor at {built}: "
                    "run `make cluster-bins`")
    return str(built)


def _run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_argolua(), *args], input=input, text=True, capture_output=True, timeout=60,
                          env={**os.environ, "ARGOLUA_NOW": NOW})


def _dirs() -> list[Path]:
    return sorted(p for p in ARGOCD.iterdir() if p.is_dir())


def _entries(dir: Path) -> int:
    health = yaml.safe_load((dir / "health_test.yaml").read_text())
    count = len(health["tests"])
    actions = dir / "actions" / "action_test.yaml"
    if actions.exists():
        spec = yaml.safe_load(actions.read_text())
        count += len(spec.get("discoveryTests") or []) + len(spec.get("actionTests") or [])
    return count


def test_every_kind_has_a_health_check_with_tests_and_every_action_is_tested() -> None:
    assert {d.name for d in _dirs()} == {k.kind for k in KINDS}
    for kind in KINDS:
        dir = ARGOCD / kind.kind
        assert (dir / "health.lua").is_file(), kind.kind
        assert (dir / "health_test.yaml").is_file(), f"{kind.kind}: health.lua has no health_test.yaml"
        if not (dir / "actions").is_dir():
            continue
        assert (dir / "actions" / "discovery.lua").is_file(), kind.kind
        assert (dir / "actions" / "action_test.yaml").is_file(), f"{kind.kind}: actions without action_test.yaml"
        spec = yaml.safe_load((dir / "actions" / "action_test.yaml").read_text())
        tested = {t["action"] for t in spec["actionTests"]}
        offered = {p.parent.name for p in (dir / "actions").glob("*/action.lua")}
        assert offered and tested == offered, f"{kind.kind}: actions {sorted(offered)}, tested {sorted(tested)}"


def test_health_checks_and_actions_pass_their_argo_cd_tests() -> None:
    out = _run("test", *map(str, _dirs()))
    assert out.returncode == 0, out.stdout + out.stderr
    summary = re.search(r"^(\d+) checks, (\d+) failed$", out.stdout, re.MULTILINE)
    assert summary, out.stdout
    checks, failed = int(summary[1]), int(summary[2])
    assert failed == 0
    assert checks >= sum(_entries(d) for d in _dirs()), out.stdout


def _healthy(dir: Path) -> dict[str, Any]:
    """The first Healthy object of the kind's health tests: a real object, to break on purpose."""
    tests = yaml.safe_load((dir / "health_test.yaml").read_text())["tests"]
    path = next(t["inputPath"] for t in tests if t["healthStatus"]["status"] == "Healthy")
    obj: dict[str, Any] = yaml.safe_load((dir / path).read_text())
    return obj


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(obj)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return broken


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
@pytest.mark.parametrize("missing", [("status",), ("status", "conditions")], ids=["no-status", "no-conditions"])
def test_an_object_without_rolecalls_report_is_progressing(kind: str, missing: tuple[str, ...]) -> None:
    dir = ARGOCD / kind
    obj = _without(_healthy(dir), *missing)
    out = _run("health", str(dir), input=json.dumps(obj))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "Progressing"
