"""The watch-fed pod index: selectors as the API applies them, entries as of the latest event, and nothing
served stale: a broken or expired watch stops serving its scope until a new full listing replaced it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rolecall import kube
from rolecall.api.types import LabelSelector
from rolecall.targets import index, pods, podwatch
from rolecall.targets.index import PodIndex
from rolecall.targets.podwatch import PodWatch


def pod(name: str, ns: str = "ns", phase: str = "Running", ip: str | None = "10.0.0.1", deleting: bool = False,
        labels: dict[str, str] | None = None, rv: str = "1", host_network: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "resourceVersion": rv,
                            "labels": labels if labels is not None else {"app": "mc"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1", "hostNetwork": host_network},
            "status": {"phase": phase, **({"podIP": ip} if ip else {})}}


@pytest.mark.parametrize(("selector", "labels", "picked"), [
    ({"matchLabels": {"app": "mc"}}, {"app": "mc", "x": "1"}, True),
    ({"matchLabels": {"app": "mc"}}, {"app": "web"}, False),
    ({"matchLabels": {"app": "mc"}}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "a"}, False),
    ({"matchLabels": {"app": "mc"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]},
     {"app": "mc"}, True),
    ({}, {"anything": "x"}, True),
])
def test_selectors_pick_what_the_list_api_would(selector: dict[str, Any], labels: dict[str, str],
                                                 picked: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is picked


def test_entries_keep_what_targeting_needs_and_share_label_sets() -> None:
    idx = PodIndex()
    a, b = idx.entry(pod("a")), idx.entry(pod("b"))
    assert (a.uid, a.name, a.namespace, a.node, a.ip, a.phase, a.running) == (
        "uid-ns-a", "a", "ns", "n1", "10.0.0.1", "Running", True)
    assert a.labels is b.labels  # one dict for every pod that carries the same labels
    assert not idx.entry(pod("c", deleting=True)).running
    assert idx.entry(pod("d", labels={})).labels == {}


def test_a_full_listing_drops_every_entry_it_lacks() -> None:
    idx = PodIndex()
    idx.replace(None, [idx.entry(pod("a")), idx.entry(pod("b")), idx.entry(pod("x", ns="other"))])
    idx.replace(None, [idx.entry(pod("a"))])
    assert idx.get("ns", "uid-ns-b") is None and idx.get("other", "uid-other-x") is None
    idx.replace("other", [idx.entry(pod("y", ns="other"))])  # a namespace scope leaves the others alone
    assert idx.get("ns", "uid-ns-a") is not None and idx.get("other", "uid-other-y") is not None


def test_readers_wait_for_a_lost_scope_and_give_up_with_unavailable() -> None:
    idx = PodIndex()
    with pytest.raises(kube.Unavailable, match="no pod watch covers"):
        asyncio.run(idx.synced("ns", wait=0.01))
    idx.watching("ns")
    with pytest.raises(kube.Unavailable, match="not in step with the apiserver"):
        asyncio.run(idx.synced("ns", wait=0.05))
    idx.replace("ns", [])
    asyncio.run(idx.synced("ns", wait=0.01))
    idx.lost("ns")
    assert not idx.live("ns")

    async def relisted_meanwhile() -> None:
        asyncio.get_running_loop().call_later(0.05, idx.replace, "ns", [])
        await idx.synced("ns", wait=5)

    asyncio.run(relisted_meanwhile())


class FakeApi:
    """Scripted pages and watch streams in place of kube.pod_page / kube.pod_events."""

    def __init__(self, listings: list[list[dict[str, Any]]], streams: list[list[Any]], stop: PodWatch | None = None):
        self.listings, self.streams = listings, streams
        self.watch = stop
        self.calls: list[str] = []

    def page(self, scope: str | None, limit: int, token: str | None) -> dict[str, Any]:
        items = self.listings[0]
        start = int(token or 0)
        chunk = items[start:start + limit]
        more = start + limit < len(items)
        if not more:
            self.listings.pop(0)
        self.calls.append(f"list:{token or ''}")
        return {"metadata": {"resourceVersion": f"list{len(self.calls)}", **({"continue": str(start + limit)}
                                                                              if more else {})}, "items": chunk}

    def events(self, scope: str | None, version: str, timeout: int) -> Iterator[dict[str, Any]]:
        self.calls.append(f"watch:{version}")
        if not self.streams:
            assert self.watch is not None
            self.watch.stop()
            return
        for item in self.streams.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


def _run(monkeypatch: pytest.MonkeyPatch, listings: list[list[dict[str, Any]]], streams: list[list[Any]],
         idx: PodIndex) -> FakeApi:
    watch = PodWatch("ns", index=idx, page=2)
    api = FakeApi(listings, streams, watch)
    monkeypatch.setattr(kube, "pod_page", api.page)
    monkeypatch.setattr(kube, "pod_events", api.events)
    monkeypatch.setattr(watch._stop, "wait", lambda _t=None: False)  # no pauses in a unit test
    idx.watching("ns")
    watch._run()  # in this thread, until the script runs out
    return api


def test_events_apply_and_a_server_ended_stream_resumes_from_the_last_version(monkeypatch: pytest.MonkeyPatch) -> None:
    idx = PodIndex()
    api = _run(monkeypatch, [[pod("a"), pod("b"), pod("c")]], [
        [{"type": "MODIFIED", "object": pod("a", ip="10.0.0.9", rv="11")},
         {"type": "DELETED", "object": pod("b", rv="12")}],
        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
         {"type": "ADDED", "object": pod("d", rv="21")}],
    ], idx)
    assert api.calls == ["list:", "list:2", "watch:list1", "watch:12", "watch:21"]
    assert idx.live("ns")
    assert {p.name for p in idx.select("ns", LabelSelector())} == {"a", "c", "d"}
    assert (a := idx.get("ns", "uid-ns-a")) is not None and a.ip == "10.0.0.9"


@pytest.mark.parametrize("failure", [
    {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}},
    {"type": "ERROR", "object": {"code": 500, "message": "internal"}},
    kube.Unavailable("pod watch broken: ProtocolError"),
    {"type": "MODIFIED", "object": {"metadata": {"name": "no-uid"}}},  # an event that cannot be read
])
def test_a_broken_or_expired_watch_is_listed_again_and_stale_pods_are_dropped(
        monkeypatch: pytest.MonkeyPatch, failure: Any) -> None:
    idx = PodIndex()
    served_while_broken: list[bool] = []
    real_lost = idx.lost

    def lost(scope: str | None, error: BaseException | None = None) -> None:
        real_lost(scope, error)
        served_while_broken.append(idx.live("ns"))

    monkeypatch.setattr(idx, "lost", lost)
    api = _run(monkeypatch, [[pod("a"), pod("b")], [pod("a")]], [[failure]], idx)
    assert served_while_broken == [False]
    assert api.calls[:3] == ["list:", "watch:list1", "list:"], api.calls  # a new full listing, not a resume
    assert idx.get("ns", "uid-ns-b") is None, "a pod deleted while the watch was broken is still served"
    assert idx.live("ns")


def _served(entries: list[dict[str, Any]]) -> None:
    index.PODS.watching("ns")
    index.PODS.replace("ns", [index.PODS.entry(p) for p in entries])


@pytest.mark.parametrize(("entry", "message", "permanent"), [
    (None, "pod is gone", True),
    (pod("t", deleting=True), "terminating", True),
    (pod("t", phase="Pending", ip=None), "no IP yet", False),
    (pod("t", host_network=True), "hostNetwork", True),
])
def test_just_before_acting_a_pod_must_still_be_the_same_running_pod(entry: dict[str, Any] | None, message: str,
                                                                     permanent: bool) -> None:
    _served([entry] if entry else [])
    target = pods.Target(uid="uid-ns-t", name="t", node="n1", listed_ip="10.0.0.1")
    with pytest.raises(pods.NotActionable, match=message) as e:
        asyncio.run(pods.address("ns", target))
    assert e.value.permanent is permanent


def test_the_address_is_the_latest_events_and_resolve_skips_pods_not_running() -> None:
    _served([pod("t", ip="10.0.0.7"), pod("u", phase="Pending", ip=None), pod("v", deleting=True),
             pod("w", labels={"app": "web"})])
    assert asyncio.run(pods.address("ns", pods.Target(uid="uid-ns-t", name="t", node="n1", listed_ip="10.0.0.1"))) \
        == "10.0.0.7"
    picked = asyncio.run(pods.resolve("ns", LabelSelector(match_labels={"app": "mc"}), None))
    assert [t.name for t in picked] == ["t"]
    assert set(asyncio.run(pods.by_uid("ns", LabelSelector(match_labels={"app": "mc"})))) == {
        "uid-ns-t", "uid-ns-u", "uid-ns-v"}
    assert podwatch.PAGE > 0


def test_a_listing_the_api_refuses_fails_readers_at_once_with_the_apis_answer() -> None:
    """The operator's own rights taken away (RBAC): status must name the missing right, not time out."""
    idx = PodIndex()
    idx.watching("ns")
    refusal = kube.ApiException(status=403, reason="Forbidden")
    refusal.body = '{"message": "pods is forbidden: cannot list resource \\"pods\\""}'
    idx.lost("ns", refusal)
    with pytest.raises(kube.ApiException) as e:
        asyncio.run(idx.synced("ns", wait=30))
    assert e.value.status == 403 and "cannot list resource" in e.value.body and e.value is not refusal
    idx.lost("ns", kube.Unavailable("connection refused"))  # other failures: wait, then Unavailable
    idx.replace("ns", [])
    asyncio.run(idx.synced("ns", wait=0.01))  # listed again: the refusal is forgotten
    idx.lost("ns", kube.Unavailable("connection refused"))
    with pytest.raises(kube.Unavailable):
        asyncio.run(idx.synced("ns", wait=0.05))


