"""The only place that builds Kubernetes API clients (import-linter enforces it).

Configuration is loaded once (in-cluster, else KUBECONFIG). Ordinary calls share one ApiClient; pod exec
gets a fresh ApiClient per call, because the client's `stream()` swaps the ApiClient's request method
while it runs (kubernetes-client/python#928) and would corrupt concurrent calls on a shared client.

The calls the operator makes all the time (the pod index's listings and watch, Events) go by path through
the same client (`_request`: its configuration, auth, TLS and write guard) and are read as plain JSON: the
client's generated CoreV1Api class alone costs ~22 MiB of RSS once imported (measured with kubernetes 37),
a sixth of the operator, and is loaded only when a role needs it (pod exec, Secrets, Nodes).

Every call has a timeout (the client has none by default: a stopped apiserver would leave a socket hanging),
and a failure to reach the apiserver is raised as `Unavailable`, not as some urllib3 exception. Every call
that changes something (POST, PUT, PATCH, DELETE) first asks the write guard, which the leader election
installs: a process past its renew deadline writes nothing (Lease renewals and SubjectAccessReviews,
which change nothing, are exempt).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

__all__ = [
    "ApiException",
    "Unavailable",
    "admission_object_exists",
    "admissionregistration",
    "apps",
    "authorization",
    "check_write_guard",
    "coordination",
    "core",
    "create_event",
    "custom",
    "exec_argv",
    "exec_core",
    "load",
    "pod_events",
    "pod_page",
    "set_write_guard",
    "until_writes_allowed",
]


# Connections to the API server, and (main.py) threads for blocking calls: equal, so that a busy moment never
# discards pooled TLS connections ("Connection pool is full") only to open new ones.
POOL_SIZE = int(os.environ.get("ROLECALL_API_POOL", "32"))


@functools.cache
def load() -> client.Configuration:
    """Loads credentials once: in-cluster service account, else the kubeconfig named by KUBECONFIG."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    cfg = client.Configuration.get_default_copy()
    # Fan-out can run many calls at once; the default pool of 4 would serialise them.
    cfg.connection_pool_maxsize = POOL_SIZE
    return cfg


USER_AGENT = "rolecall-operator/0.1.0"  # also the field manager named in managedFields
# (connect, read) seconds for every API call: well inside the leader's renew deadline, so a hung apiserver
# fails a call (and the step that made it) instead of holding it open.
REQUEST_TIMEOUT = (float(os.environ.get("ROLECALL_API_CONNECT_TIMEOUT", "3")),
                   float(os.environ.get("ROLECALL_API_TIMEOUT", "10")))
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Writes that never need the guard: the Lease itself, and reviews that only ask a question.
_UNGUARDED = ("/apis/coordination.k8s.io/", "/apis/authorization.k8s.io/")


class Unavailable(Exception):
    """The apiserver could not be reached or did not answer in time: retrying later may help."""


_write_guard: Callable[[], None] = lambda: None  # noqa: E731 - replaced by the leader election


async def _never() -> None:
    await asyncio.Event().wait()  # the default guard never refuses, so nobody waits on this


_until_allowed: Callable[[], Awaitable[None]] = _never


def set_write_guard(guard: Callable[[], None], until_allowed: Callable[[], Awaitable[None]] = _never) -> None:
    """`guard()` raises when this process must not change anything now (e.g. it may no longer lead);
    `until_allowed()` returns once it may again (it may wait for ever: the caller bounds or cancels it)."""
    global _write_guard, _until_allowed
    _write_guard, _until_allowed = guard, until_allowed


async def until_writes_allowed() -> None:
    """Waits until the write guard lets this process act again (the next Lease renewal landing in time)."""
    await _until_allowed()


def check_write_guard() -> None:
    """For side effects outside the API (engine calls): raises what the guard raises."""
    _write_guard()


