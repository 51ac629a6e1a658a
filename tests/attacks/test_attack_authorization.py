"""AUTHZ: authorization attacks against a real ``wsguard serve`` (catalog group AUTHZ).

A connection is not a licence: the server must check every action (subscribe, publish,
history, presence, rpc) against the channel rules with the identity of the credential, never
with an identity a message claims; refuse with the exact reply code and reason
(docs/reference/codes.md), deliver nothing a refused action would have delivered, count the
refusals towards ``max_violations`` (close 4408), and end access when it ends: a revocation or
a logout closes every socket of the user (4403 / the code asked for), a revocation also refuses
the user's older credentials (403 ``revoked``), and a refresh that drops a grant drops the
subscription.

Cases (a ``-suffix`` is one variant of the attack):

- AUTHZ-01 another user's ``owner`` channel (``user:bob``, case and suffix variants) → 403
- AUTHZ-02 another tenant's ``claim`` channel: subscribe, history, publish → 403, nothing delivered
- AUTHZ-03 ``role:admin`` channel without the role: subscribe, publish → 403, nothing delivered
- AUTHZ-04 per-action grants: publish on a subscribe-only channel (not delivered), history and
  presence no rule grants, an rpc method that does not exist (404 ``unknown_method``)
- AUTHZ-05 revocation: every live socket closes 4403, older ticket and JWT refused 403
  ``revoked``, bystander untouched
- AUTHZ-06 logout: ``/api/disconnect`` closes every socket of the user with the given code
- AUTHZ-07 forged identity in messages: ``user`` at top level (400 ``unknown_field``) or in
  ``data`` (422 ``invalid_data``); deliveries never carry a claimed identity
- AUTHZ-08 subscribe/unsubscribe churn and disconnects mid-subscription (CVE-2020-36406 class),
  with the canary: no crash, no leaked subscription
- AUTHZ-09 hostile channel names (wildcard, traversal, unicode, 256 chars) → 400 ``bad_channel``
- AUTHZ-10 a refresh that removes a claim drops the subscription (``unsubscribed`` push)
- AUTHZ-11 five forbidden subscribes within the window → five replies, then close 4408
- AUTHZ-12 ``limits.max_channels_per_connection`` → 429 ``too_many_channels``
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.attack import (
    AttackTarget,
    Session,
    canary,
    error_reason,
    expect_audit,
    open_session,
    request,
    respond,
    serve,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def few_channels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """AUTHZ-12's server: max_channels_per_connection lowered from 128 to 3 so that reaching
    the cap takes 4 messages instead of 129 (which the 20/s message rate would stretch to
    ~5 s); nothing else is relaxed."""
    with serve(
        tmp_path_factory.mktemp("authz-few-channels"),
        overrides=["limits.max_channels_per_connection=3"],
    ) as server:
        yield server
        assert server.alive()
        assert "Traceback" not in server.log()


# -- helpers ------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def observer(target: AttackTarget, user: str, channel: str) -> Session:
    """A session of ``user`` subscribed to ``channel``: the would-be victim of a leak."""
    session = await open_session(target, user)
    reply = await session.call("subscribe", channel=channel)
    assert reply["ok"] is True, reply
    return session


async def refused_call(
    target: AttackTarget, session: Session, op: str, code: int, reason: str, **fields: Any
) -> dict[str, Any]:
    """``op`` must get the error ``(code, reason)``, also logged as the audit reason."""
    since = target.log_size()
    reply = await session.call(op, **fields)
    assert error_reason(reply) == (code, reason)
    await expect_audit(target, since, reason)
    return reply


async def api_ok(target: AttackTarget, path: str, body: Any) -> Any:
    status, answer = await target.api("POST", path, body)
    assert status == 200, answer
    return answer["result"]


async def subscribers(target: AttackTarget, channel: str) -> int:
    status, answer = await target.api("GET", "/api/channels")
    assert status == 200, answer
    counts = {item["channel"]: item["subscribers"] for item in answer["result"]["channels"]}
    return counts.get(channel, 0)


# -- AUTHZ-01..04: per-action grants -----------------------------------------------------------


async def test_authz_01_own_user_channel_is_granted(target: AttackTarget) -> None:
    """AUTHZ-01 (control): alice may subscribe to her own ``user:alice``."""
    session = await open_session(target, "alice")
    reply = await session.call("subscribe", channel="user:alice")
    assert reply["ok"] is True, reply


@pytest.mark.parametrize(
    "channel",
    ["user:bob", "user:ALICE", "user:alice2", "user:admin"],
    ids=["AUTHZ-01-other-user", "AUTHZ-01-case", "AUTHZ-01-prefix", "AUTHZ-01-admin"],
)
async def test_authz_01_other_users_channel_is_forbidden(
    target: AttackTarget, channel: str
) -> None:
    """AUTHZ-01: alice subscribes to another user's ``owner`` channel → 403 forbidden, and a
    publication there never reaches her (IDOR over pub/sub)."""
    session = await open_session(target, "alice")
    await refused_call(target, session, "subscribe", 403, "forbidden", channel=channel)
    await target.publish(channel, {"secret": "for the owner only"})
    assert await session.quiet(0.3) == []


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        pytest.param("subscribe", {}, id="AUTHZ-02-subscribe"),
        pytest.param("history", {}, id="AUTHZ-02-history"),
        pytest.param("publish", {"data": {"forged": True}}, id="AUTHZ-02-publish"),
    ],
)
async def test_authz_02_other_tenant_is_forbidden(
    target: AttackTarget, op: str, fields: dict[str, Any]
) -> None:
    """AUTHZ-02: alice's claim lists ``tenant:a`` only; any action on ``tenant:b`` → 403, and
    bob, subscribed to ``tenant:b``, receives nothing."""
    bob = await observer(target, "bob", "tenant:b")
    alice = await open_session(target, "alice")
    await refused_call(target, alice, op, 403, "forbidden", channel="tenant:b", **fields)
    assert await bob.quiet(0.5) == []
    reply = await alice.call("subscribe", channel="tenant:a")
    assert reply["ok"] is True, reply


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        pytest.param("subscribe", {}, id="AUTHZ-03-subscribe"),
        pytest.param("publish", {"data": {"alert": "fake"}}, id="AUTHZ-03-publish"),
    ],
)
async def test_authz_03_admin_channel_without_role(
    target: AttackTarget, op: str, fields: dict[str, Any]
) -> None:
    """AUTHZ-03: a user without ``role:admin`` on ``admin:alerts`` → 403; the admin,
    subscribed there, receives nothing."""
    admin = await observer(target, "admin", "admin:alerts")
    alice = await open_session(target, "alice")
    await refused_call(target, alice, op, 403, "forbidden", channel="admin:alerts", **fields)
    assert await admin.quiet(0.5) == []


async def test_authz_04_publish_on_subscribe_only_channel(target: AttackTarget) -> None:
    """AUTHZ-04: ``ticker:*`` grants subscribe only: a publish → 403 and no subscriber (the
    publisher included) receives anything."""
    channel = unique("ticker:x")
    bob = await observer(target, "bob", channel)
    alice = await observer(target, "alice", channel)
    await refused_call(target, alice, "publish", 403, "forbidden", channel=channel, data={"px": 0})
    assert await bob.quiet(0.5) == []
    assert await alice.quiet(0.05) == []


@pytest.mark.parametrize(
    ("op", "fields", "code", "reason"),
    [
        pytest.param("presence", {"channel": "tenant:a"}, 403, "forbidden", id="AUTHZ-04-presence"),
        pytest.param("history", {"channel": "ticker:x"}, 403, "forbidden", id="AUTHZ-04-history"),
        pytest.param(
            "rpc", {"method": "admin.delete_user", "data": {"user": "bob"}}, 404, "unknown_method",
            id="AUTHZ-04-rpc",
        ),
    ],
)  # fmt: skip
async def test_authz_04_action_no_rule_grants(
    target: AttackTarget, op: str, fields: dict[str, Any], code: int, reason: str
) -> None:
    """AUTHZ-04: an action the rule grants to nobody (presence on ``tenant:*``, history on
    ``ticker:*``) or a method that does not exist is refused, per message."""
    alice = await open_session(target, "alice")
    await refused_call(target, alice, op, code, reason, **fields)


# -- AUTHZ-05, 06: revocation and logout ------------------------------------------------------


async def test_authz_05_revocation_closes_sockets_and_refuses_older_credentials(
    target: AttackTarget,
) -> None:
    """AUTHZ-05: ``POST /api/revoke`` closes both live sockets of the user with 4403, refuses
    a ticket and a JWT issued before it (403 revoked), and leaves bob connected.

    The user is a fresh id, not alice: the revocation lasts ``auth.revocation_ttl`` on the
    shared server and would refuse other cases' alice credentials minted in the same second.
    """
    user = unique("revokee")
    first = await open_session(target, user)
    second = await open_session(target, user)
    bob = await open_session(target, "bob")
    old_ticket = target.ticket(user)
    old_token = target.jwt(user)
    assert await api_ok(target, "/api/revoke", {"user": user}) == {"closed": 2}
    assert await first.closed_with(3.0) == 4403
    assert await second.closed_with(3.0) == 4403
    since = target.log_size()
    response = await respond(target, request(query=f"ticket={old_ticket}"))
    assert response.status == 403, response.raw
    response = await respond(target, request(headers=[("Authorization", f"Bearer {old_token}")]))
    assert response.status == 403, response.raw
    await expect_audit(target, since, "revoked")
    assert target.audit_reasons(since).count("revoked") >= 2
    assert (await bob.call("ping"))["ok"] is True
    # Control: credentials issued after the revocation are accepted (docs: "issued before").
    await asyncio.sleep(0.01)
    fresh = await open_session(target, user)
    assert (await fresh.call("ping"))["ok"] is True


async def test_authz_05_revoked_first_message_auth_closes_4403(target: AttackTarget) -> None:
    """AUTHZ-05: a revoked user's older ticket in a first ``auth`` message → 403 forbidden,
    close 4403."""
    user = unique("revokee")
    old_ticket = target.ticket(user)
    assert await api_ok(target, "/api/revoke", {"user": user}) == {"closed": 0}
    session = await open_session(target, None)
    reply = await session.call("auth", ticket=old_ticket)
    assert error_reason(reply) == (403, "forbidden")
    assert await session.closed_with(3.0) == 4403


async def test_authz_06_logout_disconnects_every_socket(target: AttackTarget) -> None:
    """AUTHZ-06: ``POST /api/disconnect {"user", "code": 4403}`` closes every socket of that
    user (two, from two addresses) with 4403; bob's socket stays."""
    user = unique("leaver")
    sockets = [await open_session(target, user) for _ in range(2)]
    bob = await open_session(target, "bob")
    result = await api_ok(target, "/api/disconnect", {"user": user, "code": 4403})
    assert result == {"closed": 2}
    for session in sockets:
        assert await session.closed_with(3.0) == 4403
    assert (await bob.call("ping"))["ok"] is True


