"""The plugin's reading of status (through the API models) and its exit codes, without a cluster."""

from __future__ import annotations

import tomllib
import typing
from typing import Any

import pytest

from harness import REPO
from rolecall.api.kinds import CACHE_SERVER, DATABASE_MAINTENANCE, DATABASE_SERVER, WEB_SERVER
from rolecall.api.v1alpha1.common import RequestOutcome
from rolecall_cli import checks, views
from rolecall_cli.exits import BY_OUTCOME, Exit, ExitCode
from rolecall_cli.main import global_flags_first, main
from rolecall_cli.refs import parse


def _obj(status: dict[str, Any], generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "ns", "generation": generation}, "spec": spec,
            "status": {"observedGeneration": generation, **status}}


def test_every_outcome_the_api_can_record_has_an_exit_code() -> None:
    assert set(typing.get_args(RequestOutcome)) == set(BY_OUTCOME)
    assert BY_OUTCOME["Succeeded"] is ExitCode.OK and BY_OUTCOME["Failed"] == 1 and BY_OUTCOME["Refused"] == 4
    assert BY_OUTCOME["Stalled"] == 5 and BY_OUTCOME["Cancelled"] == 6 and BY_OUTCOME["TimedOut"] == 8


@pytest.mark.parametrize(("text", "kind", "name"), [
    ("cache/sessions", CACHE_SERVER, "sessions"), ("cacheservers.rolecall.dev/a", CACHE_SERVER, "a"),
    ("CacheServer/b", CACHE_SERVER, "b"), ("web/w", WEB_SERVER, "w"), ("dbs/d", DATABASE_SERVER, "d"),
    ("dbm/m", DATABASE_MAINTENANCE, "m"), ("webs", WEB_SERVER, None)])
def test_references_use_the_kinds_names(text: str, kind: Any, name: str | None) -> None:
    ref = parse(text, need_name=name is not None)
    assert (ref.kind, ref.name) == (kind, name)


@pytest.mark.parametrize(("text", "kinds", "says"), [
    ("pods/x", None, "unknown kind 'pods'"), ("cache", None, "name the resource: cache/NAME"),
    ("web/x", (CACHE_SERVER,), "WebServer has no such verb; it applies to cache/NAME")])
def test_a_wrong_reference_is_a_usage_error(text: str, kinds: Any, says: str) -> None:
    with pytest.raises(Exit) as e:
        parse(text, kinds=kinds) if kinds else parse(text)
    assert e.value.code is ExitCode.USAGE and says in e.value.message


def test_usage_errors_exit_2_before_any_cluster_is_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # any API call would fail differently
    assert main(["clear", "web/x"]) == 2
    assert main(["clear", "cache/x", "--timeout", "soon"]) == 2
    assert main(["clear", "cache/x", "--timeout", "5M"]) == 2  # an unknown unit
    assert main(["override", "web/x"]) == 2
    assert main(["override", "web/x", "--keep-running-until", "2020-01-01T00:00:00Z"]) == 2  # passed already
    assert main(["status", "-o", "jsn"]) == 2
    assert main(["no-such-verb"]) == 2


