"""Fan-out: never more than the limit at once, retries with backoff, every target gets one outcome."""

from __future__ import annotations

import asyncio

import pytest

from rolecall.runs import fanout


@pytest.mark.parametrize(("concurrency", "targets", "limit"),
                         [(10, 200, 10), ("25%", 200, 50), ("1%", 5, 1), ("100%", 7, 7), (3, 0, 3)])
def test_limit_of_numbers_and_percentages(concurrency: int | str, targets: int, limit: int) -> None:
    assert fanout.limit_of(concurrency, targets) == limit


def test_fan_out_respects_the_limit_and_reports_every_target_once() -> None:
    running = peak = 0
    calls: dict[int, int] = {}

    async def act(t: int) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        calls[t] = calls.get(t, 0) + 1
        await asyncio.sleep(0.001)
        running -= 1
        if t == 3 and calls[t] < 2:
            raise ConnectionError("flaky once")
        if t == 5:
            raise RuntimeError("always fails")
        if t == 7:
            raise fanout.Skip("replica")
        if t == 9:
            raise fanout.Permanent("hostNetwork")
        return "ok"

    outcomes: list[fanout.Outcome[int]] = []

    async def record(o: fanout.Outcome[int]) -> None:
        outcomes.append(o)

    asyncio.run(fanout.fan_out(list(range(20)), act, 4, record, attempts=3, backoff=0.001))
    by = {o.target: o for o in outcomes}
    assert len(outcomes) == 20 and peak <= 4
    assert by[3].status == "Done" and by[3].attempts == 2
    assert by[5].status == "Failed" and by[5].attempts == 3 and by[5].message == "always fails"
    assert by[7].status == "Skipped" and calls[7] == 1
    assert by[9].status == "Failed" and by[9].permanent and calls[9] == 1
