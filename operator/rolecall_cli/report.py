"""`report KIND/NAME`: a support bundle (tar.gz) a person can attach to a ticket, after CloudNativePG's
`report`: the resource, its Events, its target pods (phase, IP, node), and the operator pods' recent log
lines when the apiserver can reach them (a note saying why not, otherwise)."""

from __future__ import annotations

import datetime as dt
import io
import tarfile
from pathlib import Path
from typing import Any

import yaml

from rolecall.api.kinds import DATABASE_MAINTENANCE, DATABASE_SERVER, Kind
from rolecall_cli.cluster import Cluster

LOG_LINES = 500


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(dt.datetime.now(dt.UTC).timestamp()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _selector(cluster: Cluster, kind: Kind, obj: dict[str, Any]) -> dict[str, str]:
    spec = obj.get("spec") or {}
    if kind is DATABASE_MAINTENANCE:  # its pods are its DatabaseServer's
        spec = cluster.get(DATABASE_SERVER, spec["databaseServerRef"]["name"]).get("spec") or {}
    labels: dict[str, str] = (spec.get("selector") or {}).get("matchLabels") or {}
    return labels


def write(cluster: Cluster, kind: Kind, name: str, out: Path) -> list[str]:
    """Writes the bundle to `out`; returns the names of the files in it."""
    obj = cluster.get(kind, name)
    ns = obj["metadata"]["namespace"]
    prefix = f"rolecall-report-{kind.plural}-{name}/"
    names: list[str] = []
    with tarfile.open(out, "w:gz") as tar:
        def add(file: str, text: str) -> None:
            _add(tar, prefix + file, text)
            names.append(file)

        add("resource.yaml", yaml.safe_dump(obj, sort_keys=False))
        events = cluster.events_of(obj)
        add("events.txt", "\n".join(
            f"{e.get('lastTimestamp') or e.get('eventTime') or e['metadata'].get('creationTimestamp')}\t{e.get('type')}"
            f"\t{e.get('reason')}\tx{e.get('count') or 1}\t{e.get('message')}" for e in events) + "\n")
        labels = _selector(cluster, kind, obj)
        lines = ["NAME\tPHASE\tIP\tNODE\tREADY"]
        for pod in cluster.pods(ns, labels) if labels else []:
            st = pod.get("status") or {}
            ready = next((c["status"] for c in st.get("conditions") or [] if c["type"] == "Ready"), "Unknown")
            lines.append(f"{pod['metadata']['name']}\t{st.get('phase')}\t{st.get('podIP')}\t"
                         f"{(pod.get('spec') or {}).get('nodeName')}\t{ready}")
        if not labels:
            lines.append("(the selector has no matchLabels: list the pods with its matchExpressions by hand)")
        add("pods.txt", "\n".join(lines) + "\n")
        for source, log in cluster.operator_logs(LOG_LINES).items():
            add(f"operator-logs/{source.replace('/', '_')}.log" if source else "operator-logs.txt", log + "\n")
    return names