# -- AUTHZ-07: identity comes from the credential ---------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        pytest.param({"op": "publish", "data": {"text": "hi"}, "user": "bob"}, 400, "unknown_field",
                     id="AUTHZ-07-top-level-user"),
        pytest.param({"op": "publish", "data": {"text": "hi"}, "sub": "bob"}, 400, "unknown_field",
                     id="AUTHZ-07-top-level-sub"),
        pytest.param({"op": "publish", "data": {"text": "hi", "user": "bob"}}, 422, "invalid_data",
                     id="AUTHZ-07-data-user"),
        pytest.param({"op": "publish", "data": {"text": "hi", "from": "admin"}}, 422,
                     "invalid_data", id="AUTHZ-07-data-from"),
    ],
)  # fmt: skip
async def test_authz_07_forged_identity_is_refused(
    target: AttackTarget, message: dict[str, Any], code: int, reason: str
) -> None:
    """AUTHZ-07: a publish claiming another identity is refused and delivered to nobody."""
    channel = unique("chat:authz07")
    bob = await observer(target, "bob", channel)
    alice = await open_session(target, "alice")
    await alice.send_json({"id": 1, **message, "channel": channel})
    assert error_reason(await alice.reply(1)) == (code, reason)
    assert await bob.quiet(0.5) == []


