"""What the bed's container stand-in can honour of a pod spec, and the `podman run` argv that honours it.

Pure functions (no cluster, no podman), so unit tests cover them. A field the stand-in cannot honour makes
`unsupported()` name it, and the pod fails with that message: no test may pass by a field being ignored.
Fields that only matter to the scheduler (nodeSelector, affinity, tolerations, priority) were honoured by the
real kube-scheduler before the pod reached us; API defaults (dnsPolicy, terminationMessagePath, ...) are
accepted at their default values only.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The projected volume the ServiceAccount admission plugin adds (kube-api-access-xxxxx): emulated with a
# TokenRequest bound to the pod, the cluster CA and the namespace, mounted read-only.
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 - a path, not a secret

POD_FIELDS = {
    "containers", "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "restartPolicy",
    "terminationGracePeriodSeconds", "nodeName", "nodeSelector", "affinity", "tolerations", "priority",
    "priorityClassName", "schedulerName", "securityContext", "volumes", "imagePullSecrets", "dnsPolicy",
    "enableServiceLinks", "preemptionPolicy",
}
POD_DEFAULTS = {"dnsPolicy": "ClusterFirst"}
POD_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "supplementalGroups", "fsGroup"}
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources", "securityContext",
    "livenessProbe", "readinessProbe", "startupProbe", "volumeMounts", "terminationMessagePath",
    "terminationMessagePolicy", "workingDir",
}
CONTAINER_DEFAULTS = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
CONTAINER_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                      "allowPrivilegeEscalation", "capabilities", "seccompProfile", "privileged"}
FIELD_REFS = {"metadata.name", "metadata.namespace", "metadata.uid", "status.podIP", "status.hostIP",
              "spec.nodeName", "spec.serviceAccountName"}
PROBE_FIELDS = {"httpGet", "tcpSocket", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                "failureThreshold", "successThreshold", "terminationGracePeriodSeconds"}


def _token_volume(volume: dict[str, Any]) -> bool:
    sources = volume.get("projected", {}).get("sources", [])
    return volume.get("name", "").startswith("kube-api-access-") and any("serviceAccountToken" in s for s in sources)


def unsupported(spec: dict[str, Any]) -> list[str]:
    """Every field of the pod spec the stand-in would have to ignore, as readable paths."""
    out = [f"spec.{k}" for k in spec if k not in POD_FIELDS]
    out += [f"spec.{k}={spec[k]}" for k, v in POD_DEFAULTS.items() if spec.get(k, v) != v]
    if spec.get("priority") is not None and "priorityClassName" not in spec and spec["priority"] != 0:
        out.append("spec.priority")
    out += [f"spec.securityContext.{k}" for k in spec.get("securityContext") or {} if k not in POD_SECURITY]
    seccomp = (spec.get("securityContext") or {}).get("seccompProfile", {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Unconfined"):
        out.append(f"spec.securityContext.seccompProfile.type={seccomp}")
    token_volumes = set()
    for v in spec.get("volumes") or []:
        if _token_volume(v):
            token_volumes.add(v["name"])
        else:
            out.append(f"spec.volumes[{v.get('name')}] (only the ServiceAccount token volume is emulated)")
    containers = spec.get("containers") or []
    if len(containers) != 1:
        out.append(f"spec.containers: {len(containers)} containers (the stand-in runs exactly one)")
    for c in containers:
        where = f"spec.containers[{c.get('name')}]"
        out += [f"{where}.{k}" for k in c if k not in CONTAINER_FIELDS]
        out += [f"{where}.{k}={c[k]}" for k, v in CONTAINER_DEFAULTS.items() if c.get(k, v) != v]
        security = c.get("securityContext") or {}
        out += [f"{where}.securityContext.{k}" for k in security if k not in CONTAINER_SECURITY]
        if security.get("privileged"):
            out.append(f"{where}.securityContext.privileged")
        # Added capabilities would apply to the host's network namespace (the stand-in's pods share it).
        added = set((security.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        out += [f"{where}.securityContext.capabilities.add[{cap}]" for cap in sorted(added)]
        seccomp = security.get("seccompProfile", {}).get("type")
        if seccomp not in (None, "RuntimeDefault", "Unconfined"):
            out.append(f"{where}.securityContext.seccompProfile.type={seccomp}")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in token_volumes or m.get("mountPath") != TOKEN_DIR:
                out.append(f"{where}.volumeMounts[{m.get('name')}]")
        for p in c.get("ports") or []:
            if p.get("hostPort") or p.get("hostIP"):
                out.append(f"{where}.ports[{p.get('containerPort')}].hostPort")
            if p.get("protocol", "TCP") != "TCP":
                out.append(f"{where}.ports[{p.get('containerPort')}].protocol={p['protocol']}")
        for e in c.get("env") or []:
            source = e.get("valueFrom")
            if source is None:
                continue
            ref = source.get("fieldRef", {}).get("fieldPath")
            if ref not in FIELD_REFS and not {"secretKeyRef", "configMapKeyRef"} & set(source):
                out.append(f"{where}.env[{e.get('name')}].valueFrom ({ref or ', '.join(source)})")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            out += [f"{where}.{kind}.{k}" for k in probe if k not in PROBE_FIELDS]
            scheme = (probe.get("httpGet") or {}).get("scheme", "HTTP")
            if scheme != "HTTP":
                out.append(f"{where}.{kind}.httpGet.scheme={scheme}")
            port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
            named = {p.get("name") for p in c.get("ports") or []}
            if isinstance(port, str) and not port.isdigit() and port not in named:
                out.append(f"{where}.{kind}: port {port!r} is not a named container port")
        limits = (c.get("resources") or {}).get("limits") or {}
        out += [f"{where}.resources.limits.{r}" for r in sorted(set(limits) - {"cpu", "memory"})]
        if "memory" in limits and not re.fullmatch(r"[0-9.]+(e[0-9]+|Ki|Mi|Gi|Ti|k|M|G|T)?", str(limits["memory"])):
            out.append(f"{where}.resources.limits.memory={limits['memory']}")
    return out


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values: `$$` escapes, unknown references stay."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(one, text)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (256Mi, 1G, 1e9, 134217728) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def security(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The effective security context: the container's fields over the pod's."""
    pod = {k: v for k, v in (pod_spec.get("securityContext") or {}).items() if k in CONTAINER_SECURITY}
    return pod | (container.get("securityContext") or {})


