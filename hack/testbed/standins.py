"""Pod stand-ins: for each pod labelled testbed.rolecall.dev/engine=<engine>, run that real server on the
pod's IP (KWOK gives pods 127.N.x.y), and stop it when the pod goes. Watch-based, one process per bed.

Pod annotations a test may set (test bed only, never read by the operator):
  testbed.rolecall.dev/options     comma-separated flags from servers.OPTIONS (e.g. flush-disabled)
  testbed.rolecall.dev/paused      "true" stops the server (engine down) until removed
  testbed.rolecall.dev/replica-of  name of the primary pod: redis with option `replica`, postgresql with `standby`
  testbed.rolecall.dev/app-users   nginx/apache: a whole number served as the application's own user
                                   count, {"sessions": {"active": N}} at /internal/stats (changes live)

The controller sets testbed.rolecall.dev/standin on the pod: "ready" once this pod's own server accepts
connections (tests wait for it: KWOK reuses a deleted pod's IP at once, so an answer at the IP alone
could come from the old pod's server), "paused" while paused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from testbed import podwatch, servers
from testbed.cluster import BED_USER

ENGINE_LABEL = "testbed.rolecall.dev/engine"
OPTIONS = "testbed.rolecall.dev/options"
PAUSED = "testbed.rolecall.dev/paused"
REPLICA_OF = "testbed.rolecall.dev/replica-of"
APP_USERS = "testbed.rolecall.dev/app-users"
STANDIN = "testbed.rolecall.dev/standin"
log = logging.getLogger("standins")


@dataclass
class Running:
    key: str
    ip: str
    dir: Path
    proc: subprocess.Popen[bytes] | None


class StandIns:
    def __init__(self, api: Any, root: Path) -> None:
        self.api = api
        self.root = root
        self.running: dict[str, Running] = {}  # pod uid -> stand-in
        self.bed_user = BED_USER if os.geteuid() == 0 else None

    def observe(self, pod: Any, deleted: bool = False) -> None:
        uid = pod.metadata.uid
        gone = deleted or pod.metadata.deletion_timestamp is not None
        ip = pod.status.pod_ip if pod.status else None
        if gone:
            self.remove(uid)
            return
        if not ip or (pod.spec and pod.spec.host_network):
            return
        ann = pod.metadata.annotations or {}
        paused = ann.get(PAUSED) == "true"
        have = self.running.get(uid)
        if have and have.ip != ip:
            self.remove(uid)
            have = None
        if have is None:
            # KWOK hands a deleted pod's IP to the next pod at once: a stand-in still holding this IP
            # belongs to a pod on its way out and must go before the new server can bind.
            for other_uid, other in list(self.running.items()):
                if other.ip == ip:
                    self.remove(other_uid)
            key = f"{pod.metadata.namespace}.{pod.metadata.name}.{uid[:8]}"
            have = self.running[uid] = Running(key, ip, self.root / key, None)
            have.dir.mkdir(parents=True, exist_ok=True)
        _serve_app_users(have.dir, ann.get(APP_USERS))
        if paused and have.proc is not None:
            log.info("pausing %s", have.key)
            _stop(have.proc)
            have.proc = None
            self._mark(pod, "paused")
        elif not paused and have.proc is None:
            self._start(pod, have)
            if have.proc is not None:
                port = servers.PORTS[pod.metadata.labels[ENGINE_LABEL]]
                threading.Thread(target=self._announce, args=(pod, have, port), daemon=True).start()

    def _announce(self, pod: Any, have: Running, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and have.proc is not None and have.proc.poll() is None:
            try:
                socket.create_connection((have.ip, port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            self._mark(pod, "ready")
            return
        log.error("%s: server did not come up (see %s/server.log)", have.key, have.dir)

    def _mark(self, pod: Any, value: str) -> None:
        try:
            self.api.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, {"metadata": {
                "annotations": {STANDIN: value}, "uid": pod.metadata.uid}})
        except ApiException as e:
            if e.status not in (404, 409, 422):
                log.warning("could not mark %s %s: %s", pod.metadata.name, value, e.reason)

    def _start(self, pod: Any, have: Running) -> None:
        engine = pod.metadata.labels[ENGINE_LABEL]
        if engine not in servers.PORTS:
            log.warning("pod %s names unknown engine %r", have.key, engine)
            return
        ann = pod.metadata.annotations or {}
        options = {o.strip() for o in ann.get(OPTIONS, "").split(",") if o.strip()}
        unknown = options - servers.OPTIONS[engine]
        if unknown:
            log.warning("pod %s: ignoring unknown options %s", have.key, sorted(unknown))
        primary_ip = None
        if REPLICA_OF in ann:
            try:
                primary = self.api.read_namespaced_pod(ann[REPLICA_OF], pod.metadata.namespace)
                primary_ip = primary.status.pod_ip
            except ApiException as e:
                log.warning("pod %s: primary %s not readable: %s", have.key, ann[REPLICA_OF], e.reason)
        try:
            launch = servers.prepare(engine, have.ip, have.dir, options & servers.OPTIONS[engine], self.bed_user,
                                     primary_ip)
            have.proc = servers.start(launch, have.dir, self.bed_user)
            log.info("started %s for %s at %s (pid %d)", engine, have.key, have.ip, have.proc.pid)
        except (OSError, subprocess.CalledProcessError) as e:
            log.error("could not start %s for %s: %s", engine, have.key, e)

    def remove(self, uid: str) -> None:
        have = self.running.pop(uid, None)
        if have is None:
            return
        if have.proc is not None:
            _stop(have.proc)
        shutil.rmtree(have.dir, ignore_errors=True)
        log.info("removed %s", have.key)

    def resync(self) -> str:
        pods = self.api.list_pod_for_all_namespaces(label_selector=ENGINE_LABEL, _request_timeout=(5, 60))
        seen = set()
        for pod in pods.items:
            seen.add(pod.metadata.uid)
            self.observe(pod)
        for uid in set(self.running) - seen:
            self.remove(uid)
        return str(pods.metadata.resource_version)

    def run(self) -> None:
        podwatch.watch_pods(self.api, ENGINE_LABEL, self.resync, lambda pod, deleted: self.observe(pod, deleted))

    def stop_all(self) -> None:
        for uid in list(self.running):
            self.remove(uid)


def _serve_app_users(dir: Path, value: str | None) -> None:
    """The JSON a web stand-in serves at /internal/stats, standing in for an app that counts its users."""
    if value is None or not value.isdigit():
        return
    www = dir / "www" / "internal"
    www.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"sessions": {"active": int(value)}, "version": "stand-in"})
    tmp = www / "stats.tmp"
    tmp.write_text(body)
    tmp.chmod(0o644)
    tmp.replace(www / "stats")  # atomic: a reader never sees a half-written file


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stand-ins are disposable: SIGKILL at once, so a burst of deletions (a namespace going away)
    never leaves old servers on IPs that KWOK has already given to new pods."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    podwatch.run_until_signalled(StandIns(client.CoreV1Api(), args.dir))


if __name__ == "__main__":
    main()
