"""crds/ is generated from the pydantic models: the checked-in YAML must be exactly what `make crds` writes."""

from __future__ import annotations

from pathlib import Path

from rolecall.api.crd import KINDS
from rolecall.api.crdgen import render, render_admission

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crds_equal_the_generated_ones() -> None:
    for name, text in render().items():
        path = REPO / "crds" / name
        assert path.exists(), f"crds/{name} is missing: run `make crds`"
        assert path.read_text() == text, f"crds/{name} drifted from the models: run `make crds`"


def test_no_stale_crd_files_beside_the_generated_ones() -> None:
    generated = {f"{k.crd_name}.yaml" for k in KINDS} | {"kustomization.yaml"}
    assert {p.name for p in (REPO / "crds").glob("*.yaml")} == generated


def test_checked_in_admission_policies_equal_the_generated_ones() -> None:
    path = REPO / "manifests" / "admission-policies.yaml"
    assert path.read_text() == render_admission(), "manifests/admission-policies.yaml drifted: run `make crds`"