async def test_authz_07_deliveries_carry_no_claimed_identity(target: AttackTarget) -> None:
    """AUTHZ-07: what a subscriber receives is exactly channel, position and data: no
    identity a publisher could have forged, and the data as published."""
    channel = unique("chat:authz07")
    bob = await observer(target, "bob", channel)
    alice = await open_session(target, "alice")
    reply = await alice.call("publish", channel=channel, data={"text": "I am bob"})
    assert reply["ok"] is True, reply
    push = await bob.push("message", timeout=2.0)
    assert set(push) == {"push", "channel", "epoch", "offset", "data"}, push
    assert push["data"] == {"text": "I am bob"}
    assert push["channel"] == channel


# -- AUTHZ-08: churn --------------------------------------------------------------------------


async def test_authz_08_subscription_churn_and_abrupt_disconnects(target: AttackTarget) -> None:
    """AUTHZ-08: 60 subscribe/unsubscribe ops paced under the rate limit, then 20 sockets
    that drop TCP right after a subscribe (uWebSockets CVE-2020-36406: crash in
    ``unsubscribeAll`` during such churn). The canary stays healthy, the server lives, and no
    subscription of a dead socket is left behind."""
    channel = unique("chat:churn")
    async with canary(target):
        session = await open_session(target, unique("churner"))
        for index in range(30):
            name = f"{channel}-{index % 3}"
            reply = await session.call("subscribe", channel=name)
            assert reply["ok"] is True, (index, reply)
            reply = await session.call("unsubscribe", channel=name)
            assert reply["ok"] is True, (index, reply)
            # 20/s with a burst of 40: 60 ops need at least (60 - 40) / 20 = 1 s; take 1.5 s.
            await asyncio.sleep(0.05)
        doomed = []
        for _ in range(20):
            victim = await open_session(target, unique("dropper"))
            assert (await victim.call("subscribe", channel=channel))["ok"] is True
            await victim.send_json({"id": 99, "op": "subscribe", "channel": f"{channel}-late"})
            doomed.append(victim)
        for victim in doomed:
            victim.raw.writer.transport.abort()  # RST mid-subscription, no close frame
        watcher = await observer(target, "bob", channel)
        deadline = time.monotonic() + 3.0
        while await subscribers(target, channel) != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await subscribers(target, channel) == 1
        assert await subscribers(target, f"{channel}-late") == 0
        await target.publish(channel, {"text": "still here"})
        push = await watcher.push("message", timeout=2.0)
        assert push["data"] == {"text": "still here"}
    assert target.alive()


