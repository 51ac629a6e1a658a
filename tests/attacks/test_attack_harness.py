"""The harness itself: the legitimate paths work, so that every refusal in this suite is the
server's decision and not a broken request."""

from __future__ import annotations

import pytest

from support.attack import AttackTarget, canary, open_session, request, respond

pytestmark = pytest.mark.integration


async def test_base_handshake_with_a_ticket_is_accepted(target: AttackTarget) -> None:
    session = await open_session(target, "alice")
    reply = await session.call("subscribe", channel="user:alice")
    assert reply["ok"] is True, reply


async def test_base_handshake_without_credential_is_pending(target: AttackTarget) -> None:
    session = await open_session(target, None)
    reply = await session.call("auth", token=target.jwt("bob"))
    assert reply["ok"] is True, reply


async def test_canary_round_trips(target: AttackTarget) -> None:
    async with canary(target) as report:
        response = await respond(target, request(origin="https://evil.example"))
        assert response.status == 403
    assert len(report.round_trips) >= 4
