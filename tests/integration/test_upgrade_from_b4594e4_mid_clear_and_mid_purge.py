"""`helm upgrade` from the last build before the install work (commit b4594e4, whose CRDs were in the chart's
crds/ directory) to this one, with resources of every kind and work in flight: a long cache clear, and a
clearOldData whose batch waits on a table lock held by the test across the upgrade. Counted on the engines:
no pod left unflushed, and the only pod flushed twice is the one the old build had in flight when it
stopped (it predates the drain on SIGTERM and leaves that flush unrecorded; docs/upgrading.md says so);
every old row deleted and no new one. The CRDs are adopted as docs/upgrading.md says (Helm refuses them
before that, with the message the docs quote), then updated by the upgrade; every resource reconciles under
the new operator, including the maintenance the old one left Running. `make old-image` builds the old image
from that commit's sources (hack/build-old-image.sh)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from incluster import (
    CHART,
    NAMESPACE,
    bed_values,
    helm,
    image_id,
    lease_holder,
    operator_pods,
    release,
    wait_ready_operators,
)

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_deployment,
    pod_ips,
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
    pg,
    pg_pods,
    pg_scalar,
    pg_server,
    seed_events,
    status_of,
)
from harness import REPO, Cluster, deployment, namespace_for_test, running_pods, wait_for
from webkit import create_web, request_refresh, web_status, webserver

pytestmark = pytest.mark.incluster

OLD_REV = "b4594e4"
OLD_CHART = REPO / ".testbed" / "old" / OLD_REV / "charts" / "rolecall"
CRDS = ("cacheservers", "databaseservers", "databasemaintenances", "webservers")


@pytest.fixture(scope="module")
def old_release(upgrade_bed: Cluster) -> Iterator[Cluster]:
    image_id(f"localhost/rolecall/operator:{OLD_REV}")  # "run `make old-image`" when missing
    assert OLD_CHART.is_dir(), "run `make old-image` (it extracts the old sources, chart included)"
    yield from release(upgrade_bed, OLD_CHART, *bed_values(tag=OLD_REV))


@pytest.fixture
def ns(request: pytest.FixtureRequest, old_release: Cluster) -> Iterator[str]:
    yield from namespace_for_test(old_release, request)


def _crd_spec(cluster: Cluster, plural: str) -> dict:
    return yaml.safe_load(cluster.kubectl("get", "crd", f"{plural}.rolecall.dev", "-o", "yaml").stdout)


def test_upgrade_loses_nothing_and_redoes_only_what_the_old_build_left_unrecorded(old_release: Cluster,
                                                                                  ns: str) -> None:
    cluster = old_release
    (old_pod,) = wait_ready_operators(cluster, 1)
    # Every kind, made under the old operator.
    create_deployment(cluster, ns, deployment("mc", "memcached", 6,
                                              annotations={"testbed.rolecall.dev/options": "slower-flush"}))
    running_pods(cluster, ns, "app=mc", 6)
    ips = pod_ips(cluster, ns, "app=mc")
    wait_memcached(list(ips.values()))
    create_cs(cluster, ns, cacheserver("mc", "memcached", {"app": "mc"}, concurrency=1))
    create_deployment(cluster, ns, deployment("web", "nginx", 1))
    running_pods(cluster, ns, "app=web", 1)
    create_web(cluster, ns, webserver("web", "nginx", {"app": "web"}, refreshIntervalSeconds=3600))
    db_ip = pg_pods(cluster, ns, ["pg-0"])["pg-0"]
    seed_events(db_ip)
    create(cluster, ns, SERVERS, pg_server("db", {"app": "pg"}))
    for name in ("mc",):
        wait_for(lambda name=name: status(cluster, ns, name).get("observedGeneration") == 1, "observed", 60)

    # Work in flight: a clear of 6 pods at 6 s each, and a purge whose DELETE waits on our SHARE lock.
    annotate_clear(cluster, ns, "mc", "before-upgrade")
    wait_for(lambda: sum(cmd_flush(ip) for ip in ips.values()) >= 1, "the clear under way", 60)
    lock = pg(db_ip)
    lock.autocommit = False
    lock.execute("LOCK TABLE events IN SHARE MODE")
    create(cluster, ns, MAINTENANCES, maintenance("purge", "db", [CLEAR]))
    waiting = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
               "AND upper(left(query, 6)) = 'DELETE'")
    wait_for(lambda: pg_scalar(db_ip, waiting) >= 1, "the purge's DELETE waiting on the lock", 60)
    assert status_of(cluster, ns, MAINTENANCES, "purge").get("phase") == "Running"

    # The upgrade. Helm refuses the old CRDs until they are adopted, with the error docs/upgrading.md quotes.
    upgrade = ["upgrade", "rolecall", str(CHART), "--namespace", NAMESPACE, *bed_values(), "--wait",
               "--timeout", "180s"]
    in_progress = 'jsonpath={range .items[?(@.status.run)]}{.metadata.namespace}/{.metadata.name}{"\\n"}{end}'
    listed = cluster.kubectl("get", "cacheservers", "-A", "-o", in_progress)  # as docs/upgrading.md gives it
    assert listed.stdout.split() == [f"{ns}/mc"], listed.stdout
    refused = helm(cluster, *upgrade)
    assert refused.returncode != 0, refused.stdout
    assert ('Unable to continue with update: CustomResourceDefinition "cacheservers.rolecall.dev" in namespace "" '
            "exists and cannot be imported into the current release: invalid ownership metadata") in refused.stderr, (
        refused.stderr)
    for plural in CRDS:  # the adoption, exactly as docs/upgrading.md gives it
        cluster.kubectl("label", "crd", f"{plural}.rolecall.dev", "app.kubernetes.io/managed-by=Helm", "--overwrite")
        cluster.kubectl("annotate", "crd", f"{plural}.rolecall.dev", "meta.helm.sh/release-name=rolecall",
                        "meta.helm.sh/release-namespace=rolecall-system", "--overwrite")
    started = time.monotonic()
    out = helm(cluster, *upgrade)
    assert out.returncode == 0, out.stdout + out.stderr
    (new_pod,) = wait_ready_operators(cluster, 1)
    assert new_pod["metadata"]["name"] != old_pod["metadata"]["name"]
    wait_for(lambda: lease_holder(cluster).startswith(new_pod["metadata"]["name"]), "the new operator leading", 60)
    lock.rollback()  # the purge may go on now, under the new operator
    lock.close()

    # Nothing lost, nothing repeated: the engines' own counts.
    # b4594e4 predates the drain on SIGTERM (c3ab59c): it stops with its flush in flight unrecorded, and that one
    # pod (concurrency 1) is flushed again by the new operator. Every pod it recorded is never flushed again.
    st = wait_handled(cluster, ns, "mc", "before-upgrade", 180)
    flushes = {name: cmd_flush(ip) for name, ip in ips.items()}
    assert all(n >= 1 for n in flushes.values()), f"a pod never flushed: {flushes}"
    assert sum(n - 1 for n in flushes.values()) <= 1, f"more than the one pod in flight flushed twice: {flushes}"
    assert st["lastRequest"]["outcome"] == "Succeeded" and st["lastRequest"]["done"] == 6, st["lastRequest"]
    done = wait_for(lambda: (s := status_of(cluster, ns, MAINTENANCES, "purge")).get("phase") in
                    ("Succeeded", "Failed") and s, "the purge the old operator left Running to finish", 180)
    assert done["phase"] == "Succeeded", done
    assert pg_scalar(db_ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(db_ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW
    assert done["rowsDeleted"] == OLD, done

    # The CRDs are the new ones, and the release's.
    for plural in CRDS:
        live = _crd_spec(cluster, plural)
        generated = yaml.safe_load((REPO / "crds" / f"{plural}.rolecall.dev.yaml").read_text())
        assert live["spec"]["versions"] == generated["spec"]["versions"], f"{plural}: the CRD was not updated"
        assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Every resource reconciles under the new operator: a new request of each kind is carried out.
    annotate_clear(cluster, ns, "mc", "after-upgrade")
    wait_handled(cluster, ns, "mc", "after-upgrade", 120)
    assert {name: cmd_flush(ip) - flushes[name] for name, ip in ips.items()} == dict.fromkeys(ips, 1)
    assert request_refresh(cluster, ns, "web", "after-upgrade")["observedGeneration"] >= 1
    assert web_status(cluster, ns, "web").get("phase") == "Running"
    seed = ("INSERT INTO events (created_at, payload) SELECT now() - interval '40 days', 'old' "
            "FROM generate_series(1, 5)")
    with pg(db_ip) as conn:
        conn.execute(seed)
    create(cluster, ns, MAINTENANCES, maintenance("purge-again", "db", [CLEAR]))
    again = wait_for(lambda: (s := status_of(cluster, ns, MAINTENANCES, "purge-again")).get("phase") in
                     ("Succeeded", "Failed") and s, "a new purge", 120)
    assert again["phase"] == "Succeeded" and again["rowsDeleted"] == 5, again
    assert pg_scalar(db_ip, "SELECT count(*) FROM events WHERE payload = 'new'") == NEW
    print(f"upgrade from {OLD_REV}: new operator leading {time.monotonic() - started:.1f}s after helm upgrade; "
          f"flushes per pod by the upgrade's end {sorted(flushes.values())}; purge {done['rowsDeleted']} rows "
          f"under the new operator; operator pods now {[p['metadata']['name'] for p in operator_pods(cluster)]}")
