"""The oldest and the newest supported Kubernetes (hack/versions.env COMPAT_KUBE_VERSION and KUBE_VERSION):
`helm install` in the default admission.mode auto picks the mode by itself (the webhook on the oldest, which
serves no MutatingAdmissionPolicy v1; the policies on the newest), the operator runs from the image, a clear is
recorded with its requester and flushes each pod once, a user without the right is refused by the
ValidatingAdmissionPolicy, and the schema and CEL refuse bad input with their messages. The oldest runs on the
compatibility bed, whose apiserver, controller-manager and scheduler are that version (`make compat-bins`),
with the webhook called by `url` (docs/admission-modes.md, "On the test bed"); the newest on the in-cluster
bed, which is the main beds' version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from incluster import CHART, NAMESPACE, bed_values, helm, image_id, release, wait_ready_operators
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from cachekit import GROUP, VERSION, cacheserver, cmd_flush, create_cs, memcached_deployment, wait_handled
from harness import Cluster, bind, client_as, namespace_for_test, pinned_version, wait_for
from testbed.cluster import free_port

pytestmark = pytest.mark.incluster
CLEAR = "rolecall.dev/clear-requested-at"


# (end, bed fixture, the version pin, the mode auto must pick there)
ENDS = {"oldest": ("compat_bed", "COMPAT_KUBE_VERSION", "webhook"),
        "newest": ("incluster_bed", "KUBE_VERSION", "policy")}


@pytest.fixture(scope="module", params=sorted(ENDS))
def installed(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    bed_fixture, pin, _ = ENDS[request.param]
    bed: Cluster = request.getfixturevalue(bed_fixture)
    image_id()
    version = bed.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{pinned_version(pin)}"' in version, version
    port = free_port()
    # The webhook's bed-only settings (a `url`, a loopback address); the policy mode ignores them.
    yield from release(bed, CHART, *bed_values(), "--set", f"admission.webhook.url=https://127.0.0.1:{port}",
                       "--set", f"admission.webhook.address=127.0.0.1:{port}",
                       "--set", "admission.webhook.extraDNSNames={127.0.0.1}")


@pytest.fixture
def mode(request: pytest.FixtureRequest, installed: Cluster) -> str:
    return ENDS[request.node.callspec.params["installed"]][2]


@pytest.fixture
def ns(request: pytest.FixtureRequest, installed: Cluster) -> Iterator[str]:
    yield from namespace_for_test(installed, request)


def _as(cluster: Cluster, user: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(client_as(cluster, user))


def test_auto_mode_chose_by_itself_and_a_clear_is_recorded_and_done(installed: Cluster, mode: str, ns: str) -> None:
    manifest = helm(installed, "get", "manifest", "rolecall", "--namespace", NAMESPACE).stdout
    recorders = {"webhook": "kind: MutatingWebhookConfiguration\n", "policy": "kind: MutatingAdmissionPolicy\n"}
    assert recorders[mode] in manifest, manifest
    assert all(kind not in manifest for other, kind in recorders.items() if other != mode), manifest
    (pod,) = wait_ready_operators(installed, 1)
    assert f"--admission-mode={mode}" in pod["spec"]["containers"][0]["args"]
    ips = memcached_deployment(installed, ns, 3)
    bind(installed, ns, "carol", "rolecall-edit")
    bind(installed, ns, "carol", "rolecall-cache-clearer")
    bind(installed, ns, "dave", "rolecall-edit")
    create_cs(installed, ns, cacheserver("mc", "memcached", {"app": "mc"}))
    carol = _as(installed, "carol")
    wait_for(lambda: carol.patch_namespaced_custom_object(GROUP, VERSION, ns, "cacheservers", "mc",
                                                          {"metadata": {"annotations": {CLEAR: "compat"}}}),
             f"carol's clear admitted in {mode} mode", 60)
    wait_handled(installed, ns, "mc", "compat", 60)
    assert [cmd_flush(ip) for ip in ips] == [1, 1, 1]
    cs = client.CustomObjectsApi(installed.api_client).get_namespaced_custom_object(
        GROUP, VERSION, ns, "cacheservers", "mc")
    assert cs["metadata"]["annotations"]["rolecall.dev/clear-requested-by"] == "carol"
    # A user who may edit CacheServers but not clear: refused by the ValidatingAdmissionPolicy, with its words.
    with pytest.raises(ApiException) as refused:
        _as(installed, "dave").patch_namespaced_custom_object(
            GROUP, VERSION, ns, "cacheservers", "mc", {"metadata": {"annotations": {CLEAR: "daves"}}})
    assert refused.value.status == 403, refused.value.body
    assert "a cache clear" in refused.value.body and "create on pods/exec" in refused.value.body
    assert [cmd_flush(ip) for ip in ips] == [1, 1, 1]


# 1.34's apiserver writes `Invalid value: "string"` (the type) where later ones write the rejected value for a
# failed x-kubernetes-validations rule; the field and the rule's words are there in all.
@pytest.mark.parametrize(("spec", "words"), [
    ({"clearedAfter": "tomorrow"}, ["spec.clearedAfter", "must be an RFC 3339 time"]),
    ({"clearSchedule": {"cron": "61 * * * *", "timeZone": "UTC"}},
     ["spec.clearSchedule.cron", "must be a cron schedule of 5 fields (minute 0-59"]),
    ({"clearSchedule": {"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}},
     ["spec.clearSchedule.timeZone", "must be an IANA time zone name"]),
])
def test_the_schema_and_cel_refuse_bad_input_in_words(installed: Cluster, ns: str, spec: dict,
                                                      words: list[str]) -> None:
    with pytest.raises(ApiException) as refused:
        create_cs(installed, ns, cacheserver("bad", "memcached", {"app": "mc"}, **spec))
    assert refused.value.status == 422, refused.value.body
    for text in words:
        assert text in refused.value.body, (text, refused.value.body)
