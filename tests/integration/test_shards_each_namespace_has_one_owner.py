"""Namespace shards: two operator processes, each with its own namespaces (--namespace) and its own Lease
(--lease-name), as the chart's `shards` value deploys them. Every resource is acted on exactly once, by the
shard that owns its namespace (memcached's own cmd_flush, and each process's request counter); a resource in
a namespace no shard owns is left alone, and the chart's admission policy warns when it is created."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from kubernetes import client  # type: ignore[import-untyped]

from cachekit import annotate_clear, cacheserver, cmd_flush, create_pods, pod_ips, standin_pod, status
from harness import REPO, Cluster, Operator, new_namespace, running_pods, wait_for
from testbed.install import kubectl, tool_path

pytestmark = pytest.mark.localbed

UNOWNED_POLICY = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _unowned_warning_policy(shards: dict[str, str]) -> list[dict[str, Any]]:
    """The chart's warning policy for these shards, as `helm template` renders it."""
    sets = []
    for i, (name, ns) in enumerate(shards.items()):
        sets += ["--set", f"shards[{i}].name={name}", "--set", f"shards[{i}].namespaces={{{ns}}}"]
    out = subprocess.run([tool_path("helm"), "template", "rolecall", str(REPO / "charts" / "rolecall"),
                          "--namespace", "rolecall-system", *sets], text=True, capture_output=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout)
            if d and d["kind"] in UNOWNED_POLICY and d["metadata"]["name"] == "rolecall-unowned-namespace"]


def _apply_cs(cluster: Cluster, ns: str, name: str) -> str:
    """Creates a CacheServer with kubectl, as a person would; returns what kubectl said on stderr."""
    body = yaml.safe_dump(cacheserver(name, "memcached", {"app": "mc"}))
    out = kubectl(cluster.kubeconfig, "apply", "-n", ns, "-f", "-", input=body)
    return out.stderr


def test_each_namespace_is_handled_by_its_own_shard_exactly_once_and_unowned_ones_are_reported(
        local_bed: Cluster, namespace: str, operator: Operator, tmp_path: Any) -> None:
    a, b, unowned = namespace, new_namespace(local_bed, "shard-b"), new_namespace(local_bed, "no-shard")
    policy = _unowned_warning_policy({"a": a, "b": b})
    assert [d["kind"] for d in policy] == list(UNOWNED_POLICY), policy
    shard_b = Operator(kubeconfig=operator.kubeconfig, namespaces=[b], log_dir=tmp_path, lease_namespace=a)
    try:
        for ns in (a, b, unowned):
            create_pods(local_bed, ns, [standin_pod("mc-0", "memcached", {"app": "mc"})])
        ips = {ns: next(iter(pod_ips(local_bed, ns, "app=mc").values())) for ns in (a, b, unowned)
               if running_pods(local_bed, ns, "app=mc", 1)}
        kubectl(local_bed.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(policy))
        # The binding takes effect once the apiserver's policy informers have it: retried, like `kubectl wait`,
        # each time with a new object (applying an unchanged one reaches no admission at all).
        probes = iter(range(1000))
        warned = wait_for(lambda: (said := _apply_cs(local_bed, unowned, f"probe-{next(probes)}")) and
                          "no rolecall operator watches namespace" in said and said,
                          "the unowned-namespace warning", 30)
        assert f"namespace {unowned}" in warned and "nothing will act on it" in warned, warned
        for ns in (a, b, unowned):
            said = _apply_cs(local_bed, ns, "mc")
            assert ("no rolecall operator watches" in said) == (ns == unowned), (ns, said)

        operator.start("--lease-name", "rolecall-operator-a")
        shard_b.start("--lease-name", "rolecall-operator-b")
        for ns in (a, b, unowned):
            annotate_clear(local_bed, ns, "mc", "once")
        for ns in (a, b):
            wait_for(lambda ns=ns: status(local_bed, ns, "mc").get("lastHandledClearRequest") == "once",
                     f"the clear in {ns} handled", 60)
        assert {ns: cmd_flush(ip) for ns, ip in ips.items()} == {a: 1, b: 1, unowned: 0}
        for op in (operator, shard_b):  # each process carried out exactly one request: its own namespace's
            wait_for(lambda op=op: op.metric("rolecall_requests_total", {"action": "clear"}) == 1,
                     "one request counted per shard", 30)
        assert status(local_bed, unowned, "mc") == {}, "a resource in a namespace no shard owns was touched"
        leases = {name: client.CoordinationV1Api(local_bed.api_client).read_namespaced_lease(name, a)
                  for name in ("rolecall-operator-a", "rolecall-operator-b")}
        holders = {name: lease.spec.holder_identity for name, lease in leases.items()}
        assert all(holders.values()) and len(set(holders.values())) == 2, holders
    finally:
        shard_b.stop_all()
        for d in policy:
            kubectl(local_bed.kubeconfig, "delete", "--ignore-not-found", d["kind"].lower(), d["metadata"]["name"])