def test_a_scope_not_heard_from_is_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that died without a word: after STALE_SECONDS without an event or a normal stream end,
    nothing of the scope is served (the act just before a flush refuses with Unavailable)."""
    now = [1000.0]
    monkeypatch.setattr(index.time, "monotonic", lambda: now[0])
    idx = PodIndex()
    idx.watching("ns")
    idx.replace("ns", [idx.entry(pod("t"))])
    assert idx.live("ns")
    now[0] += index.STALE_SECONDS - 1
    assert idx.live("ns")
    now[0] += 2
    assert not idx.live("ns")
    with pytest.raises(kube.Unavailable):
        idx.check("ns")
    idx.heard("ns")  # an event, or a stream the server ended normally
    assert idx.live("ns")


def test_the_first_listing_gets_a_longer_wait_than_a_relisting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "SYNC_WAIT_SECONDS", 0.1)  # a relisting's wait, made short
    idx = PodIndex()
    idx.watching("ns")

    async def listed_after(seconds: float) -> None:
        asyncio.get_running_loop().call_later(seconds, idx.replace, "ns", [])
        await idx.synced("ns")

    asyncio.run(listed_after(0.3))  # the first listing: waited for, longer than a relisting's wait
    idx.lost("ns")
    with pytest.raises(kube.Unavailable):
        asyncio.run(listed_after(0.3))  # a relisting: given up after SYNC_WAIT_SECONDS