def run_user(effective: dict[str, Any], image_user: str) -> tuple[str, str | None]:
    """(--user value, error): runAsUser/runAsGroup over the image's USER; runAsNonRoot refused for root,
    in the kubelet's words."""
    user = str(effective["runAsUser"]) if "runAsUser" in effective else (image_user.split(":")[0] or "0")
    group = effective.get("runAsGroup")
    if group is None and "runAsUser" not in effective and ":" in image_user:
        group = image_user.split(":", 1)[1]
    if effective.get("runAsNonRoot"):
        if not user.isdigit():
            return "", (f"container has runAsNonRoot and image has non-numeric user ({user}), "
                        "cannot verify user is non-root")
        if int(user) == 0:
            return "", "container has runAsNonRoot and image will run as root"
    return (f"{user}:{group}" if group is not None else user), None


def run_argv(*, name: str, image: str, pod: dict[str, Any], container: dict[str, Any], env: dict[str, str],
             env_file: str, user: str, token_dir: str | None, log_path: str, labels: dict[str, str]) -> list[str]:
    """`podman run` for one container, honouring what unsupported() accepted. The environment is in `env_file`
    (written by the caller, mode 0600): values from Secrets never appear on a command line."""
    spec = pod["spec"]
    effective = security(spec, container)
    argv = ["podman", "run", "--detach", "--name", name, "--network", "host", "--hostname", pod["metadata"]["name"],
            "--http-proxy=false", "--user", user, "--log-driver", "k8s-file", "--log-opt", f"path={log_path}",
            "--pull", "never"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    pod_security = spec.get("securityContext") or {}
    for group in [*(pod_security.get("supplementalGroups") or []), *([pod_security["fsGroup"]]
                                                                     if "fsGroup" in pod_security else [])]:
        argv += ["--group-add", str(group)]  # fsGroup: a supplementary group, as the kubelet adds it
    if effective.get("readOnlyRootFilesystem"):
        argv += ["--read-only", "--read-only-tmpfs=false"]  # podman would add writable tmpfs mounts otherwise
    if effective.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    caps = effective.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        argv += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        argv += ["--cap-add", cap]
    if (effective.get("seccompProfile") or {}).get("type") == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]  # RuntimeDefault is podman's default profile
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        argv += ["--memory", str(memory_bytes(str(limits["memory"])))]
    if "cpu" in limits:
        argv += ["--cpus", cpus(str(limits["cpu"]))]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    argv += ["--env-file", env_file]
    if token_dir is not None:
        argv += ["--volume", f"{token_dir}:{TOKEN_DIR}:ro"]
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        argv += ["--entrypoint", json.dumps(command)]  # replaces ENTRYPOINT and the image's CMD, as in Kubernetes
    argv.append(image)
    return argv + args
