"""Starts and stops the local cluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK, stand-ins.

All components are local processes bound to 127.0.0.1; pods get loopback IPs (a 127.N.0.0/16 of their own) from KWOK,
so a real server bound to a pod's IP stands in for its container. State (PKI, kubeconfigs, data, logs,
pids) lives in one directory, so several beds can run side by side and `down` finds everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import yaml

from testbed import containers, pki

HACK = Path(__file__).resolve().parent.parent
REPO = HACK.parent
# Allocated by the apiserver for Service objects only; nothing in the project ever dials it.
SERVICE_CIDR = "10.96.0.0/16"
NODE_COUNT = 3
BED_USER = "rolecall-bed"
# Users the tests act as (static tokens). They start with no rights; tests bind roles to them.
TEST_USERS = ("alice", "bob", "carol", "dave")


def cache_bin_dir() -> Path:
    root = os.environ.get("ROLECALL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rolecall")
    return Path(root) / "bin"


def pod_cidr_for(dir: Path) -> str:
    """Each bed gets its own loopback /16 (127.10-209.0.0/16, from its state dir), so two beds on one
    machine (make run beside make test) never bind stand-ins to the same pod IP."""
    return f"127.{10 + zlib.crc32(str(dir).encode()) % 200}.0.0/16"


_PORTS_GIVEN: set[int] = set()
_PORT_RANGE = (20000, 32767)


def free_port() -> int:
    """A loopback port nothing listens on, never handed out before by this process, and below the kernel's
    ephemeral range (32768 up here), so an outgoing connection cannot take it between this pick and the bind of
    the component it is for. Asking the kernel for port 0 twice can give the same port (one CI run gave the
    apiserver's port to KWOK as well)."""
    for _ in range(1000):
        port = secrets.randbelow(_PORT_RANGE[1] - _PORT_RANGE[0]) + _PORT_RANGE[0]
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


@dataclass
class Bed:
    """What a running bed is: where its files are and how to reach it. Saved as bed.json."""

    dir: Path
    api_port: int = 0
    etcd_port: int = 0
    etcd_peer_port: int = 0
    kwok_port: int = 0
    pod_cidr: str = ""
    bed_uid: int | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)  # each component's command line, for restarts
    timings: dict[str, float] = field(default_factory=dict)  # seconds from start to each phase's end

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def save(self) -> None:
        data = asdict(self)
        data["dir"] = str(self.dir)
        (self.dir / "bed.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, dir: Path) -> Bed:
        data = json.loads((dir / "bed.json").read_text())
        data["dir"] = Path(data["dir"])
        return cls(**data)

    def alive(self) -> bool:
        return bool(self.pids) and all(_pid_alive(p) for p in self.pids.values())

    def user_kubeconfig(self, user: str) -> Path:
        """A kubeconfig that authenticates as one of TEST_USERS by its static token."""
        path = self.dir / f"user-{user}.kubeconfig"
        if not path.exists():
            _write_kubeconfig(path, self.server, self.pki / "ca.crt", user, token=self.tokens[user])
        return path


_children: dict[int, subprocess.Popen[bytes]] = {}


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # reaps our own exited children, which kill(0) sees as alive zombies
    try:
        # A killed process that is not our child stays a zombie until its new parent reaps it.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _write_kubeconfig(path: Path, server: str, ca: Path, user: str, *, cert: Path | None = None,
                      key: Path | None = None, token: str | None = None) -> None:
    creds: dict[str, str] = {}
    if cert and key:
        creds = {"client-certificate": str(cert), "client-key": str(key)}
    if token:
        creds = {"token": token}
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "rolecall-testbed",
        "clusters": [{"name": "rolecall-testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "rolecall-testbed", "context": {"cluster": "rolecall-testbed", "user": user}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _ensure_bed_user() -> int | None:
    """The unprivileged account that stand-ins and pod exec run as (only when we are root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(BED_USER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", BED_USER],
                       check=True)
        return pwd.getpwnam(BED_USER).pw_uid


def _make_pki(bed: Bed) -> None:
    d = bed.pki
    d.mkdir(parents=True)
    pki.make_ca(d)
    pki.make_service_account_keys(d)
    sans = ("IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local")
    pki.make_cert(d, "apiserver", "kube-apiserver", sans=sans, server=True)
    pki.make_cert(d, "kwok-serving", "kwok", sans=("IP:127.0.0.1",), server=True)
    pki.make_cert(d, "admin", "rolecall-admin", orgs=("system:masters",))
    pki.make_cert(d, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=("system:masters",))
    pki.make_cert(d, "controller-manager", "system:kube-controller-manager")
    pki.make_cert(d, "scheduler", "system:kube-scheduler")
    pki.make_cert(d, "kwok", "kwok-controller", orgs=("system:masters",))


def _spawn(bed: Bed, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
    log = open(bed.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    bed.argv[name] = argv
    # Everything here talks to 127.0.0.1: a proxy variable must never route it elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | (extra_env or {})
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    bed.pids[name] = proc.pid
    _children[proc.pid] = proc
    bed.save()


def _wait(what: str, check, timeout: float, bed: Bed, component: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(bed.pids[component]):
            tail = (bed.dir / "logs" / f"{component}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{component} exited while waiting for {what}:\n{tail}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; see {bed.dir}/logs/{component}.log")


def _api_client(bed: Bed) -> httpx.Client:
    tls = ssl.create_default_context(cafile=str(bed.pki / "ca.crt"))
    tls.load_cert_chain(str(bed.pki / "admin.crt"), str(bed.pki / "admin.key"))
    return httpx.Client(base_url=bed.server, verify=tls, timeout=5)


def _kwok_config(bed: Bed) -> Path:
    """KWOK's stages (copied from KWOK's 'fast' set) plus the exec rule that runs as the bed user."""
    # No KwokConfiguration document: a partial one replaces kwok's defaults (parallelism 0 fails).
    docs: list[dict[str, object]] = []
    for stage in ("node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete"):
        docs.append(yaml.safe_load((HACK / "kwok" / f"{stage}.yaml").read_text()))
    local: dict[str, object] = {"workDir": "/tmp"}
    if bed.bed_uid is not None:
        gid = pwd.getpwuid(bed.bed_uid).pw_gid
        local["securityContext"] = {"runAsUser": bed.bed_uid, "runAsGroup": gid}
    docs.append({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec",
                 "metadata": {"name": "run-on-this-machine-as-bed-user"},
                 "spec": {"execs": [{"local": local}]}})
    path = bed.dir / "kwok.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


# No node IPAM (KWOK's nodes have no CIDRs) and no cloud node lifecycle (no cloud). 1.37 dropped the latter
# from kube-controller-manager and refuses a name it does not know, so disable only the ones the binary lists.
UNWANTED_CONTROLLERS = ("node-ipam-controller", "cloud-node-lifecycle-controller")


def _controllers(binary: Path) -> str:
    """The --controllers flag for this kube-controller-manager: all on-by-default ones but the unwanted."""
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60).stdout
    known = re.search(r"All controllers: ([^\n]+)", help_text)
    if not known:
        raise RuntimeError(f"{binary} --help lists no controllers: the bed's launcher needs updating")
    names = {name.strip() for name in known.group(1).split(",")}
    return "--controllers=" + ",".join(["*", *(f"-{c}" for c in UNWANTED_CONTROLLERS if c in names)])


def up(dir: Path, *, standins: bool = True, audit: bool = False, kube_dir: Path | None = None) -> Bed:
    """Starts a fresh bed in `dir` (wiping what was there) and returns once every node is Ready. `kube_dir`:
    the kube-apiserver, -controller-manager and -scheduler of another Kubernetes version (`make compat-bins`)."""
    bins = cache_bin_dir()
    for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
        if not (bins / b).exists():
            raise SystemExit(f"error: {bins / b} is missing; run `make cluster-bins` (hack/build-cluster-bins.sh)")
    control = kube_dir or bins
    for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        if not (control / b).exists():
            raise SystemExit(f"error: {control / b} is missing; run `make compat-bins`")
    if dir.exists():
        down(dir)
        shutil.rmtree(dir)
    (dir / "logs").mkdir(parents=True)
    bed = Bed(dir=dir, api_port=free_port(), etcd_port=free_port(), etcd_peer_port=free_port(),
              kwok_port=free_port(), pod_cidr=pod_cidr_for(dir), bed_uid=_ensure_bed_user())
    bed.tokens = {u: secrets.token_hex(16) for u in TEST_USERS}
    t0 = time.monotonic()

    def mark(phase: str) -> None:
        bed.timings[phase] = round(time.monotonic() - t0, 3)

    _make_pki(bed)
    mark("pki")
    p = bed.pki
    (dir / "tokens.csv").write_text("".join(f'{t},{u},uid-{u},""\n' for u, t in bed.tokens.items()))
    _write_kubeconfig(bed.kubeconfig, bed.server, p / "ca.crt", "rolecall-admin",
                      cert=p / "admin.crt", key=p / "admin.key")
    for comp, cert in (("controller-manager", "controller-manager"), ("scheduler", "scheduler"), ("kwok", "kwok")):
        _write_kubeconfig(dir / f"{comp}.kubeconfig", bed.server, p / "ca.crt", comp,
                          cert=p / f"{cert}.crt", key=p / f"{cert}.key")
    bed.save()

    etcd_url = f"http://127.0.0.1:{bed.etcd_port}"
    peer_url = f"http://127.0.0.1:{bed.etcd_peer_port}"
    _spawn(bed, "etcd", [str(bins / "etcd"), "--data-dir", str(dir / "etcd"), "--name", "bed",
                         "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                         "--initial-cluster", f"bed={peer_url}", "--unsafe-no-fsync", "--log-level", "warn"])
    _wait("etcd health", lambda: httpx.get(f"{etcd_url}/health", timeout=2).status_code == 200, 30, bed, "etcd")
    mark("etcd")

    _spawn(bed, "kube-apiserver", [
        str(control / "kube-apiserver"), f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={bed.api_port}",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}", f"--token-auth-file={dir / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        "--profiling=false", "--v=1",
        *([f"--audit-policy-file={_write(dir / 'audit-policy.yaml', AUDIT_POLICY)}",
           f"--audit-log-path={dir / 'audit.log'}", "--audit-log-format=json", "--audit-log-mode=blocking"]
          if audit else []),
    ])
    api = _api_client(bed)
    _wait("kube-apiserver /readyz", lambda: api.get("/readyz").status_code == 200, 90, bed, "kube-apiserver")
    mark("apiserver")

    _spawn(bed, "kube-controller-manager", [
        str(control / "kube-controller-manager"), f"--kubeconfig={dir / 'controller-manager.kubeconfig'}",
        f"--authentication-kubeconfig={dir / 'controller-manager.kubeconfig'}",
        f"--authorization-kubeconfig={dir / 'controller-manager.kubeconfig'}",
        "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
        f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--allocate-node-cidrs=false",
        "--use-service-account-credentials=true", _controllers(control / "kube-controller-manager"),
        "--profiling=false",
    ])
    _spawn(bed, "kube-scheduler", [
        str(control / "kube-scheduler"), f"--kubeconfig={dir / 'scheduler.kubeconfig'}",
        f"--authentication-kubeconfig={dir / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={dir / 'scheduler.kubeconfig'}",
        "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false", "--profiling=false",
    ])
    _install_kwok_crds(api)
    _spawn(bed, "kwok", [
        str(bins / "kwok"), f"--kubeconfig={dir / 'kwok.kubeconfig'}", f"--config={_kwok_config(bed)}",
        # Per-pod Logs and Exec rules, which the container stand-in creates (testbed/containers.py).
        "--enable-crds=Logs,Exec",
        # Node Leases keep the node-lifecycle controller from marking nodes (and their pods) NotReady.
        "--manage-all-nodes=true", "--node-lease-duration-seconds=40", f"--cidr={bed.pod_cidr}", "--node-ip=127.0.0.1",
        f"--node-port={bed.kwok_port}", f"--server-address=127.0.0.1:{bed.kwok_port}",
        f"--tls-cert-file={p / 'kwok-serving.crt'}", f"--tls-private-key-file={p / 'kwok-serving.key'}",
    ])
    for i in range(NODE_COUNT):
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"kwok-node-{i}", "labels": {
                    "type": "kwok", "kubernetes.io/hostname": f"kwok-node-{i}",
                    "topology.kubernetes.io/zone": f"zone-{'abc'[i % 3]}"},
                    "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "spec": {}}
        r = api.post("/api/v1/nodes", json=node)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating node {i}: {r.status_code} {r.text}")

    def nodes_ready() -> bool:
        items = api.get("/api/v1/nodes").json().get("items", [])
        ready = [n for n in items
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
        return len(ready) >= NODE_COUNT

    _wait(f"{NODE_COUNT} Ready KWOK nodes", nodes_ready, 60, bed, "kwok")
    mark("nodes")

    def default_sa() -> bool:
        return api.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

    _wait("the default ServiceAccount (controller-manager up)", default_sa, 60, bed, "kube-controller-manager")
    mark("controller-manager")
    # KWOK v0.8.0 creates a CIDR's IP pool lazily with a load-then-store race (PodController.ipPool):
    # pods placed at the same moment right after start-up can each get a fresh pool and the same IP.
    # One warm-up pod creates the pool before any test pod exists; its IP goes back when it is deleted.
    warm = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bed-ip-pool-warmup", "namespace": "default"},
            "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "c", "image": "none"}]}}
    r = api.post("/api/v1/namespaces/default/pods", json=warm)
    if r.status_code != 201:
        raise RuntimeError(f"creating the warm-up pod: {r.status_code} {r.text}")
    _wait("the warm-up pod's IP", lambda: bool(
        api.get("/api/v1/namespaces/default/pods/bed-ip-pool-warmup").json().get("status", {}).get("podIP")),
        30, bed, "kwok")
    api.delete("/api/v1/namespaces/default/pods/bed-ip-pool-warmup", params={"gracePeriodSeconds": "0"})

    if standins:
        (dir / "standins").mkdir()
        if bed.bed_uid is not None:
            os.chown(dir / "standins", bed.bed_uid, -1)
        _spawn(bed, "standins", [sys.executable, "-m", "testbed.standins", "--kubeconfig", str(bed.kubeconfig),
                                 "--dir", str(dir / "standins")],
               extra_env={"PYTHONPATH": str(HACK)})
        (dir / "containers").mkdir()
        _spawn(bed, "containers", [sys.executable, "-m", "testbed.containers", "--kubeconfig", str(bed.kubeconfig),
                                   "--dir", str(dir / "containers"), "--bed-dir", str(dir),
                                   "--pod-cidr", bed.pod_cidr],
               extra_env={"PYTHONPATH": str(HACK)})
    mark("ready")
    bed.save()
    return bed


def kill(bed: Bed, name: str) -> None:
    """SIGKILLs one component (its whole process group), as a crash would, and reaps it."""
    pid = bed.pids[name]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    child = _children.get(pid)
    if child is not None:
        child.wait(timeout=10)


def restart(bed: Bed, name: str) -> None:
    """Starts a killed component again with the same command line (the apiserver keeps its etcd data)."""
    extra = {"PYTHONPATH": str(HACK)} if name in ("standins", "containers") else None
    _spawn(bed, name, bed.argv[name], extra_env=extra)
    if name == "kube-apiserver":
        api = _api_client(bed)
        _wait("kube-apiserver /readyz", lambda: api.get("/readyz").status_code == 200, 90, bed, name)


def freeze(bed: Bed, name: str, frozen: bool) -> None:
    """SIGSTOP (frozen) or SIGCONT a component: it holds its sockets open and answers nothing meanwhile."""
    os.killpg(bed.pids[name], signal.SIGSTOP if frozen else signal.SIGCONT)


def down(dir: Path) -> None:
    """Stops every process of the bed in `dir` (each runs in its own session, so children go too)."""
    try:
        bed = Bed.load(dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return
    # Stand-ins first, so they stop their servers; the apiserver goes after its clients.
    order = ["containers", "standins", "kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    for name in order + [n for n in bed.pids if n not in order]:
        pid = bed.pids.get(name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    bed.pids = {}
    bed.save()
    containers.remove_bed_containers(dir)  # they outlive a killed stand-in, as containers outlive a kubelet


def _install_kwok_crds(api: httpx.Client) -> None:
    """KWOK's Logs and Exec CRDs (copied from KWOK v0.8.0's kustomize/crd/bases), before KWOK starts."""
    for path in sorted((HACK / "kwok" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        r = api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"installing {path.name}: {r.status_code} {r.text}")
    for path in sorted((HACK / "kwok" / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]

        def established(name: str = name) -> bool:
            crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
            return any(c["type"] == "Established" and c["status"] == "True"
                       for c in crd.get("status", {}).get("conditions", []))

        deadline = time.monotonic() + 30
        while not established():
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after 30s")
            time.sleep(0.1)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