def test_an_apiserver_that_does_not_answer_exits_7(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: ns}}]
current-context: c
""")
    assert main(["status", "--kubeconfig", str(kubeconfig)]) == 7


@pytest.mark.parametrize(("argv", "moved"), [
    (["clear", "cache/x", "-n", "shop"], ["-n", "shop", "clear", "cache/x"]),
    (["status", "--context=prod", "-w"], ["--context=prod", "status", "-w"]),
    (["-nshop", "history", "db/d", "--kubeconfig", "/k"], ["-nshop", "--kubeconfig", "/k", "history", "db/d"]),
    (["cancel", "cache/x", "--", "-n"], ["cancel", "cache/x", "--", "-n"])])
def test_kubectl_flags_are_taken_anywhere_on_the_line(argv: list[str], moved: list[str]) -> None:
    assert global_flags_first(argv) == moved


CLEAR, COMPACT = "rolecall.dev/clear-requested-at", "rolecall.dev/compact-requested-at"
RUN = {"action": "clear", "token": "t1", "acceptedAt": "2026-11-26T10:00:00Z", "targets": 5, "pending": ["a", "b"],
       "failed": ["c"]}


def test_a_token_in_flight_shows_progress_and_named_failures() -> None:
    check = checks.token(CACHE_SERVER, "last_handled_clear_request", CLEAR, "t1")
    assert check(_obj({})).accepted is False  # not yet accepted: nobody has it
    step = check(_obj({"run": RUN, "failedPods": [{"pod": "mc-3", "outcome": "Failed", "message": "refused"}]}))
    assert step.ended is None and step.accepted and (step.done, step.total) == (3, 5)
    assert step.failures == ["mc-3: refused"] and step.note == "1 failed"


@pytest.mark.parametrize(("outcome", "code"), [("Succeeded", 0), ("Failed", 1), ("Refused", 4), ("Stalled", 5),
                                               ("Cancelled", 6), ("TimedOut", 8)])
def test_a_handled_token_ends_with_its_recorded_outcome(outcome: str, code: int) -> None:
    check = checks.token(DATABASE_SERVER, "last_handled_compact_request", COMPACT, "t1")
    last = {"action": "compact", "token": "t1", "outcome": outcome, "reason": "Why", "message": "what happened",
            "targets": 1, "done": 1}
    step = check(_obj({"lastHandledCompactRequest": "t1", "lastRequest": last}))
    assert step.ended is not None and step.ended.code == code
    assert step.ended.message.startswith(f"{outcome} (Why): what happened")
    if outcome == "Failed":
        assert "keeps retrying" in step.ended.message


def test_a_token_handled_then_followed_by_another_takes_its_outcome_from_history() -> None:
    check = checks.token(CACHE_SERVER, "last_handled_clear_request", CLEAR, "t1")
    last = {"action": "clear", "token": "t2", "outcome": "Succeeded", "reason": "Cleared"}
    history = [{"action": "clear", "trigger": "Annotation", "token": "t2", "outcome": "Succeeded"},
               {"action": "clear", "trigger": "Annotation", "token": "t1", "outcome": "Failed"}]
    step = check(_obj({"lastHandledClearRequest": "t1", "lastRequest": last, "history": history}))
    assert step.ended is not None and step.ended.code is ExitCode.TARGETS_FAILED and "t1 ended Failed" in \
        step.ended.message


def test_a_token_overwritten_before_it_was_taken_follows_the_newer_one() -> None:
    check = checks.token(CACHE_SERVER, "last_handled_clear_request", CLEAR, "t1")
    newer = _obj({})
    newer["metadata"]["annotations"] = {CLEAR: "t2"}  # someone asked again: the operator acts on t2 only
    assert check(newer).ended is None
    last = {"action": "clear", "token": "t2", "outcome": "Succeeded", "reason": "Cleared", "message": "Cleared 2 of 2"}
    done = _obj({"lastHandledClearRequest": "t2", "lastRequest": last})
    done["metadata"]["annotations"] = {CLEAR: "t2"}
    ended = check(done).ended
    assert ended is not None and ended.code is ExitCode.OK
    assert ended.message.startswith("superseded by a newer request (t2), which covers it: Succeeded"), ended.message


def test_a_stop_waits_for_its_generation_and_a_stall_ends_it() -> None:
    check = checks.settled(CACHE_SERVER, 2, "Stopped")
    behind = _obj({"phase": "Stopped"}, generation=2)
    behind["status"]["observedGeneration"] = 1
    assert check(behind).ended is None  # the phase is from before the request
    done = check(_obj({"phase": "Stopped", "rememberedReplicas": 3}, generation=2))
    assert done.ended is not None and done.ended.code is ExitCode.OK and "3 replicas remembered" in done.ended.message
    stalled = _obj({"phase": "Stalled", "conditions": [{"type": "Stalled", "status": "True", "reason":
                                                        "ReplicasFought", "message": "argocd put 3 back"}]}, 2)
    ended = check(stalled).ended
    assert ended is not None and ended.code is ExitCode.STALLED and "ReplicasFought" in ended.message


def test_a_start_held_stopped_by_a_window_ends_at_once_with_5() -> None:
    check = checks.settled(WEB_SERVER, 3, "Running")
    held = _obj({"phase": "Stopped", "runState": {"desired": "Stopped", "decidedBy": "Window",
                                                  "reason": "outside every run window until 07:00"}}, generation=3)
    ended = check(held).ended
    assert ended is not None and ended.code is ExitCode.STALLED
    assert "held stopped by Window: outside every run window" in ended.message and "--keep-running-until" in \
        ended.message
    degraded = _obj({"phase": "Degraded", "replicas": 2, "readyReplicas": 2, "conditions": [
        {"type": "Degraded", "status": "True", "reason": "StatusPageUnavailable", "message": "web-1"}]}, 3)
    ended = check(degraded).ended
    assert ended is not None and ended.code is ExitCode.OK and "Degraded (StatusPageUnavailable)" in ended.message


def test_a_cancel_ends_when_no_run_carries_its_key() -> None:
    check = checks.cancelled(CACHE_SERVER, "t1")
    assert check(_obj({"run": RUN})).ended is None
    last = {"action": "clear", "token": "t1", "outcome": "Cancelled", "reason": "Cancelled", "done": 1,
            "notStarted": 4}
    ended = check(_obj({"lastRequest": last})).ended
    assert ended is not None and ended.code is ExitCode.OK
    assert ended.message == "cancelled: 1 pods done, 4 never started"
    assert checks.run_key(CACHE_SERVER, _obj({"run": {**RUN, "token": None, "clearedAfter": "2026-11-26T09:00:00Z"}})) \
        == "2026-11-26T09:00:00Z"


def test_a_maintenance_run_ends_by_phase() -> None:
    check = checks.maintenance_run(dry_run=False)
    running = {"phase": "Running", "operations": [{"type": "clearOldData", "matchedAtStart": 30, "rowsDeleted": 7}]}
    step = check(_obj(running))
    assert step.ended is None and (step.done, step.total) == (7, 30)
    failed = {"phase": "Failed", "conditions": [  # as first written: Stalled comes with the next write
        {"type": "Failed", "status": "True", "reason": "OperationFailed", "message": "relation does not exist"}]}
    ended = check(_obj(failed)).ended  # a one-shot run is not retried: stalled
    assert ended is not None and ended.code is ExitCode.STALLED and "relation does not exist" in ended.message
    refused = {"phase": "Failed", "conditions": [
        {"type": "Failed", "status": "True", "reason": "RequesterNotAllowed", "message": "alice may not"}]}
    ended = check(_obj(refused)).ended
    assert ended is not None and ended.code is ExitCode.REFUSED
    timed_out = {"phase": "Failed", "conditions": [
        {"type": "Failed", "status": "True", "reason": "TimedOut", "message": "timeoutSeconds ran out at ..."}]}
    ended = check(_obj(timed_out)).ended  # the run's own time limit, not a stall and not --timeout
    assert ended is not None and ended.code is ExitCode.REQUEST_TIMED_OUT == 8
    # A dry run that succeeded is not the end of a real run (purge asks, then turns dryRun off).
    assert check(_obj({"phase": "Succeeded", "dryRun": True})).ended is None


def test_the_status_row_says_what_is_in_flight_and_not_fine() -> None:
    row = views.row(CACHE_SERVER, _obj({"phase": "Clearing", "targets": 5, "run": RUN, "conditions": [
        {"type": "Degraded", "status": "True", "reason": "PodsFailed", "message": "mc-3"}]}), with_namespace=True)
    assert row[0] == "ns/cache/x" and row[1] == "Clearing" and row[6] == "clear 3/5"
    assert row[-1] == "Degraded: PodsFailed"
    unobserved = _obj({"phase": "Running"}, generation=3)
    unobserved["status"]["observedGeneration"] = 2
    assert views.row(CACHE_SERVER, unobserved, False)[1] == "Running (not yet observed)"


def test_the_plugin_distribution_pins_what_the_operator_pins() -> None:
    plugin = tomllib.loads((REPO / "plugin" / "pyproject.toml").read_text())
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    tz = [d for d in root["project"]["dependencies"] if d.startswith("tzdata")]
    assert tz and tz[0] in plugin["project"]["dependencies"]
    heavy = ("kopf", "psycopg", "redis", "pymemcache", "httpx", "prometheus")
    assert not [d for d in plugin["project"]["dependencies"] if d.startswith(heavy)]
    assert (REPO / "plugin" / "src" / "rolecall" / "api" / "kinds.py").resolve() == \
        (REPO / "operator" / "rolecall" / "api" / "kinds.py").resolve()


def test_an_error_in_the_plugin_itself_has_its_own_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolecall_cli import main as cli

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", broken)
    assert cli.main(["status"]) == ExitCode.INTERNAL == 9  # not 1 (targets failed), not 7 (the API)
    assert len({int(c) for c in ExitCode}) == len(ExitCode)  # each code means one thing
