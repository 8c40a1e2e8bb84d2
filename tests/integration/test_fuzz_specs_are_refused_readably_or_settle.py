"""Property-style fuzz of every kind against the real apiserver and operator: hypothesis draws specs (valid
values for a random subset of fields; half of them with one field made invalid); each is either refused
at admission with a message a person can read, or admitted and then settles: Ready, or Stalled / Degraded
with a reason from the documented list (runs/reasons.py), or retrying with a backoff shown in status.
Never an unreadable refusal, and never an admitted spec the operator then calls InvalidSpec (admission
must catch what the operator cannot process).

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

PER_KIND = int(os.environ.get("ROLECALL_FUZZ_PER_KIND", "10"))
EXAMPLES = int(os.environ.get("ROLECALL_FUZZ_EXAMPLES", "6"))
RANDOM = os.environ.get("ROLECALL_FUZZ_RANDOM") == "1"
UNREADABLE = ("failed to convert", "valueUnstructured", "&{", "rule compiled but failed", "Internal error",
              "no such key", "panic")

def _when(t: dt.datetime, digits: int, offset: str) -> str:
    return t.isoformat(timespec="microseconds")[:20 + digits].rstrip(".") + offset


good_key = st.sampled_from(["app", "tier", "app.kubernetes.io/name", "example.com/role", "zone"])
good_value = st.sampled_from(["cache", "web", "v1.2", "ok_1", ""])
labels = st.dictionaries(good_key, good_value, min_size=1, max_size=3)
bad_labels = st.dictionaries(st.sampled_from(["bad key", "-x", "a" * 64, "Example.com/x"]), good_value,
                             min_size=1, max_size=2) | st.dictionaries(good_key, st.sampled_from(["-bad", "x" * 64]),
                                                                       min_size=1, max_size=2)
expression = st.one_of(
    st.fixed_dictionaries({"key": good_key, "operator": st.sampled_from(["In", "NotIn"]),
                           "values": st.lists(good_value, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"key": good_key, "operator": st.sampled_from(["Exists", "DoesNotExist"])}))
selector = st.one_of(st.builds(lambda m: {"matchLabels": m}, labels),
                     st.builds(lambda e: {"matchExpressions": e}, st.lists(expression, min_size=1, max_size=2)))
bad_selector = st.one_of(st.just({}), st.builds(lambda m: {"matchLabels": m}, bad_labels),
                         st.just({"matchExpressions": [{"key": "app", "operator": "In"}]}),
                         st.just({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]}))
times = st.one_of(
    st.builds(_when, st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)),
              st.integers(0, 6), st.sampled_from(["Z", "+01:00", "-05:30"])),
    st.just("2024-02-29T10:00:00Z"))
bad_times = st.sampled_from(["2026-02-30T10:00:00Z", "2100-02-29T00:00:00Z", "tomorrow", "2026-11-25T10:00:00",
                             "2026-13-01T00:00:00Z", 12])
workload = st.fixed_dictionaries({"kind": st.sampled_from(["Deployment", "StatefulSet"]),
                                  "name": st.sampled_from(["target", "missing"])})
secret = st.fixed_dictionaries({"name": st.sampled_from(["creds", "missing"])})
schedule = st.fixed_dictionaries(
    {"cron": st.sampled_from(["0 3 * * *", "*/15 9-17 * * mon-fri", "* * * * * */20", "0 0 30 2 *"])},
    optional={"timeZone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]), "suspend": st.booleans(),
              "startingDeadlineSeconds": st.integers(1, 86400), "dryRun": st.booleans(),
              "startWindow": st.sampled_from(["01:00-05:00", "22:00-02:00"])})
bad_schedule = st.sampled_from([{"cron": "61 * * * *"}, {"cron": "junk"}, {"cron": "*/0 * * * *"},
                                {"cron": "0 3 * * *", "timeZone": "Mars/Base"},
                                {"cron": "0 3 * * *", "startingDeadlineSeconds": 0}, {"timeZone": "UTC"},
                                {"cron": "0 3 * * *", "startWindow": "25:00-01:00"}])

windows = st.fixed_dictionaries(
    {"windows": st.lists(st.one_of(
        st.fixed_dictionaries({"days": st.sampled_from(["Mon-Fri 07:00-20:00", "* 22:00-06:00",
                                                        "sat,sun 00:00-24:00"])}),
        st.fixed_dictionaries({"cron": st.sampled_from(["0 9 * * *", "* * * * * */30"]),
                               "duration": st.sampled_from(["10s", "4h", "1h30m"])})), min_size=1, max_size=3)},
    optional={"timeZone": st.sampled_from(["UTC", "Europe/Berlin"])})
bad_windows = st.sampled_from([{"windows": []}, {"windows": [{"days": "Mon-Fry 07:00-20:00"}]},
                               {"windows": [{"days": "Mon-Fri 7-20"}]}, {"windows": [{"cron": "0 9 * * *"}]},
                               {"windows": [{"cron": "0 9 * * *", "duration": "0s"}]},
                               {"windows": [{"days": "* 01:00-02:00", "cron": "0 9 * * *", "duration": "1h"}]},
                               {"timeZone": "Mars/Base", "windows": [{"days": "* 01:00-02:00"}]}])

# Each kind: a spec of valid values, and for some fields values the apiserver must refuse.
COMMON = {"selector": selector, "concurrency": st.integers(1, 300) | st.just("25%"), "stopped": st.booleans(),
          "workloadRef": workload, "timeoutSeconds": st.integers(1, 3600), "nodeSelector": labels,
          "runWindows": windows, "historyLimit": st.integers(1, 50)}
BAD_COMMON = {"selector": bad_selector, "concurrency": st.sampled_from([0, -1, "0%", "101%", "abc", "5"]),
              "stopped": st.just("yes"), "timeoutSeconds": st.sampled_from([0, -1, 5000]),
              "workloadRef": st.sampled_from([{"kind": "Job", "name": "target"},
                                              {"kind": "Deployment", "name": "Bad_Name"}]),
              "nodeSelector": bad_labels, "runWindows": bad_windows, "historyLimit": st.sampled_from([0, 51])}
VALID = {
    "CacheServer": {"engine": st.sampled_from(["memcached", "redis"]), **COMMON, "clearedAfter": times,
                    "clearSchedule": schedule,
                    "clearWaves": st.fixed_dictionaries({"size": st.integers(1, 10) | st.just("25%"),
                                                         "pauseSeconds": st.integers(1, 600)}),
                    "credentialsSecretRef": secret, "statsIntervalSeconds": st.integers(10, 86400),
                    "port": st.integers(1, 65535)},
    "WebServer": {"engine": st.sampled_from(["nginx", "apache"]), **COMMON,
                  "statusPath": st.sampled_from(["/nginx_status", "/server-status"]), "port": st.integers(1, 65535),
                  "refreshIntervalSeconds": st.integers(5, 86400), "drainTimeoutSeconds": st.integers(0, 3600),
                  "drainOn": st.sampled_from(["activeConnections", "currentUsers"]),
                  "drainOnTimeout": st.sampled_from(["proceed", "abort"]), "drainThreshold": st.integers(0, 100),
                  "userCount": st.fixed_dictionaries({"path": st.just("/stats"), "field": st.just("a.b")})},
    "DatabaseServer": {"engine": st.just("postgresql"), **COMMON, "database": st.just("orders"),
                       "compactedAfter": times, "compactSchedule": schedule, "credentialsSecretRef": secret,
                       "timeoutSeconds": st.integers(1, 86400)},
    "DatabaseMaintenance": {
        "databaseServerRef": st.fixed_dictionaries({"name": st.sampled_from(["db", "missing"])}),
        "operations": st.lists(st.sampled_from([
            {"compact": {}}, {"compact": {"full": True, "tables": ["events"]}},
            {"clearOldData": {"table": "events", "timestampColumn": "created_at", "olderThan": "30d"}}]),
            min_size=1, max_size=3),
        "schedule": st.sampled_from(["0 3 * * *", "*/15 9-17 * * mon-fri", "0 3 * * * 30", "0 0 30 2 *"]),
        "timeZone": st.sampled_from(["UTC", "Europe/Berlin"]), "suspend": st.booleans(), "dryRun": st.booleans(),
        "timeoutSeconds": st.integers(1, 604800)},
}
BAD = {
    "CacheServer": {**BAD_COMMON, "engine": st.just("mongo"), "clearedAfter": bad_times,
                    "clearSchedule": bad_schedule,
                    "clearWaves": st.sampled_from([{"size": 0, "pauseSeconds": 5}, {"size": "0%", "pauseSeconds": 5},
                                                   {"size": 2, "pauseSeconds": 0}, {"size": 2}]),
                    "credentialsSecretRef": st.just({"name": "Bad_Name"}), "statsIntervalSeconds": st.just(0),
                    "port": st.sampled_from([0, 70000])},
    "WebServer": {**BAD_COMMON, "engine": st.just("iis"), "statusPath": st.sampled_from(["no-slash", "/a b"]),
                  "refreshIntervalSeconds": st.just(1), "drainTimeoutSeconds": st.just(-1),
                  "drainOn": st.just("requests"), "drainOnTimeout": st.just("wait"),
                  "userCount": st.sampled_from([{"path": "stats", "field": "a.b"}, {"path": "/s", "field": "a..b"}])},
    "DatabaseServer": {**BAD_COMMON, "engine": st.just("mysql"), "path": st.sampled_from(["rel.db", "/a/../b"]),
                       "database": st.just("x" * 70), "compactedAfter": bad_times, "compactSchedule": bad_schedule,
                       "container": st.just("Bad_C")},
    "DatabaseMaintenance": {
        "databaseServerRef": st.just({"name": "Bad_Name"}),
        "operations": st.sampled_from([[], [{}], [{"compact": {}, "clearOldData": {
            "table": "e", "timestampColumn": "t", "olderThan": "1d"}}], [{"clearOldData": {
                "table": "x; DROP TABLE y", "timestampColumn": "t", "olderThan": "1d"}}], [{"clearOldData": {
                    "table": "e", "timestampColumn": "t", "olderThan": "1y"}}]]),
        "schedule": st.sampled_from(["61 * * * *", "0 3 * * 9", "junk", "*/0 * * * *"]),
        "timeZone": st.just("Mars/Base"), "window": st.just("01:00-05:00"), "timeoutSeconds": st.just(0)},
}


@st.composite
def specs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """Valid values for a random subset of the optional fields; half the time one field made invalid."""
    required = {"CacheServer": ("engine", "selector"), "WebServer": ("engine", "selector"),
                "DatabaseServer": ("engine", "selector"),
                "DatabaseMaintenance": ("databaseServerRef", "operations")}[kind]
    fields = VALID[kind]
    chosen = [f for f in fields if f in required or draw(st.booleans())]
    spec = {f: draw(fields[f]) for f in chosen}
    if kind == "DatabaseMaintenance" and "schedule" not in spec:
        spec.pop("timeZone", None)  # a time zone without a schedule is meaningless but allowed; keep it simple
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(BAD[kind])))
        spec[field] = draw(BAD[kind][field])
        if field == "window":
            spec.pop("schedule", None)  # a window needs a schedule
    return spec


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
    if st_.get("observedGeneration") != gen:
        return None
    reconciling = conds.get("Reconciling", {})
    if reconciling.get("status") == "True":
        # Retrying with backoff (the kstatus table's second row) is a settled state too: nothing changes
        # until the backoff expires, and status says when.
        last = st_.get("lastRequest") or {}
        if reconciling.get("reason") == "RetryingFailedTargets" and (last.get("retryAt") or st_.get("run")):
            return f"Backoff/{last.get('reason')}"
        return None
    if conds.get("Stalled", {}).get("status") == "True":
        reason = conds["Stalled"]["reason"]
        assert reason in STALLED, f"{kind} Stalled with an undocumented reason {reason}: {conds['Stalled']}"
        # Admission must refuse what the operator cannot process: an admitted spec is never InvalidSpec.
        assert reason != "InvalidSpec", f"{kind} admitted, then refused by the operator: {conds['Stalled']}"
        # An exception rolecall did not expect is a bug, never a settled state.
        assert reason != "InternalError", f"{kind} hit a bug in rolecall: {conds['Stalled']}"
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
        client.CoreV1Api(local_bed.api_client).create_namespaced_secret(namespace, {
            "metadata": {"name": "creds"}, "stringData": {"password": "fuzz"}})
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
        for i, spec in enumerate(data.draw(st.lists(specs(kind.kind), min_size=PER_KIND, max_size=PER_KIND),
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
