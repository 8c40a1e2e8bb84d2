"""Property-style fuzz of every kind against the real apiserver and operator: hypothesis draws specs (mostly
plausible, some malformed); each is either refused at admission with a message a person can read, or
admitted and then settles: Reconciling False and Ready True, or Stalled / Degraded with a reason from the
documented list (runs/reasons.py). Never an unreadable refusal, never an admitted spec the operator
chokes on without saying why.

`make test` runs a fixed, bounded draw (a new random failure would be a flaky test); `make fuzz` sets
ROLECALL_FUZZ_RANDOM=1 and more examples for a longer, random-seeded search.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

from cachekit import create_deployment
from harness import Cluster, Operator
from rolecall.api.kinds import KINDS
from rolecall.runs.reasons import DEGRADED, STALLED

PER_KIND = int(os.environ.get("ROLECALL_FUZZ_PER_KIND", "25"))
EXAMPLES = int(os.environ.get("ROLECALL_FUZZ_EXAMPLES", "1"))
RANDOM = os.environ.get("ROLECALL_FUZZ_RANDOM") == "1"
UNREADABLE = ("failed to convert", "valueUnstructured", "&{", "rule compiled but failed", "Internal error",
              "no such key", "panic")

keys = st.sampled_from(["app", "tier", "app.kubernetes.io/name", "bad key", "-x", "a" * 64, "example.com/role",
                        "Example.com/x", "zone"])
values = st.sampled_from(["cache", "", "-bad", "v1.2", "x" * 64, "ok_1", "web"])
labels = st.dictionaries(keys, values, min_size=1, max_size=3)
expression = st.fixed_dictionaries(
    {"key": keys, "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Near"])},
    optional={"values": st.lists(values, max_size=3)})
selector = st.one_of(st.builds(lambda m: {"matchLabels": m}, labels),
                     st.builds(lambda e: {"matchExpressions": e}, st.lists(expression, min_size=1, max_size=2)),
                     st.just({}))


def _when(t: dt.datetime, digits: int) -> str:
    return t.isoformat(timespec="microseconds")[:20 + digits].rstrip(".") + "Z"


times = st.one_of(
    st.builds(_when, st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)),
              st.integers(0, 6)),
    st.sampled_from(["2026-02-30T10:00:00Z", "2024-02-29T10:00:00Z", "2100-02-29T00:00:00Z", "tomorrow",
                     "2026-11-25T10:00:00", "2026-11-26T04:37:29.600Z", "2026-11-25T10:00:00+01:00", 12]))
workload = st.one_of(st.none(), st.fixed_dictionaries({
    "kind": st.sampled_from(["Deployment", "StatefulSet", "Job"]),
    "name": st.sampled_from(["target", "missing", "Bad_Name"])}))
secret = st.one_of(st.none(), st.fixed_dictionaries({"name": st.sampled_from(["creds", "missing", "Bad_Name"])},
                                                    optional={"passwordKey": st.sampled_from(["password", "a b"])}))
common = {"selector": selector, "concurrency": st.one_of(st.integers(-1, 300), st.sampled_from(["25%", "0%", "101%",
                                                                                                 "abc", "5"])),
          "stopped": st.one_of(st.booleans(), st.just("yes")), "workloadRef": workload,
          "timeoutSeconds": st.integers(-1, 5000)}
optional_common = {"nodeSelector": labels}


def _spec(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional={**optional_common, **optional}).map(
        lambda d: {k: v for k, v in d.items() if v is not None})


SPECS = {
    "CacheServer": _spec({"engine": st.sampled_from(["memcached", "redis", "mongo"]), **common},
                         {"clearedAfter": times, "credentialsSecretRef": secret,
                          "statsIntervalSeconds": st.integers(0, 100000), "port": st.integers(0, 70000)}),
    "WebServer": _spec({"engine": st.sampled_from(["nginx", "apache", "iis"]), **common},
                       {"statusPath": st.sampled_from(["/nginx_status", "no-slash", "/a b"]),
                        "port": st.integers(0, 70000), "refreshIntervalSeconds": st.integers(0, 100000),
                        "drainTimeoutSeconds": st.integers(-1, 4000),
                        "userCount": st.fixed_dictionaries({"path": st.sampled_from(["/stats", "stats"]),
                                                            "field": st.sampled_from(["a.b", "a..b"])})}),
    "DatabaseServer": _spec({"engine": st.sampled_from(["postgresql", "sqlite", "mysql"]), **common},
                            {"path": st.sampled_from(["/data/app.db", "rel.db", "/a/../b", "/x y"]),
                             "database": st.sampled_from(["orders", "x" * 70]), "compactedAfter": times,
                             "credentialsSecretRef": secret, "container": st.sampled_from(["app", "Bad_C"])}),
    "DatabaseMaintenance": st.fixed_dictionaries(
        {"databaseServerRef": st.fixed_dictionaries({"name": st.sampled_from(["db", "missing", "Bad_Name"])}),
         "operations": st.lists(st.one_of(
             st.just({"compact": {}}), st.just({"compact": {"full": True, "tables": ["events"]}}),
             st.fixed_dictionaries({"clearOldData": st.fixed_dictionaries({
                 "table": st.sampled_from(["events", "x; DROP TABLE y"]),
                 "timestampColumn": st.just("created_at"),
                 "olderThan": st.sampled_from(["30d", "12h", "1y", "0d"])})}),
             st.just({}), st.just({"compact": {}, "clearOldData": {"table": "e", "timestampColumn": "t",
                                                                   "olderThan": "1d"}})), max_size=3)},
        optional={"schedule": st.sampled_from(["0 3 * * *", "*/15 9-17 * * mon-fri", "61 * * * *", "0 3 * * 9",
                                               "0 0 30 2 *", "junk", "0 3 * * * 30"]),
                  "timeZone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base"]),
                  "window": st.sampled_from(["01:00-05:00", "25:00-26:00"]), "suspend": st.booleans(),
                  "timeoutSeconds": st.integers(-1, 700000)}),
}


def _readable(e: ApiException) -> str:
    assert e.status in (400, 422), (e.status, e.body)
    message = str(json.loads(e.body or "{}").get("message") or "")
    assert message and "spec" in message, message
    assert not any(bad in message for bad in UNREADABLE), message
    return message


def _settled(kind: str, obj: dict[str, Any]) -> str | None:
    """How the object settled (a short verdict), or None while it has not."""
    st_ = obj.get("status") or {}
    gen = obj["metadata"]["generation"]
    conds = {c["type"]: c for c in st_.get("conditions") or []}
    if st_.get("observedGeneration") != gen or conds.get("Reconciling", {}).get("status") != "False":
        return None
    if conds.get("Stalled", {}).get("status") == "True":
        reason = conds["Stalled"]["reason"]
        assert reason in STALLED, f"{kind} Stalled with an undocumented reason {reason}: {conds['Stalled']}"
        return f"Stalled/{reason}"
    if conds.get("Ready", {}).get("status") == "True":
        return "Ready"
    degraded = conds.get("Degraded", {})
    if degraded.get("status") == "True":
        assert degraded["reason"] in DEGRADED, f"{kind} Degraded with an undocumented reason: {degraded}"
        return f"Degraded/{degraded['reason']}"
    return None


@settings(max_examples=EXAMPLES, derandomize=not RANDOM, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzzed_specs_are_refused_readably_or_settle(local_bed: Cluster, namespace: str, operator: Operator,
                                                     data: st.DataObject) -> None:
    api = client.CustomObjectsApi(local_bed.api_client)
    if not operator.procs:
        # A workload the specs may stop and start; its pod carries a label no drawn selector can match.
        create_deployment(local_bed, namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "target"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"fuzz-target": "yes"}},
                     "template": {"metadata": {"labels": {"fuzz-target": "yes"}},
                                  "spec": {"containers": [{"name": "c", "image": "none"}]}}}})
        operator.start()
    admitted: list[tuple[str, str, dict[str, Any]]] = []
    refused: dict[str, int] = {}
    for kind in KINDS:
        for i, spec in enumerate(data.draw(st.lists(SPECS[kind.kind], min_size=PER_KIND, max_size=PER_KIND),
                                           label=kind.kind)):
            name = f"{kind.kind.lower()}-{i}-{int(time.monotonic() * 1000) % 100000}"
            body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name}, "spec": spec}
            try:
                api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body)
            except ApiException as e:
                _readable(e)
                refused[kind.kind] = refused.get(kind.kind, 0) + 1
                continue
            admitted.append((kind.plural, name, spec))
    verdicts: dict[str, str] = {}
    deadline = time.monotonic() + 90
    while len(verdicts) < len(admitted) and time.monotonic() < deadline:
        for plural, name, _ in admitted:
            if name not in verdicts:
                obj = api.get_namespaced_custom_object("rolecall.dev", "v1alpha1", namespace, plural, name)
                verdict = _settled(obj["kind"], obj)
                if verdict:
                    verdicts[name] = verdict
        time.sleep(0.5)
    unsettled = {name: spec for _, name, spec in admitted if name not in verdicts}
    tally: dict[str, int] = {}
    for v in verdicts.values():
        tally[v] = tally.get(v, 0) + 1
    print(f"fuzz: {len(admitted)} admitted, refused per kind {refused}, settled {tally}")
    assert not unsettled, f"admitted but never settled: {json.dumps(unsettled)[:3000]}"
