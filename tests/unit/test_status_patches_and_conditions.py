"""Status writes carry only what changed, and conditions keep their transition time unless they flip."""

from __future__ import annotations

from rolecall.runs.status import merge_patch, set_condition


def test_merge_patch_is_empty_when_nothing_changed() -> None:
    s = {"phase": "Running", "stats": {"items": 3}, "conditions": [{"type": "Ready"}]}
    assert merge_patch(s, dict(s)) == {}


def test_merge_patch_removes_with_null_and_replaces_lists_whole() -> None:
    old = {"phase": "Clearing", "run": {"pending": ["a", "b"], "token": "t"}, "done": 1}
    new = {"phase": "Running", "done": 2, "lastHandledClearRequest": "t"}
    assert merge_patch(old, new) == {"phase": "Running", "run": None, "done": 2, "lastHandledClearRequest": "t"}
    assert merge_patch({"run": {"pending": ["a", "b"]}}, {"run": {"pending": ["b"]}}) == {"run": {"pending": ["b"]}}


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    first = set_condition(None, "Cleared", "False", "ClearRequested", "Clearing 3 pods.")
    since = first[0].last_transition_time
    same = set_condition(first, "Cleared", "False", "ClearRequested", "Clearing 3 pods (2 done).")
    assert same[0].last_transition_time == since and same[0].message.endswith("(2 done).")
    other = set_condition(same, "Ready", "True", "Running", "ok")
    assert [c.type for c in other] == ["Ready", "Cleared"]  # a stable order people can scan
