"""A user bound to the `view` ClusterRole in a namespace can read pods there but cannot exec into them."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config  # type: ignore[import-untyped]

from harness import Cluster, deployment, running_pods, wait_for


def _bind_view(cluster: Cluster, namespace: str, user: str) -> None:
    client.RbacAuthorizationV1Api(cluster.api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": f"{user}-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def _client_as(cluster: Cluster, user: str) -> Any:
    """The user's own token on the local bed; elsewhere the admin impersonating the user (same authorizer)."""
    if cluster.local:
        return cluster.user_client(user)
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.set_default_header("Impersonate-User", user)
    return api


def _review(user_client: Any, namespace: str, verb: str, subresource: str = "") -> bool:
    attrs = {"namespace": namespace, "verb": verb, "resource": "pods"}
    if subresource:
        attrs["subresource"] = subresource
    review = client.AuthorizationV1Api(user_client).create_self_subject_access_review(
        {"spec": {"resourceAttributes": attrs}})
    return bool(review.status.allowed)


def test_view_user_self_review_allows_get_pods_and_denies_pods_exec(cluster: Cluster, namespace: str) -> None:
    alice = _client_as(cluster, "alice")
    assert _review(alice, namespace, "get") is False, "alice must start with no rights in a fresh namespace"
    _bind_view(cluster, namespace, "alice")
    # RBAC bindings reach the authorizer's cache shortly after they are written.
    wait_for(lambda: _review(alice, namespace, "get"), "alice's view binding to allow get pods")
    assert _review(alice, namespace, "list") is True
    assert _review(alice, namespace, "create", "exec") is False
    assert _review(alice, namespace, "delete") is False


def test_view_user_kubectl_exec_is_forbidden(local_bed: Cluster, namespace: str) -> None:
    _bind_view(local_bed, namespace, "alice")
    apps = client.AppsV1Api(local_bed.api_client)
    apps.create_namespaced_deployment(namespace, deployment("mc", "memcached", 1))
    pod = running_pods(local_bed, namespace, "app=mc", 1)[0].metadata.name
    alice = local_bed.user_kubeconfig("alice")

    def can_get() -> bool:
        got = local_bed.kubectl("get", "pod", pod, "-n", namespace, "-o", "name", kubeconfig=alice,
                                check=False)
        return got.returncode == 0 and got.stdout.strip() == f"pod/{pod}"

    wait_for(can_get, "alice to see the pod through her view binding")
    denied = local_bed.kubectl("exec", "-n", namespace, pod, "--", "id", "-un", kubeconfig=alice, check=False)
    assert denied.returncode != 0, denied.stdout
    # kubectl words it "Error from server (Forbidden)" over SPDY and "unable to upgrade connection: ... is
    # forbidden" over websockets; either way the apiserver's RBAC refusal is what it prints.
    assert f'is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace ' \
           f'"{namespace}"' in denied.stderr, denied.stderr
    assert denied.stdout == "", "the command must not have run"
