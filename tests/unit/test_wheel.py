"""DeadlineWheel: deadlines held per second of loop time, each handed to its owner at the start
of its second with its exact time, on a loop whose clock is driven by hand."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest

from wsguard.server.wheel import DeadlineWheel, wheel_for

START = 100.25


class Owner:
    """Records what the wheel hands it, and the loop time it was handed over at."""

    def __init__(self, log: list[tuple[str, float, float, Any]], name: str, clock: list[float]):
        self.log, self.name, self.clock = log, name, clock

    def wheel_due(self, when: float, payload: Any) -> None:
        self.log.append((self.name, self.clock[0], when, payload))


class Failing(Owner):
    def wheel_due(self, when: float, payload: Any) -> None:
        raise RuntimeError("owner bug")


def drive(body: Any, steps: list[float]) -> list[float]:
    """Run ``body(loop, clock)`` on a loop whose time is ``clock[0]``, then advance the clock
    by each step, letting due timers run after each."""
    clock = [START]
    loop = asyncio.new_event_loop()
    loop.time = lambda: clock[0]  # type: ignore[method-assign]

    async def main() -> None:
        body(loop, clock)
        for step in steps:
            clock[0] += step
            for _ in range(3):
                await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return clock


def test_owners_are_handed_their_exact_time_at_the_start_of_its_second():
    log: list[tuple[str, float, float, Any]] = []

    def body(loop: asyncio.AbstractEventLoop, clock: list[float]) -> None:
        wheel = DeadlineWheel(loop)
        wheel.add(Owner(log, "a", clock), 105.5, "x")
        wheel.add(Owner(log, "b", clock), 105.75)
        wheel.add(Owner(log, "c", clock), 107.0, 3)

    drive(body, [4.7, 0.05, 1.0, 1.0])
    # 104.95: nothing; 105.0: a and b (their second); 107.0: c.
    assert log == [("a", 105.0, 105.5, "x"), ("b", 105.0, 105.75, None), ("c", 107.0, 107.0, 3)]


def test_one_loop_timer_per_second_whatever_the_number_of_deadlines():
    def body(loop: asyncio.AbstractEventLoop, clock: list[float]) -> None:
        wheel = DeadlineWheel(loop)
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        for n in range(50):
            wheel.add(Owner([], str(n), clock), 110.0 + n / 100)
        assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
        wheel.add(Owner([], "next", clock), 111.0)
        assert len(loop._scheduled) == before + 2  # type: ignore[attr-defined]

    drive(body, [])


def test_a_popped_owner_is_not_handed_anything():
    log: list[tuple[str, float, float, Any]] = []

    def body(loop: asyncio.AbstractEventLoop, clock: list[float]) -> None:
        wheel = DeadlineWheel(loop)
        gone = Owner(log, "gone", clock)
        bucket = wheel.add(gone, 102.5)
        wheel.add(Owner(log, "kept", clock), 102.5)
        bucket.pop(gone)

    drive(body, [2.0])
    assert log == [("kept", 102.25, 102.5, None)]


def test_a_failing_owner_does_not_drop_the_rest_of_its_second(caplog: pytest.LogCaptureFixture):
    log: list[tuple[str, float, float, Any]] = []

    def body(loop: asyncio.AbstractEventLoop, clock: list[float]) -> None:
        wheel = DeadlineWheel(loop)
        wheel.add(Owner(log, "first", clock), 103.1)
        wheel.add(Failing(log, "bug", clock), 103.2)
        wheel.add(Owner(log, "last", clock), 103.3)

    with caplog.at_level(logging.ERROR, logger="wsguard.server"):
        drive(body, [3.0])
    assert [entry[0] for entry in log] == ["first", "last"]
    assert [r.getMessage() for r in caplog.records] == ["arming a deadline failed"]


def test_a_wheel_does_not_keep_its_loop_alive():
    loop = asyncio.new_event_loop()
    wheel = wheel_for(loop)
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None
    assert wheel._loop() is None


def test_each_loop_has_its_own_wheel():
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert wheel_for(first) is wheel_for(first)
        assert wheel_for(first) is not wheel_for(second)
        assert wheel_for(second)._loop() is second
    finally:
        first.close()
        second.close()
