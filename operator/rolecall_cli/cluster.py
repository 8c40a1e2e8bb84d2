"""The plugin's only door to the Kubernetes API: the standard kubeconfig flags, reads, writes (as the
user: admission and RBAC judge every write), and watches. What it returns is plain data (dicts), so no
client type leaks out. An apiserver refusal becomes an Exit with the apiserver's own message (admission
policies word theirs for people) instead of a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from rolecall.api.kinds import Kind
from rolecall_cli.exits import Exit, ExitCode

CONNECT_SECONDS = 10  # every call gives up connecting after this; reads get the call's own time on top
READ_SECONDS = 30


class Gone(Exception):
    """The watch's resourceVersion is too old: start again from a fresh read."""


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError):
        return str(e.reason)


def api_error(e: ApiException, what: str) -> Exit:
    """An API error as the Exit a person reads: refused (4) for 401/403/422 (RBAC, admission), usage (2) for
    404 (a wrong name), and an API failure (7) otherwise."""
    if e.status in (401, 403, 422):
        return Exit(ExitCode.REFUSED, f"{what} was refused: {_message(e)}")
    if e.status == 404:
        return Exit(ExitCode.USAGE, f"{what}: not found ({_message(e)})")
    return Exit(ExitCode.API, f"{what} failed: {e.status} {_message(e)}")


class Cluster:
    """One kubeconfig context, the namespace to use, and the API groups the verbs need."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                active = next(c for c in contexts if c["name"] == context)
        except (ConfigException, StopIteration, OSError) as e:
            raise Exit(ExitCode.USAGE, f"cannot use the kubeconfig: {e}") from e
        self.namespace = namespace or active.get("context", {}).get("namespace") or "default"
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def _plain(self, obj: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return plain

    # --- rolecall resources --------------------------------------------------------------------------
    def get(self, kind: Kind, name: str) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name,
                _request_timeout=(CONNECT_SECONDS, READ_SECONDS))
        except ApiException as e:
            raise api_error(e, f"reading {kind.kind} {self.namespace}/{name}") from e
        return obj

    def list_of(self, kind: Kind, all_namespaces: bool) -> tuple[list[dict[str, Any]], str | None]:
        """The kind's objects and the list's resourceVersion (to watch from)."""
        timeout = (CONNECT_SECONDS, READ_SECONDS)
        try:
            if all_namespaces:
                got = self.custom.list_cluster_custom_object(kind.group, kind.version, kind.plural,
                                                             _request_timeout=timeout)
            else:
                got = self.custom.list_namespaced_custom_object(kind.group, kind.version, self.namespace,
                                                                kind.plural, _request_timeout=timeout)
        except ApiException as e:
            if e.status == 404:
                return [], None  # that kind's CRD is not installed: nothing of it to show
            raise api_error(e, f"listing {kind.plural}") from e
        items: list[dict[str, Any]] = got.get("items", [])
        return items, got.get("metadata", {}).get("resourceVersion")

    def patch(self, kind: Kind, name: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """A JSON merge patch as the user (dry_run: admission and validation only, nothing stored)."""
        try:
            obj: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name, body,
                _request_timeout=(CONNECT_SECONDS, READ_SECONDS), **({"dry_run": "All"} if dry_run else {}))
        except ApiException as e:
            raise api_error(e, f"changing {kind.kind} {self.namespace}/{name}") from e
        return obj

    def create(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, body,
                _request_timeout=(CONNECT_SECONDS, READ_SECONDS))
        except ApiException as e:
            raise api_error(e, f"creating a {kind.kind} in {self.namespace}") from e
        return obj

    def delete(self, kind: Kind, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(kind.group, kind.version, self.namespace, kind.plural, name,
                                                        _request_timeout=(CONNECT_SECONDS, READ_SECONDS))
        except ApiException as e:
            if e.status != 404:
                raise api_error(e, f"deleting {kind.kind} {self.namespace}/{name}") from e

    def watch(self, kind: Kind, name: str | None, resource_version: str | None, seconds: float,
              all_namespaces: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) for one object or a kind, for at most about `seconds`; then it returns and
        the caller watches again from the last resourceVersion. Raises Gone when that is too old. A
        connection that stops answering ends the watch too (the client's read timeout)."""
        w = watch.Watch()
        kwargs: dict[str, Any] = {"timeout_seconds": max(1, int(seconds)),
                                  "_request_timeout": (CONNECT_SECONDS, max(1, int(seconds)) + READ_SECONDS)}
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
                yield event["type"], event["object"]
        except ApiException as e:
            if e.status == 410:
                raise Gone() from e
            raise api_error(e, f"watching {kind.plural}") from e
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            return  # a silent connection (a VPN drop, a laptop asleep): the caller reads afresh
        finally:
            w.stop()

    # --- what sits around them -----------------------------------------------------------------------
    def events_of(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The object's Events, oldest first, as plain dicts (camelCase keys, as kubectl shows them)."""
        uid = obj["metadata"]["uid"]
        try:
            got = self.core.list_namespaced_event(obj["metadata"]["namespace"],
                                                  field_selector=f"involvedObject.uid={uid}",
                                                  _request_timeout=(CONNECT_SECONDS, READ_SECONDS))
        except ApiException as e:
            raise api_error(e, "reading Events") from e
        events = [self._plain(e) for e in got.items]
        return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or
                      e["metadata"].get("creationTimestamp") or "")

    def pods(self, namespace: str, match_labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        try:
            got = self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                _request_timeout=(CONNECT_SECONDS, READ_SECONDS))
        except ApiException as e:
            raise api_error(e, "listing pods") from e
        return [self._plain(p) for p in got.items]

    def operator_logs(self, tail: int) -> dict[str, str]:
        """The last lines of each rolecall operator pod's log (by namespace/name), or why they could not be read
        (under the key "")."""
        try:
            found = self.core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=rolecall",
                                                          _request_timeout=(CONNECT_SECONDS, READ_SECONDS)).items
        except ApiException as e:
            return {"": f"could not list the operator pods: {e.status} {_message(e)}"}
        logs: dict[str, str] = {}
        for pod in found:
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            try:
                logs[key] = self.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace,
                                                              tail_lines=tail, _request_timeout=(CONNECT_SECONDS, 10))
            except ApiException as e:
                logs[key] = f"could not read the log: {e.status} {_message(e)}"
            except urllib3.exceptions.HTTPError as e:  # a node that does not answer must not spoil the report
                logs[key] = f"could not read the log: {e}"
        return logs or {"": "no pod labelled app.kubernetes.io/name=rolecall is visible (an operator run outside "
                           "the cluster logs where it runs)"}
