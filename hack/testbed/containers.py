"""The container stand-in: for each pod labelled testbed.rolecall.dev/runtime=podman, run the pod's container
from an image in local podman storage, the way a kubelet would. KWOK's pod-ready stage leaves these pods
alone (hack/kwok/pod-ready.yaml), so this process owns their IP, phase, conditions and containerStatuses.

What it honours (hack/testbed/podspec.py lists the fields; any other field fails the pod with its name):
- the image, looked up in local storage with the name normalised (never pulled: a missing image gives
  ErrImagePull, then ImagePullBackOff, and is looked up again with back-off);
- command/args/env with $(VAR) expansion, fieldRef (POD_NAMESPACE, POD_IP, ...), secretKeyRef and
  configMapKeyRef; KUBERNETES_SERVICE_HOST/_PORT point at the bed's apiserver on loopback (no Service env);
- the ServiceAccount token volume: a TokenRequest bound to the pod (refreshed at 80% of its life or hourly),
  the cluster CA and the namespace at /var/run/secrets/kubernetes.io/serviceaccount, read-only;
- securityContext: runAsUser/runAsGroup/runAsNonRoot (refused for root in the kubelet's words),
  readOnlyRootFilesystem (no writable tmpfs added), allowPrivilegeEscalation=false, capabilities, seccomp
  RuntimeDefault/Unconfined, supplementalGroups; memory and cpu limits;
- liveness/readiness/startup probes (httpGet, tcpSocket) against the pod IP, reflected in Ready and
  ContainersReady; liveness failures restart the container; restarts per restartPolicy with the kubelet's
  back-off (immediately, then 10s doubling to 5 min, reset after 10 min of running);
- logs: podman's k8s-file driver writes the CRI log format; a KWOK `Logs` object per pod points
  `kubectl logs` (and `-p`, the previous container's file) at it.

The container shares the host network (pod IPs are loopback addresses here): it must bind its pod IP.
`kubectl exec` is refused for these pods: KWOK's exec runs the command on this machine, not in the container,
and has no hook to wrap it in `podman exec`; a per-pod KWOK `Exec` without a local target makes it refuse.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from testbed import podspec, podwatch

RUNTIME_LABEL = "testbed.rolecall.dev/runtime"
RUNTIME_SELECTOR = f"{RUNTIME_LABEL}=podman"
BED_LABEL = "testbed.rolecall.dev/bed"
POD_UID_LABEL = "testbed.rolecall.dev/pod-uid"
HACK = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = HACK / "image" / "containers.conf"
log = logging.getLogger("containers")
TIMEOUT = (5, 15)  # (connect, read) seconds for the stand-in's API calls: a frozen apiserver never hangs a runner


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError), in the kubelet's words."""


def podman_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return env | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 60, check: bool = False,
           input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], text=True, capture_output=True, timeout=timeout, check=check,
                          env=podman_env(), input=input_text if input_text is not None else "")


def bed_id(bed_dir: Path) -> str:
    return f"{zlib.crc32(str(bed_dir.resolve()).encode()):08x}"


def remove_bed_containers(bed_dir: Path) -> None:
    """Every container this bed's stand-in started (they outlive the stand-in process, as under a kubelet)."""
    if shutil.which("podman") is None:
        return
    listed = podman("ps", "--all", "--quiet", "--filter", f"label={BED_LABEL}={bed_id(bed_dir)}")
    ids = listed.stdout.split()
    if ids:
        podman("rm", "--force", "--time", "0", *ids, timeout=120)
    _kill_orphaned_containers(bed_dir)


