"""AuthFlow's expiry timers: a far notice waits in the loop's DeadlineWheel instead of a
timer of its own, and still fires when a timer armed at ``start`` would have, with the same
push, audit event and close code; a connection that closes (or refreshes) first leaves nothing
behind.

Loop time is driven by hand (``loop.time`` is replaced), so every instant is exact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from wsguard.codes import CloseCode
from wsguard.core.decisions import Principal
from wsguard.server import authflow
from wsguard.server.authflow import AuthFlow
from wsguard.settings import AuthConfig

WALL = 1_700_000_000.0
LOOP_START = 5_000.25


class Clocks:
    """Wall clock (credential expiries) and loop clock (timers), advanced together."""

    def __init__(self) -> None:
        self.wall = WALL
        self.loop = LOOP_START

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.loop += seconds


class FakeConn:
    def __init__(self, principal: Principal, clocks: Clocks) -> None:
        self.principal = principal
        self.clocks = clocks
        self.events: list[tuple[float, str, Any]] = []

    def _log(self, kind: str, value: Any) -> None:
        self.events.append((round(self.clocks.loop - LOOP_START, 6), kind, value))

    def send_text(self, data: bytes) -> None:
        self._log("send", orjson.loads(data))

    def audit(self, event: str, **fields: Any) -> None:
        self._log("audit", (event, fields))

    def close(self, code: int, reason: str) -> None:
        self._log("close", (code, reason))


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def _run(clocks: Clocks, steps: list[float], body: Any) -> None:
    """Run ``body(flow_factory)`` on a loop whose time is ``clocks.loop``, then advance the
    clocks by each of ``steps``, letting due timers run after each."""
    loop = asyncio.new_event_loop()
    loop.time = lambda: clocks.loop  # type: ignore[method-assign]

    async def main() -> None:
        await body()
        for step in steps:
            clocks.advance(step)
            for _ in range(3):  # due timers, and the ones they arm for now
                await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _flow(clocks: Clocks, expires_in: float) -> tuple[AuthFlow, FakeConn]:
    conn = FakeConn(Principal("alice", "jwt", expires_at=WALL + expires_in), clocks)
    config = AuthConfig(expiring_notice=60.0, expiry_grace=5.0)
    flow = AuthFlow(conn, config, lambda: None, clock=lambda: clocks.wall)  # type: ignore[arg-type]
    return flow, conn


def _lifetime(clocks: Clocks, expires_in: float, steps: list[float]) -> list[Any]:
    flow, conn = _flow(clocks, expires_in)

    async def body() -> None:
        flow.start()

    _run(clocks, steps, body)
    return conn.events


STEPS = [1.0, 3538.0, 0.5, 0.4999, 0.0001, 59.0, 1.0, 4.9999, 0.0001, 10.0]
EXPECTED = [
    (3540.0, "send", {"push": "expiring", "in": 60.0}),
    (3605.0, "audit", ("auth_failed",
                       {"stage": "lifetime", "status": 401, "reason": "expired_on_socket"})),
    (3605.0, "close", (CloseCode.UNAUTHORIZED, "credential expired")),
]  # fmt: skip


@pytest.mark.parametrize("horizon", [0.0, 10.0, 1e9], ids=["wheel", "default", "timer"])
def test_far_notice_fires_at_the_same_instant_whether_wheeled_or_timed(
    clocks: Clocks, monkeypatch: pytest.MonkeyPatch, horizon: float
):
    monkeypatch.setattr(authflow, "_HORIZON", horizon)
    assert _lifetime(clocks, 3600.0, STEPS) == EXPECTED


def test_near_notice_gets_its_own_timer_at_once(clocks: Clocks):
    flow, conn = _flow(clocks, 65.0)

    async def body() -> None:
        flow.start()
        assert flow._timer is not None
        assert flow._bucket is None

    _run(clocks, [4.9999, 0.0001], body)
    assert conn.events == [(5.0, "send", {"push": "expiring", "in": 60.0})]


def test_credential_inside_the_notice_window_is_told_at_once(clocks: Clocks):
    assert _lifetime(clocks, 30.0, [])[0] == (0.0, "send", {"push": "expiring", "in": 30.0})


def test_far_notice_waits_in_the_wheel_not_in_a_loop_timer_of_its_own(clocks: Clocks):
    flow, _ = _flow(clocks, 3600.0)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        flow.start()
        assert flow._timer is None
        assert flow._bucket is not None
        assert flow in flow._bucket
        scheduled = len(loop._scheduled)  # type: ignore[attr-defined]
        # A second connection whose notice falls in the same second shares its loop timer.
        other, _ = _flow(clocks, 3600.2)
        other.start()
        assert len(loop._scheduled) == scheduled  # type: ignore[attr-defined]
        other.cancel()

    _run(clocks, [], body)


def test_closing_before_the_notice_leaves_nothing_to_fire(clocks: Clocks):
    flow, conn = _flow(clocks, 3600.0)

    async def body() -> None:
        flow.start()
        bucket = flow._bucket
        assert bucket is not None
        flow.cancel()
        assert flow._bucket is None
        assert flow not in bucket

    _run(clocks, STEPS, body)
    assert conn.events == []


def test_closing_after_the_wheel_handed_over_cancels_the_timer(clocks: Clocks):
    flow, conn = _flow(clocks, 3600.0)

    async def body() -> None:
        flow.start()

    # The notice falls in the second from loop time 8540.0 (3539.75 in): the wheel fired.
    _run(clocks, [3539.8], body)
    assert flow._bucket is None
    assert flow._timer is not None
    flow.cancel()
    assert flow._timer is None
    assert conn.events == []


def test_rearming_moves_the_notice(clocks: Clocks):
    flow, conn = _flow(clocks, 3600.0)

    async def body() -> None:
        flow.start()
        first = flow._bucket
        assert first is not None
        # A refresh: the new credential expires an hour later.
        conn.principal = Principal("alice", "jwt", expires_at=WALL + 7200.0)
        flow.start()
        assert flow not in first

    _run(clocks, [3600.0, 3539.9999, 0.0001], body)
    assert conn.events == [(7140.0, "send", {"push": "expiring", "in": 60.0})]
