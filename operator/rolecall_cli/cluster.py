"""The plugin's only door to the Kubernetes API: the standard kubeconfig flags, reads, writes (as the
user: admission and RBAC judge every write), and watches. An apiserver refusal becomes an Exit with
the apiserver's own message (admission policies word theirs for people) instead of a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from rolecall.api.kinds import Kind
from rolecall_cli.exits import Exit, ExitCode


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError):
        return str(e.reason)


def refused(e: ApiException, what: str) -> Exit:
    """An API error as the Exit a person reads: refused (4) for 401/403/422 and admission, else a failure."""
    if e.status in (401, 403, 422):
        return Exit(ExitCode.REFUSED, f"{what} was refused: {_message(e)}")
    if e.status == 404:
        return Exit(ExitCode.USAGE, f"{what}: not found ({_message(e)})")
    return Exit(ExitCode.TARGETS_FAILED, f"{what} failed: {e.status} {_message(e)}")


class Cluster:
    """One kubeconfig context, the namespace to use, and the API groups the verbs need."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next(c for c in contexts if c["name"] == context)
        except (ConfigException, StopIteration, OSError) as e:
            raise Exit(ExitCode.USAGE, f"cannot use the kubeconfig: {e}") from e
        self.namespace = namespace or active.get("context", {}).get("namespace") or "default"
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    # --- rolecall resources --------------------------------------------------------------------------
    def get(self, kind: Kind, name: str) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name)
        except ApiException as e:
            raise refused(e, f"reading {kind.kind} {self.namespace}/{name}") from e
        return obj

    def list_of(self, kind: Kind, all_namespaces: bool) -> tuple[list[dict[str, Any]], str | None]:
        """The kind's objects and the list's resourceVersion (to watch from)."""
        try:
            if all_namespaces:
                got = self.custom.list_cluster_custom_object(kind.group, kind.version, kind.plural)
            else:
                got = self.custom.list_namespaced_custom_object(kind.group, kind.version, self.namespace,
                                                                kind.plural)
        except ApiException as e:
            if e.status == 404:
                return [], None  # that kind's CRD is not installed: nothing of it to show
            raise refused(e, f"listing {kind.plural}") from e
        items: list[dict[str, Any]] = got.get("items", [])
        return items, got.get("metadata", {}).get("resourceVersion")

    def patch(self, kind: Kind, name: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """A JSON merge patch as the user (dry_run: admission and validation only, nothing stored)."""
        try:
            obj: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name, body,
                **({"dry_run": "All"} if dry_run else {}))
        except ApiException as e:
            raise refused(e, f"changing {kind.kind} {self.namespace}/{name}") from e
        return obj

    def create(self, kind: Kind, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, body,
                **({"dry_run": "All"} if dry_run else {}))
        except ApiException as e:
            raise refused(e, f"creating a {kind.kind} in {self.namespace}") from e
        return obj

    def watch(self, kind: Kind, name: str | None, resource_version: str | None, seconds: float,
              all_namespaces: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) for one object or a kind, for at most `seconds`; the caller re-watches."""
        w = watch.Watch()
        kwargs: dict[str, Any] = {"timeout_seconds": max(1, int(seconds)), "allow_watch_bookmarks": False}
        if resource_version:
            kwargs["resource_version"] = resource_version
        if name:
            kwargs["field_selector"] = f"metadata.name={name}"
        if all_namespaces:
            stream = w.stream(self.custom.list_cluster_custom_object, kind.group, kind.version, kind.plural,
                              **kwargs)
        else:
            stream = w.stream(self.custom.list_namespaced_custom_object, kind.group, kind.version,
                              self.namespace, kind.plural, **kwargs)
        try:
            for event in stream:
                if event["type"] == "ERROR":  # e.g. 410 Gone: the caller starts again from a fresh read
                    return
                yield event["type"], event["object"]
        except ApiException as e:
            if e.status == 410:
                return
            raise refused(e, f"watching {kind.plural}") from e
        finally:
            w.stop()

    # --- what sits around them -----------------------------------------------------------------------
    def events_of(self, obj: dict[str, Any]) -> list[Any]:
        uid = obj["metadata"]["uid"]
        try:
            got = self.core.list_namespaced_event(obj["metadata"]["namespace"],
                                                  field_selector=f"involvedObject.uid={uid}")
        except ApiException as e:
            raise refused(e, "reading Events") from e
        return sorted(got.items, key=lambda e: (e.last_timestamp or e.event_time or e.metadata.creation_timestamp))

    def pods(self, namespace: str, match_labels: dict[str, str]) -> list[Any]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        try:
            return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)
        except ApiException as e:
            raise refused(e, "listing pods") from e

    def operator_logs(self, tail: int) -> dict[str, str]:
        """The last lines of each rolecall operator pod's log (by namespace/name), or why they could not be read
        (under the key "")."""
        try:
            found = self.core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=rolecall").items
        except ApiException as e:
            return {"": f"could not list the operator pods: {e.status} {_message(e)}"}
        logs: dict[str, str] = {}
        for pod in found:
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            try:
                logs[key] = self.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace,
                                                              tail_lines=tail, _request_timeout=10)
            except ApiException as e:
                logs[key] = f"could not read the log: {e.status} {_message(e)}"
            except Exception as e:
                logs[key] = f"could not read the log: {e}"
        return logs or {"": "no pod labelled app.kubernetes.io/name=rolecall is visible (an operator run outside "
                           "the cluster logs where it runs)"}