class _ApiClient(client.ApiClient):  # type: ignore[misc]
    def call_api(self, method: str, url: str, *args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        if method in _WRITES and not any(p in url for p in _UNGUARDED):
            _write_guard()
        try:
            return super().call_api(method, url, *args, _request_timeout=_request_timeout or REQUEST_TIMEOUT,
                                    **kwargs)
        except urllib3.exceptions.HTTPError as e:
            raise Unavailable(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e


def _client() -> client.ApiClient:
    api = _ApiClient(load())
    api.user_agent = USER_AGENT
    return api


@functools.cache
def _shared() -> client.ApiClient:
    return _client()


def core() -> client.CoreV1Api:
    return client.CoreV1Api(_shared())


def apps() -> client.AppsV1Api:
    return client.AppsV1Api(_shared())


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(_shared())


@functools.cache
def _lease_client() -> client.ApiClient:
    return _client()


def coordination() -> client.CoordinationV1Api:
    """Leases only, on their own client and connection pool: a renewal must never wait for a connection
    behind thousands of queued request calls (it would miss its renew deadline and stop all work)."""
    return client.CoordinationV1Api(_lease_client())


def authorization() -> client.AuthorizationV1Api:
    return client.AuthorizationV1Api(_shared())


def admissionregistration() -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(_shared())


def exec_core() -> client.CoreV1Api:
    """A CoreV1Api on its own ApiClient, for exactly one `stream()` call."""
    return client.CoreV1Api(_client())


def exec_argv(namespace: str, pod: str, container: str | None, argv: list[str],
              timeout: float) -> tuple[int, str, str]:
    """Runs `argv` (no shell) in the pod's container through the API server: (exit code, stdout, stderr).

    Blocking: call it in a thread. A command still running at `timeout` is reported as exit code -1.
    """
    from kubernetes.stream import stream
    from kubernetes.stream.ws_client import ERROR_CHANNEL

    _write_guard()  # stream() bypasses call_api, and an exec is a side effect
    kw = {"container": container} if container else {}
    resp = stream(exec_core().connect_get_namespaced_pod_exec, pod, namespace, command=argv, stdin=False,
                  stdout=True, stderr=True, tty=False, _preload_content=False, **kw)
    try:
        resp.run_forever(timeout=timeout)
        out, err = resp.read_stdout() or "", resp.read_stderr() or ""
        if resp.is_open():
            return -1, out, err or f"still running after {timeout:g}s"
        outcome = yaml.safe_load(resp.read_channel(ERROR_CHANNEL) or "{}") or {}
    finally:
        resp.close()
    if outcome.get("status", "Success") == "Success":
        return 0, out, err
    # The exit code is a cause with reason ExitCode; runtimes that report only a message (KWOK's local
    # exec does) still fail the call, with their message kept for status.
    causes = (outcome.get("details") or {}).get("causes") or []
    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
    message = str(outcome.get("message") or "")
    return int(code) if code and str(code).isdigit() else 1, out, err or message


def admission_object_exists(plural: str, name: str) -> bool:
    """Whether an admissionregistration.k8s.io/v1 object exists (e.g. a ValidatingAdmissionPolicy)."""
    api = admissionregistration()
    read = {
        "validatingadmissionpolicies": api.read_validating_admission_policy,
        "validatingadmissionpolicybindings": api.read_validating_admission_policy_binding,
        "mutatingadmissionpolicies": api.read_mutating_admission_policy,
        "mutatingadmissionpolicybindings": api.read_mutating_admission_policy_binding,
        "mutatingwebhookconfigurations": api.read_mutating_webhook_configuration,
    }[plural]
    try:
        read(name)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _request(method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
             api_client: client.ApiClient | None = None, timeout: Any = None) -> urllib3.BaseHTTPResponse:
    """One call by path, as the generated API classes make it with `_preload_content=False`: the client builds
    the URL and the auth headers and raises ApiException for an error status; the answer is left unread."""
    api = api_client or _shared()
    headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body is not None else {})}
    request = api.param_serialize(method, path, query_params=query or [], header_params=headers, body=body,
                                  auth_settings=["BearerToken"])
    answer = api.call_api(*request, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()
        raise ApiException.from_response(http_resp=answer, body=None, data=None)
    unread: urllib3.BaseHTTPResponse = answer.response
    return unread


def _pods_path(namespace: str | None) -> str:
    return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"


def create_event(namespace: str, body: dict[str, Any]) -> None:
    """Posts a core/v1 Event; the answer is not read into anything."""
    _request("POST", f"/api/v1/namespaces/{namespace}/events", body=body).data  # noqa: B018 - drains the answer


def pod_page(namespace: str | None, limit: int, token: str | None) -> dict[str, Any]:
    """One page of a pod list (all namespaces when `namespace` is None) as plain JSON: the pod index keeps a
    few fields per pod, and building client models for thousands of pods would cost more than the index."""
    query = [("limit", str(limit)), *([("continue", token)] if token else [])]
    return dict(json.loads(_request("GET", _pods_path(namespace), query).data))


def pod_events(namespace: str | None, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
    """A pod watch from `resource_version`, as plain JSON events (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).

    On its own ApiClient (with TCP keepalive), so a long-lived stream never holds a connection of the shared
    pool. Ends when the server closes it (after about `timeout_seconds`); a stream that stays silent 10 s
    longer than that, or breaks, raises Unavailable.
    """
    from kubernetes.utils.keepalive import tcp_keepalive_socket_options
    from kubernetes.watch.watch import iter_resp_lines

    load()  # the credentials, loaded once as the client's default configuration
    watching = client.Configuration.get_default_copy()
    # A peer that vanished without a word (a dropped NAT entry, a dead apiserver behind a load balancer) is
    # found by TCP keepalive within ~25 s instead of the read timeout.
    watching.socket_options = tcp_keepalive_socket_options(idle=10, interval=5, count=3)
    api_client = _ApiClient(watching)
    api_client.user_agent = USER_AGENT
    query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
             ("timeoutSeconds", str(timeout_seconds))]
    resp = _request("GET", _pods_path(namespace), query, api_client=api_client,
                    timeout=(REQUEST_TIMEOUT[0], timeout_seconds + 10))
    try:
        for line in iter_resp_lines(resp):
            if line.strip():
                yield json.loads(line)
    except urllib3.exceptions.HTTPError as e:
        raise Unavailable(f"pod watch broken: {type(e).__name__}: {e}") from e
    finally:
        resp.release_conn()
