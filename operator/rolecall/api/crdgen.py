"""`make crds`: writes crds/<plural>.rolecall.dev.yaml from the models, and from the rights table in
api/admission.py manifests/admission-policies.yaml plus the chart's admission files (validating and mutating
policies apart, and the requester webhooks), all checked in; a test fails on drift."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from rolecall.api import admission
from rolecall.api.crd import KINDS, crd

HEADER = "# Generated from operator/rolecall/api by `make crds`. Do not edit by hand.\n"


def render() -> dict[str, str]:
    files = {f"{k.crd_name}.yaml": HEADER + yaml.safe_dump(crd(k), sort_keys=False, width=110) for k in KINDS}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": sorted(files)}
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def render_admission(mutating: bool = True, validating: bool = True) -> str:
    return HEADER + yaml.safe_dump_all(admission.documents(mutating, validating), sort_keys=False, width=110)


def render_chart_files() -> dict[str, str]:
    """charts/rolecall/files/: the chart picks the mutating policies or the webhooks by admission.mode."""
    return {"validating-policies.yaml": render_admission(mutating=False),
            "mutating-policies.yaml": render_admission(validating=False),
            "requester-webhooks.yaml": HEADER + yaml.safe_dump(admission.requester_webhooks(), sort_keys=False,
                                                               width=110)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("crds"))
    parser.add_argument("--admission", type=Path, default=Path("manifests/admission-policies.yaml"),
                        help="where the admission policies go")
    parser.add_argument("--chart-files", type=Path, default=Path("charts/rolecall/files"),
                        help="where the chart's admission files go")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    args = parser.parse_args()
    stale = []
    outputs = {args.out / name: text for name, text in render().items()}
    outputs[args.admission] = render_admission()
    outputs.update({args.chart_files / name: text for name, text in render_chart_files().items()})
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        sys.exit(f"CRDs out of date with the models: {', '.join(stale)}; run `make crds`")


if __name__ == "__main__":
    main()
