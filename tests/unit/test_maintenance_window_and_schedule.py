"""When a scheduled maintenance may start: the window (HH:MM-HH:MM, may wrap midnight)."""

from __future__ import annotations

import datetime as dt

import pytest

from rolecall.runs.calendar import window_opens

T = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("window", "at", "opens"), [
    (None, "12:00", None),
    ("01:00-05:00", "03:00", None),
    ("01:00-05:00", "05:00", "2026-11-26T01:00"),  # the end is exclusive: next opening is tomorrow
    ("01:00-05:00", "00:30", "2026-11-25T01:00"),
    ("22:00-02:00", "23:30", None),  # wraps midnight
    ("22:00-02:00", "01:59", None),
    ("22:00-02:00", "12:00", "2026-11-25T22:00"),
])
def test_window(window: str | None, at: str, opens: str | None) -> None:
    t = T.replace(hour=int(at[:2]), minute=int(at[3:]))
    got = window_opens(window, t)
    assert (got.strftime("%Y-%m-%dT%H:%M") if got else None) == opens
