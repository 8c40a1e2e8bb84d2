"""A DatabaseMaintenance's schedule goes through the same trigger code as every kind's (runs/triggers.py): slots
that fell while it was suspended are skipped (counted missed), not run when it is resumed; slots missed while
the operator was away run once, the latest."""

from __future__ import annotations

import datetime as dt

from test_maintenance_status_reads_the_previous_build import _maintenance
from test_request_core_with_a_fake_clock import FakeClock

from rolecall.roles import maintenance
from rolecall.runs import triggers

EVERY_10S = "* * * * * */10"


def test_slots_that_fell_while_suspended_are_skipped_when_it_is_resumed() -> None:
    clock = FakeClock()
    status: dict[str, object] = {}
    m = _maintenance(status, schedule=EVERY_10S, suspend=True)
    m.clock = clock
    assert triggers.schedule_due(m, maintenance.RUN) is None  # first seen: earlier slots never run
    clock.advance(25)  # the :30, :40 and :50 slots pass while suspended
    assert triggers.schedule_due(m, maintenance.RUN) is None
    resumed = _maintenance({}, schedule=EVERY_10S)
    resumed.out.status, resumed.clock = m.status, clock
    assert triggers.schedule_due(resumed, maintenance.RUN) is None  # not the latest suspended slot
    (entry,) = m.status.schedules or []
    resumed_entry = triggers.schedule_status(resumed, maintenance.RUN)
    assert entry.missed == 3 and resumed_entry is not None and not resumed_entry.suspended
    clock.advance(10)  # the next slot after the resume is due
    slot = triggers.schedule_due(resumed, maintenance.RUN)
    assert slot is not None and dt.datetime.fromisoformat(slot).second % 10 == 0


def test_slots_missed_while_the_operator_was_away_run_once() -> None:
    clock = FakeClock()
    m = _maintenance({}, schedule=EVERY_10S)
    m.clock = clock
    assert triggers.schedule_due(m, maintenance.RUN) is None
    clock.advance(45)  # five slots pass with no reconcile: :30 to :10
    slot = triggers.schedule_due(m, maintenance.RUN)
    assert slot is not None and (m.status.schedules or [])[0].missed == 0  # counted when the slot is handled
    triggers.schedule_handled(m, maintenance.RUN, slot)
    assert (m.status.schedules or [])[0].missed == 4 and triggers.schedule_due(m, maintenance.RUN) is None
