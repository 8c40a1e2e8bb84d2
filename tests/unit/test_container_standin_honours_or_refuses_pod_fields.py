"""The bed's container stand-in (hack/testbed/podspec.py): every pod field is honoured in the `podman run`
argv or named as unsupported, so no test passes because a field was silently ignored."""

from __future__ import annotations

from typing import Any

from testbed.containers import IpPool, _rfc3339, image_candidates
from testbed.podspec import TOKEN_DIR, expand, memory_bytes, run_argv, run_user, unsupported


def _operator_pod() -> dict[str, Any]:
    """What the chart's Deployment turns into after API defaulting and ServiceAccount admission."""
    return {
        "metadata": {"name": "rolecall-operator-abc", "namespace": "rolecall-system", "uid": "u-1"},
        "spec": {
            "serviceAccountName": "rolecall-operator", "serviceAccount": "rolecall-operator",
            "nodeName": "kwok-node-0", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "enableServiceLinks": True,
            "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "kube-api-access-x2x9z", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "containers": [{
                "name": "operator", "image": "rolecall/operator:0.1.0", "imagePullPolicy": "IfNotPresent",
                "args": ["--metrics-address=$(POD_IP):8080", "--health-address=$(POD_IP):8081", "--lit=$$(POD_IP)"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "health", "containerPort": 8081, "protocol": "TCP"}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "128Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health", "scheme": "HTTP"},
                                  "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
                                  "successThreshold": 1},
                "volumeMounts": [{"name": "kube-api-access-x2x9z", "mountPath": TOKEN_DIR, "readOnly": True}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            }],
        },
    }


def test_the_operator_pod_is_fully_supported_and_its_security_context_reaches_podman() -> None:
    pod = _operator_pod()
    assert unsupported(pod["spec"]) == []
    c = pod["spec"]["containers"][0]
    user, refused = run_user({"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True}, "")
    assert (user, refused) == ("65532:65532", None)
    argv = run_argv(name="rc", image="localhost/rolecall/operator:0.1.0", pod=pod, container=c,
                    env={"POD_IP": "127.9.255.1"}, env_file="/bed/env", user=user, token_dir="/bed/sa",
                    log_path="/bed/op.log",
                    labels={"bed": "1"})
    joined = " ".join(argv)
    for honoured in ("--user 65532:65532", "--read-only --read-only-tmpfs=false", "--cap-drop ALL",
                     "--security-opt no-new-privileges", f"--memory {256 * 2**20}", f"/bed/sa:{TOKEN_DIR}:ro",
                     "--network host", "--log-driver k8s-file", "--pull never", "--http-proxy=false",
                     "--env-file /bed/env"):
        assert honoured in joined, honoured
    assert argv[-3:] == ["--metrics-address=127.9.255.1:8080", "--health-address=127.9.255.1:8081",
                         "--lit=$(POD_IP)"]


def test_fields_it_cannot_honour_are_named() -> None:
    pod = _operator_pod()
    spec = pod["spec"]
    spec["volumes"].append({"name": "scratch", "emptyDir": {}})
    spec["hostPID"] = True
    c = spec["containers"][0]
    c["ports"].append({"containerPort": 9000, "hostPort": 9000})
    c["securityContext"]["privileged"] = True
    c["volumeMounts"].append({"name": "scratch", "mountPath": "/tmp"})
    c["env"].append({"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}})
    c["readinessProbe"] = {"exec": {"command": ["true"]}}
    c["securityContext"]["capabilities"]["add"] = ["NET_ADMIN", "NET_BIND_SERVICE"]
    c["startupProbe"] = {"httpGet": {"path": "/healthz", "port": "nope"}}
    c["stdin"] = True
    found = "\n".join(unsupported(spec))
    assert "NET_BIND_SERVICE" not in found
    for named in ("spec.hostPID", "spec.volumes[scratch]", "ports[9000].hostPort", "securityContext.privileged",
                  "volumeMounts[scratch]", "env[CPU].valueFrom (resourceFieldRef)", "readinessProbe.exec",
                  "spec.containers[operator].stdin", "capabilities.add[NET_ADMIN]",
                  "startupProbe: port 'nope' is not a named container port"):
        assert named in found, named
    spec["containers"].append(dict(c, name="sidecar"))
    assert "2 containers" in "\n".join(unsupported(spec))


def test_run_as_non_root_is_refused_for_a_root_image_in_the_kubelets_words() -> None:
    assert run_user({"runAsNonRoot": True}, "")[1] == "container has runAsNonRoot and image will run as root"
    assert run_user({"runAsNonRoot": True}, "65532:65532") == ("65532:65532", None)
    assert "non-numeric user (app)" in (run_user({"runAsNonRoot": True}, "app")[1] or "")
    assert run_user({}, "") == ("0", None)


def test_quantities_expansion_names_and_ips() -> None:
    assert [memory_bytes(q) for q in ("256Mi", "1G", "134217728", "0.5Gi")] == [268435456, 10**9, 134217728, 2**29]
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    assert _rfc3339("2026-11-26T11:00:00.123456789+01:00") == "2026-11-26T10:00:00Z"
    assert _rfc3339("2026-11-26T10:00:00Z") == "2026-11-26T10:00:00Z"
    assert _rfc3339("0001-01-01T00:00:00Z") is None
    assert image_candidates("rolecall/operator:0.1.0") == [
        "rolecall/operator:0.1.0", "localhost/rolecall/operator:0.1.0", "docker.io/rolecall/operator:0.1.0"]
    assert image_candidates("memcached") == ["memcached:latest", "localhost/memcached:latest",
                                             "docker.io/library/memcached:latest"]
    assert image_candidates("localhost:5000/x/y@sha256:ab") == ["localhost:5000/x/y@sha256:ab"]
    pool = IpPool("127.42.0.0/16")
    assert [pool.assign("a", None), pool.assign("b", None), pool.assign("a", None)] == [
        "127.42.255.1", "127.42.255.2", "127.42.255.1"]
    pool.release("a")
    assert pool.assign("c", None) == "127.42.255.1"
    assert pool.assign("d", "127.42.255.9") == "127.42.255.9"
    assert pool.assign("e", "127.42.255.9") != "127.42.255.9"  # never two pods on one IP
