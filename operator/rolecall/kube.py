"""The only place that builds Kubernetes API clients (import-linter enforces it).

Configuration is loaded once (in-cluster, else KUBECONFIG). Ordinary calls share one ApiClient; pod exec
gets a fresh ApiClient per call, because the client's `stream()` swaps the ApiClient's request method
while it runs (kubernetes-client/python#928) and would corrupt concurrent calls on a shared client.
"""

from __future__ import annotations

import functools
import os

from kubernetes import client, config
from kubernetes.client.rest import ApiException

__all__ = ["ApiException", "apps", "authorization", "coordination", "core", "custom", "events", "exec_core", "load"]


@functools.cache
def load() -> client.Configuration:
    """Loads credentials once: in-cluster service account, else the kubeconfig named by KUBECONFIG."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    cfg = client.Configuration.get_default_copy()
    # Fan-out can run many calls at once; the default pool of 4 would serialise them.
    cfg.connection_pool_maxsize = int(os.environ.get("ROLECALL_API_POOL", "32"))
    return cfg


USER_AGENT = "rolecall-operator/0.1.0"  # also the field manager named in managedFields


def _client() -> client.ApiClient:
    api = client.ApiClient(load())
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


def coordination() -> client.CoordinationV1Api:
    return client.CoordinationV1Api(_shared())


def authorization() -> client.AuthorizationV1Api:
    return client.AuthorizationV1Api(_shared())


def events() -> client.EventsV1Api:
    return client.EventsV1Api(_shared())


def exec_core() -> client.CoreV1Api:
    """A CoreV1Api on its own ApiClient, for exactly one `stream()` call."""
    return client.CoreV1Api(_client())
