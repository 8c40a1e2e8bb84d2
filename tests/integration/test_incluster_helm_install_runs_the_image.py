"""rolecall installed with `helm install` on a fresh bed, the operator running as a pod from the locally built
image (the bed's container stand-in runs it under podman, as a kubelet would): it runs as uid 65532 on a
read-only root with its ServiceAccount's token, does the work of every kind on real engines, survives its
container being killed mid-fan-out, upgrades to a rebuilt image, runs two replicas with one acting, rolls
them mid-clear with `helm upgrade` without flushing a pod twice, and uninstalls cleanly."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from incluster import (
    CHART,
    IMAGE,
    IMAGE_REPOSITORY,
    NAMESPACE,
    RUN_IN_PODMAN,
    SELECTOR,
    VERSION,
    bed_values,
    container,
    helm,
    image_id,
    lease_holder,
    memory_limit,
    mount_points,
    operator_pods,
    process_facts,
    ready,
    wait_ready_operators,
)
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    condition,
    create_cs,
    create_deployment,
    create_pods,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
)
from dbkit import (
    CLEAR,
    MAINTENANCES,
    NEW,
    OLD,
    SERVERS,
    create,
    maintenance,
    pg_pods,
    pg_scalar,
    pg_server,
    seed_events,
)
from dbkit import wait_finished as wait_maintenance
from harness import REPO, Cluster, deployment, namespace_for_test, running_pods, wait_for
from testbed.containers import podman
from testbed.install import wait_admissible
from testbed.podspec import TOKEN_DIR
from webkit import create_web, held_connections, request_refresh, webserver

pytestmark = pytest.mark.incluster


@pytest.fixture(scope="module")
def installed(incluster_bed: Cluster) -> Iterator[Cluster]:
    image_id()  # fails with "run `make image`" when the image is missing
    out = helm(incluster_bed, "install", "rolecall", str(CHART), "--namespace", NAMESPACE, "--create-namespace",
               *bed_values(), "--wait", "--timeout", "180s")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_admissible(incluster_bed.kubeconfig)
    yield incluster_bed


@pytest.fixture
def ns(request: pytest.FixtureRequest, installed: Cluster) -> Iterator[str]:
    yield from namespace_for_test(installed, request)


def _memcached(cluster: Cluster, ns: str, pods: int, **annotations: str) -> dict[str, str]:
    create_deployment(cluster, ns, deployment("mc", "memcached", pods, annotations=annotations))
    running_pods(cluster, ns, "app=mc", pods)
    ips = pod_ips(cluster, ns, "app=mc")
    wait_memcached(list(ips.values()))
    return ips


def test_the_operator_pod_runs_the_image_as_65532_on_a_read_only_root(installed: Cluster) -> None:
    (pod,) = wait_ready_operators(installed, 1)
    st = pod["status"]["containerStatuses"][0]
    assert st["ready"] and st["state"].get("running") and st["imageID"].startswith(IMAGE), st
    found = container(pod)
    assert found["Image"] == image_id()
    uid, root_options = process_facts(found["State"]["Pid"])
    assert uid == 65532
    assert root_options.split(",")[0] == "ro", root_options
    mounts = mount_points(found["State"]["Pid"])
    assert not {"/tmp", "/var/tmp", "/run"} & set(mounts), mounts  # no writable tmpfs added over the read-only root
    token_mount = mounts.get(TOKEN_DIR) or mounts[TOKEN_DIR.removeprefix("/var")]  # /var/run -> /run in Debian
    assert token_mount.split(",")[0] == "ro", mounts
    assert memory_limit(found["State"]["Pid"]) == 256 * 2**20  # the chart's limit, as the kernel enforces it
    proc_status = Path(f"/proc/{found['State']['Pid']}/status").read_text().splitlines()
    kernel = dict(line.split(":\t", 1) for line in proc_status if ":\t" in line)
    assert int(kernel["CapEff"], 16) == 0 and kernel["NoNewPrivs"].strip() == "1", kernel  # drop ALL, no escalation
    ip = pod["status"]["podIP"]
    assert httpx.get(f"http://{ip}:8081/readyz", timeout=5).text == "ok\n"  # bound to its own pod IP
    assert "rolecall_leader_terms" in httpx.get(f"http://{ip}:8080/metrics", timeout=5).text
    # Ready does not wait for the Lease (a standby is Ready too), and the Lease may still name an operator of an
    # earlier release on this bed until it expires (seen after the compatibility test's uninstall).
    wait_for(lambda: lease_holder(installed).startswith(pod["metadata"]["name"]), "the pod holds the Lease", 60)
    logs = installed.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"]).stdout
    assert "leader lease rolecall-system/rolecall-operator acquired" in logs, logs[-2000:]
    refused = installed.kubectl("exec", "-n", NAMESPACE, pod["metadata"]["name"], "--", "id", check=False)
    assert refused.returncode != 0 and "not set local exec" in refused.stderr, refused  # never run on the host


def _clear_flushes_each_pod_once(cluster: Cluster, ns: str, token: str) -> None:
    ips = _memcached(cluster, ns, 3)
    create_cs(cluster, ns, cacheserver("mc", "memcached", {"app": "mc"}))
    wait_for(lambda: status(cluster, ns, "mc").get("observedGeneration") == 1, "observed", 60)
    annotate_clear(cluster, ns, "mc", token)
    st = wait_handled(cluster, ns, "mc", token, 60)
    assert condition(st, "Cleared")["status"] == "True", st
    assert {name: cmd_flush(ip) for name, ip in ips.items()} == dict.fromkeys(ips, 1)


def _web_counts_and_maintenance_deletes(cluster: Cluster, ns: str) -> None:
    create_pods(cluster, ns, [standin_pod("web-a", "nginx", {"app": "web"})])
    running_pods(cluster, ns, "app=web", 1)
    ip = pod_ips(cluster, ns, "app=web")["web-a"]
    create_web(cluster, ns, webserver("web", "nginx", {"app": "web"}, refreshIntervalSeconds=3600))
    with held_connections(ip, idle=2, in_flight=1):
        st = request_refresh(cluster, ns, "web", "in-cluster")
        assert st["activeConnections"] == 3, st

    db_ip = pg_pods(cluster, ns, ["pg-0"])["pg-0"]
    seed_events(db_ip)
    create(cluster, ns, SERVERS, pg_server("db", {"app": "pg"}))
    create(cluster, ns, MAINTENANCES, maintenance("purge", "db", [CLEAR]))
    done = wait_maintenance(cluster, ns, "purge")
    assert done["phase"] == "Succeeded" and done["rowsDeleted"] == OLD, done
    assert pg_scalar(db_ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(db_ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW


def test_a_clear_by_the_in_cluster_operator_flushes_each_pod_once(installed: Cluster, ns: str) -> None:
    _clear_flushes_each_pod_once(installed, ns, "in-cluster")


def test_a_webserver_counts_connections_and_a_maintenance_deletes_old_rows(installed: Cluster, ns: str) -> None:
    _web_counts_and_maintenance_deletes(installed, ns)


def test_the_token_is_the_service_accounts_a_verb_removed_from_the_chart_rbac_shows_in_status(
        installed: Cluster, ns: str) -> None:
    # A right each request uses (the run-time requester check): pods come from a watch that is already open,
    # and an open watch is not authorized again, so taking `list pods` away would show only at the next listing.
    role = json.loads(installed.kubectl("get", "clusterrole", "rolecall-operator-cluster", "-o", "json").stdout)
    index = next(i for i, r in enumerate(role["rules"]) if r.get("resources") == ["subjectaccessreviews"])
    assert role["rules"][index]["verbs"] == ["create"]
    patch = [{"op": "replace", "path": f"/rules/{index}/verbs", "value": ["get"]}]
    restore = [{"op": "replace", "path": f"/rules/{index}/verbs", "value": ["create"]}]
    installed.kubectl("patch", "clusterrole", "rolecall-operator-cluster", "--type=json", "-p", json.dumps(patch))
    try:
        ips = _memcached(installed, ns, 1)
        create_cs(installed, ns, cacheserver("mc", "memcached", {"app": "mc"}))
        annotate_clear(installed, ns, "mc", "while-forbidden")

        def refused() -> dict | None:
            stalled = condition(status(installed, ns, "mc"), "Stalled")
            return stalled if stalled.get("reason") == "OperatorForbidden" else None

        stalled = wait_for(refused, "Stalled=OperatorForbidden", 60)
        assert "system:serviceaccount:rolecall-system:rolecall-operator" in stalled["message"], stalled
        assert 'cannot create resource "subjectaccessreviews"' in stalled["message"], stalled
        assert [cmd_flush(ip) for ip in ips.values()] == [0]
    finally:
        installed.kubectl("patch", "clusterrole", "rolecall-operator-cluster", "--type=json", "-p", json.dumps(restore))
    # The right given back: the clear asked for meanwhile was kept, and now runs (retried with backoff).
    st = wait_handled(installed, ns, "mc", "while-forbidden", 90)
    assert st["lastRequest"]["outcome"] == "Succeeded" and condition(st, "Stalled").get("status") != "True", st
    assert [cmd_flush(ip) for ip in ips.values()] == [1]


def test_killing_the_container_mid_fan_out_the_stand_in_restarts_it_and_the_request_completes(
        installed: Cluster, ns: str) -> None:
    pods = 5
    # Each flush takes 1.5 s (a delaying proxy in front of memcached) and one pod is cleared at a time.
    ips = _memcached(installed, ns, pods, **{"testbed.rolecall.dev/options": "slow-flush"})
    create_cs(installed, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1))
    wait_for(lambda: status(installed, ns, "mc").get("observedGeneration") == 1, "observed", 60)
    (before,) = wait_ready_operators(installed, 1)
    annotate_clear(installed, ns, "mc", "before-kill")

    def partly_done() -> dict | None:
        st = status(installed, ns, "mc")
        return st if st.get("run") and 0 < (st.get("done") or 0) < pods else None

    seen = wait_for(partly_done, f"0 < done < {pods}", 60)
    killed = podman("kill", "--signal", "KILL", container(before)["Id"])
    assert killed.returncode == 0, killed.stderr
    recorded_done = {r["pod"] for r in seen.get("recentResults") or [] if r["outcome"] == "Done"}

    st = wait_handled(installed, ns, "mc", "before-kill", 120)
    assert condition(st, "Cleared")["status"] == "True", st
    (after,) = operator_pods(installed)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same pod: its container was restarted
    restarted = after["status"]["containerStatuses"][0]
    assert restarted["restartCount"] >= 1 and restarted["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    flushes = {name: cmd_flush(ip) for name, ip in ips.items()}
    # The request core's bound: every pod at least once, a pod recorded done before the kill never again,
    # at most the pods in flight or done-but-unrecorded flushed twice.
    assert all(1 <= n <= 2 for n in flushes.values()), flushes
    assert all(flushes[p] == 1 for p in recorded_done), (flushes, recorded_done)
    previous = installed.kubectl("logs", "-p", "-n", NAMESPACE, after["metadata"]["name"]).stdout
    assert "leader lease rolecall-system/rolecall-operator acquired" in previous  # kubectl logs -p: the killed one


def test_a_restarted_stand_in_adopts_the_running_container(installed: Cluster) -> None:
    """Containers outlive their stand-in, as they outlive a restarted kubelet: the stand-in coming back keeps the
    running container (same ID, same restart count) instead of starting another."""
    from testbed import cluster as bed

    (pod,) = wait_ready_operators(installed, 1)
    before = container(pod)["Id"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    bed.kill(installed.bed, "containers")
    assert container(pod)["Id"] == before  # still running without its stand-in
    bed.restart(installed.bed, "containers")
    log = installed.bed.dir / "logs" / "containers.log"
    wait_for(lambda: f"adopted running container {before[:12]}" in log.read_text(), "the stand-in to adopt it", 60)
    (after,) = wait_ready_operators(installed, 1)
    assert container(after)["Id"] == before
    assert after["status"]["containerStatuses"][0]["restartCount"] == restarts
    assert f"podman://{before}" == after["status"]["containerStatuses"][0]["containerID"]


def test_helm_upgrade_to_a_rebuilt_image_then_two_replicas_with_one_acting(installed: Cluster, ns: str) -> None:
    # A rebuilt image: a new image ID under a new tag (a label changes), as a code change would give.
    rebuilt = podman("build", "--quiet", "--tag", f"{IMAGE}-rebuilt", "--label", "rolecall.test/rebuilt=1",
                     "--file", "-", ".", input_text=f"FROM {IMAGE}\n")
    assert rebuilt.returncode == 0, rebuilt.stderr
    new_id = image_id(f"{IMAGE}-rebuilt")
    assert new_id != image_id()
    out = helm(installed, "upgrade", "rolecall", str(CHART), "--namespace", NAMESPACE,
               *bed_values(tag=f"{IMAGE.rsplit(':', 1)[1]}-rebuilt"), "--wait", "--timeout", "180s")
    assert out.returncode == 0, out.stdout + out.stderr
    (pod,) = wait_ready_operators(installed, 1)
    assert container(pod)["Image"] == new_id

    out = helm(installed, "upgrade", "rolecall", str(CHART), "--namespace", NAMESPACE, *bed_values(),
               "--set", "replicaCount=2", "--wait", "--timeout", "180s")
    assert out.returncode == 0, out.stdout + out.stderr
    pods = wait_ready_operators(installed, 2)
    names = {p["metadata"]["name"] for p in pods}
    holder = wait_for(lambda: (h := lease_holder(installed)) and any(h.startswith(n) for n in names) and h,
                      "one of the two new pods to hold the Lease", 60)
    assert sum(holder.startswith(n) for n in names) == 1, (holder, names)
    standby = next(p for p in pods if not holder.startswith(p["metadata"]["name"]))
    assert httpx.get(f"http://{standby['status']['podIP']}:8081/readyz", timeout=5).status_code == 200

    ips = _memcached(installed, ns, 3)
    create_cs(installed, ns, cacheserver("mc", "memcached", {"app": "mc"}))
    wait_for(lambda: status(installed, ns, "mc").get("observedGeneration") == 1, "observed", 60)
    annotate_clear(installed, ns, "mc", "two-replicas")
    wait_handled(installed, ns, "mc", "two-replicas", 60)
    assert {name: cmd_flush(ip) for name, ip in ips.items()} == dict.fromkeys(ips, 1)


@pytest.mark.parametrize("concurrency", [1, 10])
def test_helm_upgrade_mid_clear_hands_over_and_flushes_no_pod_twice(installed: Cluster, ns: str,
                                                                   concurrency: int) -> None:
    """A rollout (`helm upgrade` changing the pod template of the two replicas) while a clear is under way: the
    Deployment starts a new pod, and once it is Ready as a standby stops an old one; a leader that gets its
    SIGTERM starts no more pods, finishes and writes the flushes in flight, and hands the Lease over; the next
    leader goes on with the pods not started. memcached counts every pod flushed exactly once."""
    # Each flush takes 6 s, so the clear lasts 36 s (24 s at concurrency 10), and the rollout reaches the leader
    # 6 to 12 s after the upgrade on this bed: it lands with flushes in flight.
    pods = 6 if concurrency == 1 else 40
    ips = _memcached(installed, ns, pods, **{"testbed.rolecall.dev/options": "slower-flush"})
    upgrade = ["upgrade", "rolecall", str(CHART), "--namespace", NAMESPACE, *bed_values(), "--set", "replicaCount=2"]
    out = helm(installed, *upgrade, "--wait", "--timeout", "180s")  # two replicas, whatever earlier tests left
    assert out.returncode == 0, out.stdout + out.stderr
    before = {p["metadata"]["name"] for p in wait_ready_operators(installed, 2)}
    create_cs(installed, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=concurrency))
    wait_for(lambda: status(installed, ns, "mc").get("observedGeneration") == 1, "observed", 60)
    token = f"rollout-{concurrency}"
    annotate_clear(installed, ns, "mc", token)
    wait_for(lambda: (status(installed, ns, "mc").get("run") or {}).get("holder"), "the clear under way", 60)
    started = time.monotonic()
    out = helm(installed, *upgrade, "--set-string", f"podAnnotations.rolecall\\.test/rollout={token}")
    assert out.returncode == 0, out.stdout + out.stderr

    samples: list[tuple[float, str, int]] = []  # (seconds since the upgrade, the run's holder, pods done)
    stopping: dict[str, float] = {}  # operator pod -> seconds since the upgrade when it was seen terminating

    def handled() -> dict | None:
        st = status(installed, ns, "mc")
        if run := st.get("run"):
            samples.append((time.monotonic() - started, run.get("holder") or "", st.get("done") or 0))
        for pod in client.CoreV1Api(installed.api_client).list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items:
            if pod.metadata.deletion_timestamp and pod.metadata.name not in stopping:
                stopping[pod.metadata.name] = time.monotonic() - started
        return st if st.get("lastHandledClearRequest") == token else None

    st = wait_for(handled, f"{token} handled", 180, interval=0.2)
    flushes = {name: cmd_flush(ip) for name, ip in ips.items()}

    def replaced() -> list[dict] | None:
        now = wait_ready_operators(installed, 2)
        return now if before.isdisjoint(p["metadata"]["name"] for p in now) else None

    wait_for(replaced, "the rollout to replace both pods", 120)
    holders, handovers, done_at_handover = [samples[0][1]], [], []
    for (_, old, done), (t, new, _) in itertools.pairwise(samples):
        if new != old:  # the run goes on under a new leader: how long after the old one was told to stop
            holders.append(new)
            done_at_handover.append(done)
            told = next((at for name, at in stopping.items() if old.startswith(name)), None)
            handovers.append(f"{done} of {pods} done, {t - told:.1f}s after its SIGTERM" if told is not None
                             else f"{done} of {pods} done")
    print(f"concurrency {concurrency}, {pods} pods: run holders {holders}; handovers {handovers}; "
          f"flushes per pod {sorted(flushes.values())}; outcome {st['lastRequest']['outcome']}")
    assert len(holders) >= 2, f"the clear ended before the rollout reached its leader: {samples}"
    assert all(done < pods for done in done_at_handover), samples
    assert flushes == dict.fromkeys(ips, 1), f"a pod flushed twice or never: {flushes}"
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["lastRequest"]["done"] == pods, st["lastRequest"]


def test_the_stand_in_reports_a_missing_image_and_unsupported_fields_on_the_pod(installed: Cluster, ns: str) -> None:
    def pod(name: str, image: str, **spec: object) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {RUN_IN_PODMAN: "podman"}},
                "spec": {"containers": [{"name": "c", "image": image, **spec.pop("container", {})}], **spec}}

    create_pods(installed, ns, [
        pod("absent", "localhost/rolecall/absent:1"),
        pod("scratch", IMAGE, volumes=[{"name": "scratch", "emptyDir": {}}],
            container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}),
    ])

    def waiting(name: str, reasons: tuple[str, ...]) -> dict | None:
        st = installed.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout
        statuses = json.loads(st).get("status", {}).get("containerStatuses") or [{}]
        found = statuses[0].get("state", {}).get("waiting") or {}
        return found if found.get("reason") in reasons else None

    absent = wait_for(lambda: waiting("absent", ("ErrImagePull", "ImagePullBackOff")), "ErrImagePull", 30)
    assert "not in local podman storage" in absent["message"] and "make image" in absent["message"]
    scratch = wait_for(lambda: waiting("scratch", ("UnsupportedByTestBed",)), "UnsupportedByTestBed", 30)
    assert "spec.volumes[scratch]" in scratch["message"] and "volumeMounts[scratch]" in scratch["message"]
    phase = installed.kubectl("get", "pod", "-n", ns, "scratch", "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Pending"  # never Running with a field ignored


def test_liveness_restarts_a_frozen_operator_and_a_standby_is_ready(installed: Cluster, ns: str) -> None:
    """A second operator pod (a standby of the chart's, same Lease) with fast probes: Ready as a standby; frozen
    (SIGSTOP), its probes stop answering, the stand-in kills and restarts it, and it is Ready again."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "standby", "labels": {RUN_IN_PODMAN: "podman"}},
           "spec": {"serviceAccountName": "rolecall-operator", "terminationGracePeriodSeconds": 2,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "operator", "image": IMAGE,
                        "args": ["--lease-namespace", NAMESPACE, "--namespace", ns, "--metrics-address", "",
                                 "--health-address", "$(POD_IP):8081"],
                        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "ports": [{"name": "health", "containerPort": 8081}],
                        "startupProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 1,
                                         "failureThreshold": 60},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 1,
                                          "timeoutSeconds": 1, "failureThreshold": 3},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 1},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}}]}}
    installed.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(pod))
    try:
        def standby() -> dict | None:
            found = json.loads(installed.kubectl("get", "pod", "-n", NAMESPACE, "standby", "-o", "json").stdout)
            return found if ready(found) else None

        first = wait_for(standby, "the standby Ready", 60)
        assert not lease_holder(installed).startswith("standby")
        frozen = container(first)
        restarts = first["status"]["containerStatuses"][0]["restartCount"]
        os.kill(frozen["State"]["Pid"], signal.SIGSTOP)

        def restarted() -> dict | None:
            found = standby()
            return found if found and found["status"]["containerStatuses"][0]["restartCount"] > restarts else None

        again = wait_for(restarted, "the frozen standby restarted by liveness and Ready again", 90)
        assert container(again)["Id"] != frozen["Id"]
        last = again["status"]["containerStatuses"][0]["lastState"]["terminated"]
        # SIGTERM stays pending while stopped: the grace period ran out and SIGKILL ended it (podman's own record)
        assert last["exitCode"] == 128 + signal.SIGKILL and last["containerID"] == f"podman://{frozen['Id']}", last
        reasons = installed.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                    "involvedObject.name=standby", "-o", "jsonpath={.items[*].message}").stdout
        assert "Liveness probe failed" in reasons and "failed liveness probe, will be restarted" in reasons, reasons
    finally:
        installed.kubectl("delete", "pod", "-n", NAMESPACE, "standby", "--wait=false", check=False)


