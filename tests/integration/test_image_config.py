"""The operator image from `make image`: numeric non-root user, entry point, OCI labels, and it runs on a
read-only root (no tmpfs, no network) because every module's bytecode is already in the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"localhost/rolecall/operator:{VERSION}"
ENTRYPOINT = "/opt/venv/bin/rolecall-operator"

# Runs inside the image as 65532: the uid, whether / is mounted read-only, and every rolecall module
# whose .pyc is missing or would be rejected (then Python would recompile it on every start).
PROBE = """
import importlib.util, json, os, pathlib, rolecall
bad, root = [], pathlib.Path(rolecall.__file__).parent
sources = sorted(root.rglob("*.py"))
for src in sources:
    try:
        head = pathlib.Path(importlib.util.cache_from_source(str(src))).read_bytes()[:16]
    except OSError:
        bad.append(f"{src}: no .pyc")
        continue
    flags, st = int.from_bytes(head[4:8], "little"), src.stat()
    if head[:4] != importlib.util.MAGIC_NUMBER:
        ok = False
    elif flags & 1:  # hash-based; checked against the source only when flag 2 is set
        ok = not flags & 2 or head[8:16] == importlib.util.source_hash(src.read_bytes())
    else:  # timestamp-based: the recorded source mtime and size must match
        ok = head[8:16] == ((int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                            + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    if not ok:
        bad.append(f"{src}: stale .pyc")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "modules": len(sources), "bad": bad,
                  "root_read_only": bool(os.statvfs("/").f_flag & os.ST_RDONLY)}))
"""


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image` (hack/install-image-tools.sh installs it)")
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "hack/image/containers.conf")}
    return subprocess.run(["podman", *args], env=env, text=True, capture_output=True, timeout=120)


def _run_locked_down(*args: str) -> subprocess.CompletedProcess[str]:
    """podman run as 65532 with a read-only root and, unlike podman's default, no tmpfs on /tmp or /run."""
    return _podman("run", "--rm", "--read-only", "--read-only-tmpfs=false", "--user", "65532:65532",
                   "--network", "none", *args)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = _podman("image", "inspect", IMAGE)
    if result.returncode != 0:
        pytest.fail(f"{IMAGE} is not in podman's storage ({result.stderr.strip()}): run `make image` first")
    config: dict[str, Any] = json.loads(result.stdout)[0]["Config"]
    return config


def test_image_runs_as_a_numeric_non_root_user(config: dict[str, Any]) -> None:
    assert config["User"] == "65532:65532"


def test_entrypoint_is_the_operator_console_script(config: dict[str, Any]) -> None:
    assert config["Entrypoint"] == [ENTRYPOINT]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONUNBUFFERED"] == env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_oci_labels_name_the_version_and_license(config: dict[str, Any]) -> None:
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "rolecall-operator"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.source"]


def test_help_works_as_65532_on_a_read_only_root(config: dict[str, Any]) -> None:
    result = _run_locked_down(IMAGE, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rolecall")
    assert "--namespace" in result.stdout


def test_every_module_has_valid_bytecode_so_nothing_is_written(config: dict[str, Any]) -> None:
    result = _run_locked_down("--entrypoint", "/opt/venv/bin/python", IMAGE, "-c", PROBE)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert (probe["uid"], probe["gid"], probe["root_read_only"]) == (65532, 65532, True)
    assert probe["modules"] > 10 and probe["bad"] == []