def _kill_orphaned_containers(bed_dir: Path) -> None:
    """Container processes of this bed that podman no longer lists (seen once: `podman rm` racing the
    container's own cleanup dropped the record and left conmon and the process running). A new bed in the
    same directory hands out the same pod IPs, and such a process would hold one of them. Found by their
    conmon, whose log path lies under this bed's containers/ directory."""
    marker = f"k8s-file:{(bed_dir / 'containers').resolve()}/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"conmon") or not any(a.decode(errors="replace").startswith(marker)
                                                                    for a in argv):
            continue
        conmon = int(proc.name)
        for child in _children(conmon):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(conmon, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def image_candidates(image: str) -> list[str]:
    """Local names a kubelet's pull of `image` could mean: as given, localhost/, and docker.io/ forms."""
    name, tag = image, ""
    if "@" not in image:
        slash, colon = image.rfind("/"), image.rfind(":")
        if colon > slash:
            name, tag = image[:colon], image[colon:]
        else:
            tag = ":latest"
    else:
        name, tag = image.split("@", 1)[0], "@" + image.split("@", 1)[1]
    first = name.split("/", 1)[0]
    if "." in first or ":" in first or first == "localhost":
        return [name + tag]
    library = name if "/" in name else f"library/{name}"
    return [name + tag, f"localhost/{name}{tag}", f"docker.io/{library}{tag}"]


@dataclass
class Image:
    ref: str
    id: str
    user: str
    digest: str


def find_image(image: str) -> Image | None:
    for ref in image_candidates(image):
        out = podman("image", "inspect", "--format", "json", ref)
        if out.returncode == 0:
            data = json.loads(out.stdout)[0]
            return Image(ref, data["Id"], (data.get("Config") or {}).get("User") or "", data.get("Digest") or "")
    return None


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    """One probe's schedule and counters, as the kubelet keeps them."""

    spec: dict[str, Any]
    started: float
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    passed: bool = False

    def __post_init__(self) -> None:
        self.next_at = self.started + self.spec.get("initialDelaySeconds", 0)


@dataclass
class Running:
    id: str
    started_at: str
    started_mono: float
    probes: dict[str, Probe] = field(default_factory=dict)
    process: tuple[int, str] | None = None  # (host pid, start time) of its main process, from podman

    def alive(self) -> bool:
        """Checked twice a second without spawning podman: the main process is still the one podman started
        (a reused pid has another start time). When it is gone, podman is asked how it ended."""
        if self.process is None:
            return False
        return _start_time(self.process[0]) == self.process[1]


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class IpPool:
    """Pod IPs for container pods: the top /24 of the bed's loopback /16, which KWOK (allocating from the
    bottom) never reaches at test sizes."""

    def __init__(self, pod_cidr: str) -> None:
        self.prefix = pod_cidr.split("/", 1)[0].rsplit(".", 2)[0] + ".255."
        self.used: dict[str, str] = {}  # uid -> ip
        self.lock = threading.Lock()

    def assign(self, uid: str, have: str | None) -> str:
        with self.lock:
            if have and have.startswith(self.prefix) and self.used.get(uid, have) == have and all(
                    ip != have for other, ip in self.used.items() if other != uid):
                self.used[uid] = have
                return have
            if uid in self.used:
                return self.used[uid]
            taken = set(self.used.values())
            ip = next(f"{self.prefix}{n}" for n in range(1, 255) if f"{self.prefix}{n}" not in taken)
            self.used[uid] = ip
            return ip

    def release(self, uid: str) -> None:
        with self.lock:
            self.used.pop(uid, None)


class PodRunner(threading.Thread):
    """Runs one pod's container until the pod goes; publishes what happened to the pod's status."""

    def __init__(self, owner: ContainerStandIns, pod: dict[str, Any]) -> None:
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.owner = owner
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.container: dict[str, Any] = pod["spec"]["containers"][0]
        self.cname: str = f"rcbed-{self.uid[:13]}-{self.container['name']}"
        self.dir = owner.root / f"{self.ns}.{self.pod_name}.{self.uid[:8]}"
        self.stopping = threading.Event()
        status = pod.get("status") or {}
        old = {s["name"]: s for s in status.get("containerStatuses") or []}.get(self.container["name"], {})
        self.restarts: int = old.get("restartCount", 0)
        self.ip = ""
        self.running: Running | None = None
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.last_state: dict[str, Any] = old.get("lastState") or {}
        self.phase = "Pending"
        self.not_before = 0.0  # the next attempt, after a back-off
        self.backoff = 0.0  # crash and config errors
        self.pull_backoff = 0.0  # a missing image, kept apart as the kubelet keeps it
        self.pull_failed_at = 0.0
        self.image: Image | None = None
        self.token_due = 0.0
        self.published: dict[str, Any] = {}
        self.transitions: dict[str, tuple[str, str]] = {}
        self.start_time = status.get("startTime") or now()

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s/%s: stand-in failed", self.ns, self.pod_name)

    def _run(self) -> None:
        problems = podspec.unsupported(self.pod["spec"])
        if problems:
            # Pending with a waiting reason, as a kubelet leaves a pod whose container config it cannot use
            # (a Failed pod would make its ReplicaSet create replacements without end).
            message = "the bed's container stand-in cannot honour: " + "; ".join(problems)
            self.waiting = ("UnsupportedByTestBed", message)
            self._kwok_rules()  # exec refused here too, never run on the host
            self._event("Warning", "UnsupportedByTestBed", message)
            self._publish()
            self.stopping.wait()
            self.owner.forget(self.pod)
            return
        self.ip = self.owner.pool.assign(self.uid, (self.pod.get("status") or {}).get("podIP"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._kwok_rules()
        self._adopt()
        self._publish()
        while not self.stopping.is_set():
            pause = 0.5
            try:
                self._step()
                self._publish()
            except Exception as e:  # an apiserver blip, a podman hiccup: the pod is looked after again shortly
                log.warning("%s/%s: %s: %s", self.ns, self.pod_name, type(e).__name__, e)
                pause = 2.0
            self.stopping.wait(pause)
        self._finish()

    def _finish(self) -> None:
        """The pod is going: stop the container with the pod's grace period, then let the pod object go (KWOK's
        pod-delete stage leaves these pods to us, as the API leaves a pod's deletion to its kubelet)."""
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        self._stop_container(int(grace) if grace is not None else self._grace())
        self._remove_container()
        self.owner.pool.release(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.owner.forget(self.pod)

    def _step(self) -> None:
        if self.phase in ("Failed", "Succeeded"):
            return
        clock = time.monotonic()
        if self.running is not None:
            if self.running.alive():
                self._probe(clock)
                return
            state = self._inspect()
            if state is None or state["Status"] not in ("running", "created", "configured"):
                self._exited(state)
            else:  # podman says running: (re)learn its main process
                self.running.process = _process(state)
                self._probe(clock)
            return
        if clock < self.not_before:
            if self.waiting and self.waiting[0] == "ErrImagePull" and clock > self.pull_failed_at + 1:
                self.waiting = ("ImagePullBackOff", self.waiting[1])  # as the kubelet shows it between attempts
            return
        self.image = find_image(self.container["image"])
        if self.image is None:
            message = (f"image {self.container['image']!r} is not in local podman storage (tried "
                       f"{', '.join(image_candidates(self.container['image']))}); the bed never pulls: `make image`")
            if self.waiting is None or self.waiting[0] not in ("ErrImagePull", "ImagePullBackOff"):
                self._event("Warning", "Failed", f"Failed to pull image {self.container['image']!r}: {message}")
            self.waiting, self.pull_failed_at = ("ErrImagePull", message), clock
            delay = self.pull_backoff
            self.pull_backoff = min(300.0, max(10.0, self.pull_backoff * 2))
            self.not_before = clock + delay
            return
        self.pull_backoff = 0.0
        self._start()

    # --- container lifecycle --------------------------------------------------------------------------
    def _adopt(self) -> None:
        """A restarted stand-in keeps the container it started before, as a restarted kubelet does."""
        state = self._inspect()
        if state is not None and state["Status"] == "running":
            self.image = find_image(self.container["image"])
            self.running = Running(state["Id"], state["StartedAt"], time.monotonic(), self._new_probes(),
                                   _process(state))
            self.waiting, self.phase = None, "Running"
            self._write_token()
            log.info("%s/%s: adopted running container %s", self.ns, self.pod_name, state["Id"][:12])

    def _inspect(self) -> dict[str, Any] | None:
        out = podman("container", "inspect", "--format", "json", self.cname)
        if out.returncode != 0:
            return None
        data = json.loads(out.stdout)[0]
        state = data["State"]
        return {"Id": data["Id"], "Status": state["Status"], "ExitCode": state.get("ExitCode", 0),
                "Pid": state.get("Pid") or 0,
                "StartedAt": _rfc3339(state.get("StartedAt")), "FinishedAt": _rfc3339(state.get("FinishedAt")),
                "OOMKilled": state.get("OOMKilled", False)}

    def _env(self) -> dict[str, str]:
        api = urlsplit(self.owner.server)
        env = {"KUBERNETES_SERVICE_HOST": api.hostname or "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port),
               "KUBERNETES_SERVICE_PORT_HTTPS": str(api.port)}
        for e in self.container.get("env") or []:
            value = self._value_from(e["valueFrom"]) if "valueFrom" in e else podspec.expand(e.get("value", ""), env)
            if value is not None:
                env[e["name"]] = value
        return env

    def _value_from(self, source: dict[str, Any]) -> str | None:
        """A valueFrom, as the kubelet resolves it; a missing Secret, ConfigMap or key is a ConfigError unless
        the reference is optional."""
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            return {"metadata.name": self.pod_name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                    "status.podIP": self.ip, "status.hostIP": "127.0.0.1",
                    "spec.nodeName": self.pod["spec"].get("nodeName", ""),
                    "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default")}[path]
        kind = "secret" if "secretKeyRef" in source else "configmap"
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
        core = self.owner.api
        try:
            if kind == "secret":
                raw = (core.read_namespaced_secret(ref["name"], self.ns, _request_timeout=TIMEOUT).data or {})
                value = raw.get(ref["key"])
                value = None if value is None else base64.b64decode(value).decode()
            else:
                value = (core.read_namespaced_config_map(ref["name"], self.ns, _request_timeout=TIMEOUT).data
                         or {}).get(ref["key"])
        except ApiException as e:
            if e.status != 404:
                raise
            if ref.get("optional"):
                return None
            raise ConfigError(f'{kind} "{ref["name"]}" not found') from e
        if value is None and not ref.get("optional"):
            raise ConfigError(f"couldn't find key {ref['key']} in {kind.capitalize()} {self.ns}/{ref['name']}")
        return value

    def _uses_token(self) -> bool:
        return any(m.get("mountPath") == podspec.TOKEN_DIR for m in self.container.get("volumeMounts") or [])

    def _write_token(self) -> None:
        if not self._uses_token():
            return
        sa = self.pod["spec"].get("serviceAccountName", "default")
        tr = self.owner.api.create_namespaced_service_account_token(sa, self.ns, {"spec": {
            "expirationSeconds": 3607,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": self.uid}}},
            _request_timeout=TIMEOUT)
        life = (tr.status.expiration_timestamp - dt.datetime.now(dt.UTC)).total_seconds()
        self.token_due = time.monotonic() + min(0.8 * life, 3600)
        tokens = self.dir / "serviceaccount"
        tokens.mkdir(exist_ok=True)
        tokens.chmod(0o755)
        for name, text in (("token", tr.status.token), ("ca.crt", self.owner.ca), ("namespace", self.ns)):
            tmp = tokens / f".{name}.tmp"
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(tokens / name)  # atomic: the operator never reads half a token

    def _start(self) -> None:
        assert self.image is not None
        effective = podspec.security(self.pod["spec"], self.container)
        user, refused = podspec.run_user(effective, self.image.user)
        try:
            if refused:
                raise ConfigError(refused)
            env = self._env()  # before any side effect: a missing Secret key changes nothing
        except ConfigError as e:
            self.waiting = ("CreateContainerConfigError", str(e))
            self._event("Warning", "Failed", f"Error: {e}")
            self._back_off()
            return
        self._write_token()
        env_file = self.dir / "env"  # not on podman's command line, which every local user can read
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        current = logs / f"{self.container['name']}.log"
        self._remove_container()
        if current.exists():
            current.replace(logs / f"{self.container['name']}.previous.log")  # kubectl logs -p
        argv = podspec.run_argv(
            name=self.cname, image=self.image.ref, pod=self.pod, container=self.container, env=env,
            env_file=str(env_file), user=user,
            token_dir=str(self.dir / "serviceaccount") if self._uses_token() else None,
            log_path=str(current), labels={BED_LABEL: self.owner.bed, POD_UID_LABEL: self.uid})
        out = subprocess.run(argv, text=True, capture_output=True, timeout=120, env=podman_env(),
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            message = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
            self.waiting = ("RunContainerError", message)
            self._event("Warning", "Failed", f"Error: {message}")
            self._back_off()
            return
        state = self._inspect()
        self.running = Running(out.stdout.strip(), (state or {}).get("StartedAt") or now(), time.monotonic(),
                               self._new_probes(), _process(state))
        self.waiting, self.phase = None, "Running"
        self._event("Normal", "Started", f"Started container {self.container['name']} (podman, image "
                                         f"{self.image.ref})")
        log.info("%s/%s: started %s as %s", self.ns, self.pod_name, self.image.ref, self.cname)

    def _exited(self, state: dict[str, Any] | None) -> None:
        assert self.running is not None
        code = (state or {}).get("ExitCode", 137)
        oom = (state or {}).get("OOMKilled", False)
        self.last_state = {"terminated": {
            "exitCode": code, "reason": "OOMKilled" if oom else ("Completed" if code == 0 else "Error"),
            "startedAt": self.running.started_at, "finishedAt": (state or {}).get("FinishedAt") or now(),
            "containerID": f"podman://{self.running.id}"}}
        ran = time.monotonic() - self.running.started_mono
        self.running = None
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            self.phase = "Succeeded" if code == 0 else "Failed"
            self.waiting = None
            return
        if ran >= 600:
            self.backoff = 0.0
        self.restarts += 1
        self._back_off(restart=True)

    def _back_off(self, restart: bool = False) -> None:
        """Immediately the first time, then 10s doubling to 5 minutes, as the kubelet does."""
        delay = self.backoff
        self.backoff = min(300.0, max(10.0, self.backoff * 2))
        self.not_before = time.monotonic() + delay
        if restart and delay > 0:
            self.waiting = ("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container="
                                                f"{self.container['name']} pod={self.pod_name}_{self.ns}")
            self._event("Warning", "BackOff", "Back-off restarting failed container "
                                              f"{self.container['name']} in pod {self.pod_name}_{self.ns}")
        elif restart:
            self.waiting = ("ContainerCreating", "")

    def _stop_container(self, grace: int) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; the container stays for inspection."""
        if self._inspect() is not None:
            podman("stop", "--time", str(grace), self.cname, timeout=grace + 30)

    def _remove_container(self) -> None:
        podman("rm", "--force", "--time", "0", self.cname)

    def _grace(self) -> int:
        return int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    # --- probes ---------------------------------------------------------------------------------------
    def _new_probes(self) -> dict[str, Probe]:
        clock = time.monotonic()
        return {kind: Probe(self.container[kind], clock) for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                if kind in self.container}

    def _probe(self, clock: float) -> None:
        assert self.running is not None
        if clock >= self.token_due:
            self._write_token()
        probes = self.running.probes
        startup = probes.get("startupProbe")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = probes.get(kind)
            if probe is None or clock < probe.next_at or (startup and not startup.passed and kind != "startupProbe"):
                continue
            if kind == "startupProbe" and probe.passed:
                continue
            probe.next_at = clock + probe.spec.get("periodSeconds", 10)
            failure = self._check(probe.spec)
            if failure is None:
                probe.successes, probe.failures = probe.successes + 1, 0
                if probe.successes >= probe.spec.get("successThreshold", 1):
                    probe.passed = True
                continue
            probe.successes, probe.failures = 0, probe.failures + 1
            name = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}[kind]
            self._event("Warning", "Unhealthy", f"{name} probe failed: {failure}")
            if probe.failures >= probe.spec.get("failureThreshold", 3):
                probe.passed = False
                if kind != "readinessProbe":
                    self._event("Normal", "Killing", f"Container {self.container['name']} failed "
                                                     f"{name.lower()} probe, will be restarted")
                    grace = probe.spec.get("terminationGracePeriodSeconds") or self._grace()
                    self._stop_container(int(grace))  # the next step inspects it: lastState has the real exit
                    return

    def _check(self, spec: dict[str, Any]) -> str | None:
        timeout = spec.get("timeoutSeconds", 1)
        if "httpGet" in spec:
            get = spec["httpGet"]
            url = f"http://{get.get('host') or self.ip}:{self._port(get['port'])}{get.get('path', '/')}"
            try:
                answer = httpx.get(url, timeout=timeout, headers={h["name"]: h["value"]
                                                                  for h in get.get("httpHeaders") or []})
            except httpx.HTTPError as e:
                return f'Get "{url}": {type(e).__name__}: {e}'
            if 200 <= answer.status_code < 400:
                return None
            return f"HTTP probe failed with statuscode: {answer.status_code} ({answer.text.strip()[:200]})"
        port = self._port(spec["tcpSocket"]["port"])
        try:
            socket.create_connection((spec["tcpSocket"].get("host") or self.ip, port), timeout=timeout).close()
        except OSError as e:
            return f"dial tcp {self.ip}:{port}: {e}"
        return None

    def _port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        named = {p.get("name"): p["containerPort"] for p in self.container.get("ports") or []}
        return int(named[port])

    def ready(self) -> bool:
        if self.running is None:
            return False
        probes = self.running.probes
        startup = probes.get("startupProbe")
        if startup is not None and not startup.passed:
            return False
        readiness = probes.get("readinessProbe")
        return readiness is None or readiness.passed

    # --- the API side ---------------------------------------------------------------------------------
    def _publish(self) -> None:
        """Patches the pod's status when what the kubelet would report has changed."""
        c = self.container
        st: dict[str, Any] = {"name": c["name"], "image": c["image"], "ready": self.ready(),
                              "restartCount": self.restarts, "started": self.running is not None,
                              "imageID": (f"{self.image.ref}@{self.image.digest}" if self.image and self.image.digest
                                          else self.image.id if self.image else ""),
                              "lastState": self.last_state}
        if self.running is not None:
            st["state"] = {"running": {"startedAt": self.running.started_at}}
            st["containerID"] = f"podman://{self.running.id}"
        elif self.phase in ("Failed", "Succeeded") and "terminated" in self.last_state:
            st["state"] = self.last_state
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        ready = "True" if self.ready() and self.phase == "Running" else "False"
        status: dict[str, Any] = {
            "phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time, "containerStatuses": [st],
            "conditions": [self._condition("PodScheduled", "True"), self._condition("Initialized", "True"),
                           self._condition("ContainersReady", ready), self._condition("Ready", ready)]}
        if self.ip:
            status |= {"podIP": self.ip, "podIPs": [{"ip": self.ip}]}
        if status == self.published:
            return
        self.owner.api.patch_namespaced_pod_status(self.pod_name, self.ns, {"status": status},
                                                   _request_timeout=TIMEOUT)
        self.published = status

    def _condition(self, kind: str, value: str) -> dict[str, str]:
        was = self.transitions.get(kind)
        if was is None or was[0] != value:
            self.transitions[kind] = (value, now())
        return {"type": kind, "status": value, "lastTransitionTime": self.transitions[kind][1]}

    def _event(self, kind: str, reason: str, message: str) -> None:
        stamp = now()
        body = {"metadata": {"generateName": f"{self.pod_name}."},
                "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": self.ns, "name": self.pod_name,
                                   "uid": self.uid, "fieldPath": f"spec.containers{{{self.container['name']}}}"},
                "reason": reason, "message": message[:1024], "type": kind, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "kubelet", "host": self.pod["spec"].get("nodeName", "")}}
        try:
            self.owner.api.create_namespaced_event(self.ns, body, _request_timeout=TIMEOUT)
        except Exception as e:  # an Event is best effort, as the kubelet's are
            log.warning("event %s for %s/%s not posted: %s", reason, self.ns, self.pod_name, e.reason)

    def _kwok_rules(self) -> None:
        """`kubectl logs` reads the container's CRI log files through KWOK; `kubectl exec` is refused."""
        owner = [{"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": self.uid}]
        logs = self.dir / "logs"
        name = self.container["name"]
        rules = {  # the Exec first: until it exists, KWOK's ClusterExec would run a command on this machine
            "execs": {"execs": [{"containers": [name]}]},
            "logs": {"logs": [{"containers": [name], "logsFile": str(logs / f"{name}.log"),
                               "previousLogsFile": str(logs / f"{name}.previous.log"), "follow": True}]},
        }
        custom = self.owner.custom
        for plural, spec in rules.items():
            body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs" if plural == "logs" else "Exec",
                    "metadata": {"name": self.pod_name, "namespace": self.ns, "ownerReferences": owner},
                    "spec": spec}
            args = ("kwok.x-k8s.io", "v1alpha1", self.ns, plural)
            try:
                custom.create_namespaced_custom_object(*args, body, _request_timeout=TIMEOUT)
            except ApiException as e:
                if e.status != 409:
                    raise
                old = custom.get_namespaced_custom_object(*args, self.pod_name, _request_timeout=TIMEOUT)
                if [o.get("uid") for o in old["metadata"].get("ownerReferences") or []] != [self.uid]:
                    # left by an earlier pod of the same name, pointing at its files: replace it
                    body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                    custom.replace_namespaced_custom_object(*args, self.pod_name, body, _request_timeout=TIMEOUT)


def _process(state: dict[str, Any] | None) -> tuple[int, str] | None:
    pid = int((state or {}).get("Pid") or 0)
    started = _start_time(pid) if pid else None
    return (pid, started) if started else None


def _rfc3339(value: str | None) -> str | None:
    """podman's JSON time ('2026-11-26T11:00:00.123456789+01:00', local time with its offset) in UTC, in
    Kubernetes' seconds-precision form."""
    if not value or value.startswith("0001-"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if match is None:
        return None
    parsed = dt.datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ContainerStandIns:
    def __init__(self, api: Any, custom: Any, root: Path, bed_dir: Path, server: str, ca: str, pod_cidr: str) -> None:
        self.api, self.custom, self.root = api, custom, root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)  # ServiceAccount tokens live here: not for the bed user (pod exec runs as it)
        self.bed = bed_id(bed_dir)
        self.server, self.ca = server, ca
        self.pool = IpPool(pod_cidr)
        self.runners: dict[str, PodRunner] = {}
        self.serialize = client.ApiClient().sanitize_for_serialization

    def observe(self, obj: Any, deleted: bool = False) -> None:
        pod = self.serialize(obj)
        uid = pod["metadata"]["uid"]
        runner = self.runners.get(uid)
        if deleted or pod["metadata"].get("deletionTimestamp"):
            if runner is not None:
                runner.pod = pod
                runner.stopping.set()  # it stops the container, then lets the pod object go
            elif not deleted:
                self.forget(pod)  # never run here (or run before a restart of this stand-in): nothing to stop
            return
        if not pod["spec"].get("nodeName"):
            return  # not scheduled yet
        if runner is None or not runner.is_alive():
            runner = self.runners[uid] = PodRunner(self, pod)
            runner.start()
        else:
            runner.pod = pod

    def forget(self, pod: dict[str, Any]) -> None:
        """The container is gone: delete the pod object (grace 0, this pod's UID only), as a kubelet does last."""
        meta = pod["metadata"]
        self.runners.pop(meta["uid"], None)
        podman("rm", "--force", "--time", "0", f"--filter=label={POD_UID_LABEL}={meta['uid']}")
        if not meta.get("deletionTimestamp"):
            return
        try:
            self.api.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0,
                                           body={"preconditions": {"uid": meta["uid"]}}, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def resync(self) -> str:
        pods = self.api.list_pod_for_all_namespaces(label_selector=RUNTIME_SELECTOR, _request_timeout=(5, 60))
        live = {pod.metadata.uid for pod in pods.items}
        for pod in pods.items:  # every IP in use is known before any pod is given one
            if pod.status and pod.status.pod_ip and not self.runners.get(pod.metadata.uid):
                self.pool.assign(pod.metadata.uid, pod.status.pod_ip)
        for pod in pods.items:
            self.observe(pod)
        for uid in set(self.runners) - live:
            self.runners[uid].stopping.set()
        # Containers of pods that went while this stand-in was down: the kubelet's garbage collection.
        listed = podman("ps", "--all", "--filter", f"label={BED_LABEL}={self.bed}", "--format",
                        f'{{{{.ID}}}} {{{{index .Labels "{POD_UID_LABEL}"}}}}')
        for line in listed.stdout.splitlines():
            container_id, _, uid = line.partition(" ")
            if uid not in live:
                podman("rm", "--force", "--time", "0", container_id)
        return str(pods.metadata.resource_version)

    def run(self) -> None:
        podwatch.watch_pods(self.api, RUNTIME_SELECTOR, self.resync, lambda pod, deleted: self.observe(pod, deleted))

    def stop_all(self) -> None:
        """On SIGTERM (the bed going down): stop every container. A SIGKILLed stand-in leaves them running."""
        runners = list(self.runners.values())
        for runner in runners:
            runner.stopping.set()
        for runner in runners:
            runner.join(timeout=40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", required=True, type=Path, help="where pod state (tokens, logs) lives")
    parser.add_argument("--bed-dir", required=True, type=Path)
    parser.add_argument("--pod-cidr", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per probe would drown the log
    config.load_kube_config(str(args.kubeconfig))
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 32  # one runner thread per pod shares the client
    client.Configuration.set_default(cfg)
    kube = yaml.safe_load(Path(args.kubeconfig).read_text())
    cluster = kube["clusters"][0]["cluster"]
    ca = Path(cluster["certificate-authority"]).read_text()
    stand_ins = ContainerStandIns(client.CoreV1Api(), client.CustomObjectsApi(), args.dir, args.bed_dir,
                                  cluster["server"], ca, args.pod_cidr)
    podwatch.run_until_signalled(stand_ins)


if __name__ == "__main__":
    main()