def test_helm_uninstall_removes_the_operator_and_its_containers(installed: Cluster) -> None:
    uids = [p["metadata"]["uid"] for p in operator_pods(installed)]
    out = helm(installed, "uninstall", "rolecall", "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: not operator_pods(installed), "the operator pods to go", 60)

    def containers_gone() -> bool:
        return all(not podman("ps", "--all", "--quiet", "--filter", f"label=testbed.rolecall.dev/pod-uid={u}")
                   .stdout.strip() for u in uids)

    wait_for(containers_gone, "the stand-in to remove the containers", 60)
    crds = installed.kubectl("get", "crd", "-o", "name").stdout
    assert "cacheservers.rolecall.dev" in crds  # Helm keeps CRDs (and so the users' resources) on uninstall


def test_kubectl_apply_k_with_an_overlay_installs_the_same_image_and_works(installed: Cluster, ns: str,
                                                                        tmp_path: Path) -> None:
    """The plain install (after the Helm release is gone, its CRDs kept): an overlay sets the local image and the
    bed's runtime label, as a user's overlay sets their registry."""
    helm(installed, "uninstall", "rolecall", "--namespace", NAMESPACE, "--wait")  # if an earlier test left it
    wait_for(lambda: not operator_pods(installed), "no operator pods", 60)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    label = [{"op": "add", "path": "/spec/template/metadata/labels/testbed.rolecall.dev~1runtime", "value": "podman"}]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(REPO / "manifests", overlay)],
        "images": [{"name": "rolecall/operator", "newName": IMAGE_REPOSITORY, "newTag": VERSION}],
        "patches": [{"target": {"kind": "Deployment", "name": "rolecall-operator"}, "patch": yaml.safe_dump(label)}],
    }))
    applied = installed.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay), check=False)
    assert applied.returncode == 0, applied.stderr
    try:
        (pod,) = wait_ready_operators(installed, 1)
        assert container(pod)["Image"] == image_id()
        _clear_flushes_each_pod_once(installed, ns, "kustomize")
        _web_counts_and_maintenance_deletes(installed, ns)
    finally:
        installed.kubectl("delete", "deployment", "-n", NAMESPACE, "rolecall-operator", "--wait=false", check=False)
