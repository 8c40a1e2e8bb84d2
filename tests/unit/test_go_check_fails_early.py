"""hack/check-go.sh stops the build early, with a message, when Go is missing or too old."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack/check-go.sh"


def _run(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": path, "HOME": os.environ.get("HOME", "/")},
                          text=True, capture_output=True, timeout=30)


def _fake_go(dir: Path, version: str) -> None:
    go = dir / "go"
    go.write_text(f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go{version}\n')
    go.chmod(0o755)


def test_missing_go_is_a_clear_error(tmp_path: Path) -> None:
    result = _run(f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 1 and "Go is not installed" in result.stderr


def test_old_go_is_a_clear_error(tmp_path: Path) -> None:
    _fake_go(tmp_path, "1.24.2")
    result = _run(f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 1
    pins = dict(line.split("=", 1) for line in (REPO / "hack/versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert "Go 1.24.2 is older than" in result.stderr and f"Kubernetes {pins['KUBE_VERSION']}" in result.stderr


def test_pinned_or_newer_go_passes(tmp_path: Path) -> None:
    _fake_go(tmp_path, "1.27.0")
    assert _run(f"{tmp_path}:/usr/bin:/bin").returncode == 0