# -- AUTHZ-09: channel names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        pytest.param("user:*", id="AUTHZ-09-wildcard"),
        pytest.param("*:bob", id="AUTHZ-09-wildcard-namespace"),
        pytest.param("user:../bob", id="AUTHZ-09-traversal"),
        pytest.param("user:alice/../bob", id="AUTHZ-09-traversal-inner"),
        pytest.param("chat:ü", id="AUTHZ-09-unicode"),
        pytest.param("user:b\u043eb", id="AUTHZ-09-homoglyph"),
        pytest.param("user:bob\x00", id="AUTHZ-09-nul"),
        pytest.param("user:bob%00", id="AUTHZ-09-percent"),
        pytest.param("user:bob:", id="AUTHZ-09-empty-segment"),
        pytest.param("chat:" + "a" * 251, id="AUTHZ-09-256-chars"),
    ],
)
async def test_authz_09_hostile_channel_name(target: AttackTarget, channel: str) -> None:
    """AUTHZ-09: wildcards, traversal, non-ASCII look-alikes and over-long names are not
    channel names → 400 bad_channel; nothing is subscribed (bob's channel stays private)."""
    session = await open_session(target, "alice")
    await refused_call(target, session, "subscribe", 400, "bad_channel", channel=channel)
    await target.publish("user:bob", {"secret": "bob only"})
    assert await session.quiet(0.2) == []


# -- AUTHZ-10: refresh narrows the grants -----------------------------------------------------


async def test_authz_10_refresh_that_drops_a_claim_drops_the_subscription(
    target: AttackTarget,
) -> None:
    """AUTHZ-10: alice's refreshed JWT no longer lists ``tenant:a``: the server pushes
    ``unsubscribed`` (forbidden), delivers no more of ``tenant:a``, and refuses a resubscribe."""
    channel = "tenant:a"
    session = await open_session(
        target, None, headers=[("Authorization", f"Bearer {target.jwt()}")]
    )
    await session.push("welcome")
    assert (await session.call("subscribe", channel=channel))["ok"] is True
    reply = await session.call("refresh", token=target.jwt("alice", channels=[]))
    assert reply["ok"] is True, reply
    dropped = await session.push("unsubscribed", timeout=2.0)
    assert dropped == {"push": "unsubscribed", "channel": channel, "reason": "forbidden"}
    await target.publish(channel, {"after": "refresh"})
    assert await session.quiet(0.3) == []
    await refused_call(target, session, "subscribe", 403, "forbidden", channel=channel)


# -- AUTHZ-11, 12: probing and subscription limits --------------------------------------------


async def test_authz_11_forbidden_probing_closes_4408(target: AttackTarget) -> None:
    """AUTHZ-11: five forbidden subscribes within the violation window: each gets its 403
    reply, the fifth one too, then the connection closes with 4408."""
    session = await open_session(target, "alice")
    probes = ["user:bob", "user:admin", "tenant:b", "admin:alerts", "user:carol"]
    for channel in probes:
        await refused_call(target, session, "subscribe", 403, "forbidden", channel=channel)
    assert await session.closed_with(3.0) == 4408


async def test_authz_12_max_channels_per_connection(few_channels: AttackTarget) -> None:
    """AUTHZ-12: a fourth subscription with ``max_channels_per_connection = 3`` → 429
    too_many_channels; after an unsubscribe there is room again."""
    session = await open_session(few_channels, "alice")
    for name in ("chat:a", "chat:b", "chat:c"):
        assert (await session.call("subscribe", channel=name))["ok"] is True
    await refused_call(
        few_channels, session, "subscribe", 429, "too_many_channels", channel="chat:d"
    )
    assert await subscribers(few_channels, "chat:d") == 0
    assert (await session.call("unsubscribe", channel="chat:a"))["ok"] is True
    assert (await session.call("subscribe", channel="chat:d"))["ok"] is True
