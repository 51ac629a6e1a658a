"""Channels and the message pipeline against a real server: per-message authorization, schemas
both ways, output encoding, limits, fan-out, history, recovery, presence and rpc."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.rawws import OP_CLOSE, OP_TEXT, RawClient, frame, handshake_bytes
from support.wsclient import Client
from wsguard.exceptions import ReplyError
from wsguard.settings import ChannelConfig, JwtConfig

pytestmark = pytest.mark.integration

JWT_SECRET = "j" * 48

PUBLIC = ChannelConfig(
    pattern="chat:*", subscribe=("anonymous",), publish=("anonymous",), history=("anonymous",)
)
TICKER = ChannelConfig(pattern="ticker:*", subscribe=("anonymous",))  # read-only
INBOX = ChannelConfig(pattern="user:*", subscribe=("owner",), publish=("owner",))
ADMIN = ChannelConfig(pattern="admin:ops", subscribe=("role:admin",), publish=("role:admin",))
ROOMS = ChannelConfig(
    pattern="room:*",
    subscribe=("authenticated",),
    publish=("authenticated",),
    presence=("authenticated",),
    history=("authenticated",),
    history_size=100,
)


def error(reply: dict[str, Any]) -> tuple[int, str]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["reason"]


def token(sub: str = "alice", **claims: Any) -> str:
    now = time.time()
    return jwt.encode(
        {"sub": sub, "exp": now + 300, "iat": now, **claims}, JWT_SECRET, algorithm="HS256"
    )


@pytest.fixture
async def channel_server(start_server):
    """An anonymous server with the test rules (auth off: the per-message checks stand alone)."""
    return await start_server(
        auth={"required": False},
        channels=[PUBLIC, TICKER, INBOX, ADMIN, ROOMS],
        limits={"max_connections_per_ip": 300},
    )


@pytest.fixture
async def jwt_server(start_server):
    return await start_server(
        auth={"required": True, "methods": ("jwt",), "jwt": JwtConfig(secret_env="JWT_SECRET")},
        channels=[PUBLIC, TICKER, INBOX, ADMIN, ROOMS],
        env={"JWT_SECRET": JWT_SECRET},
    )


@pytest.fixture
async def clients() -> AsyncIterator[Any]:
    opened: list[ClientConnection] = []

    async def open_client(port: int, bearer: str | None = None) -> Client:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
            additional_headers=headers,
            max_size=2**22,
        )
        opened.append(ws)
        client = Client(ws)
        client.welcome = await client.recv()
        assert client.welcome["push"] == "welcome"
        return client

    yield open_client
    for ws in opened:
        await ws.close()


# ---------------------------------------------------------------- per-message authorization


async def test_subscribing_to_another_users_inbox_is_403_and_own_inbox_is_allowed(
    jwt_server, clients
):
    alice = await clients(jwt_server.port, token("alice"))
    assert error(await alice.call("subscribe", channel="user:bob")) == (403, "forbidden")
    assert error(await alice.call("subscribe", channel="user:alice2")) == (403, "forbidden")
    reply = await alice.call("subscribe", channel="user:alice")
    assert reply["ok"] is True
    assert set(reply["result"]) == {"epoch", "offset"}


async def test_identities_in_the_payload_are_refused_not_trusted(jwt_server, clients):
    alice = await clients(jwt_server.port, token("alice"))
    reply = await alice.call("subscribe", channel="user:bob", user="bob")
    assert error(reply) == (400, "unknown_field")


async def test_publishing_to_a_read_only_channel_is_403_and_reaches_nobody(channel_server, clients):
    reader = await clients(channel_server.port)
    writer = await clients(channel_server.port)
    assert (await reader.call("subscribe", channel="ticker:ACME"))["ok"] is True
    assert error(await writer.call("publish", channel="ticker:ACME", data={"price": 1})) == (
        403,
        "forbidden",
    )
    # The ticker's stream never moved: a server publication is offset 1.
    publication = await channel_server.publish("ticker:ACME", {"price": 2})
    assert publication.offset == 1
    push = await reader.recv()
    assert push == {
        "push": "message",
        "channel": "ticker:ACME",
        "epoch": publication.epoch,
        "offset": 1,
        "data": {"price": 2},
    }


async def test_unknown_channel_is_404_and_bad_name_400(channel_server, clients):
    client = await clients(channel_server.port)
    assert error(await client.call("subscribe", channel="nowhere:x")) == (404, "unknown_channel")
    assert error(await client.call("publish", channel="chat", data=1)) == (400, "bad_channel")


async def test_a_role_removed_by_refresh_takes_effect_on_the_next_message(jwt_server, clients):
    admin = await clients(jwt_server.port, token("alice", roles=["admin"]))
    assert (await admin.call("subscribe", channel="admin:ops"))["ok"] is True
    assert (await admin.call("publish", channel="admin:ops", data="before"))["ok"] is True
    push = await admin.recv()
    assert push["data"] == "before"
    # Refresh and publish back to back: the publish is judged with the refreshed principal.
    await admin.ws.send(json.dumps({"id": 50, "op": "refresh", "token": token("alice")}))
    await admin.ws.send(
        json.dumps({"id": 51, "op": "publish", "channel": "admin:ops", "data": "after"})
    )
    frames = [await admin.frame() for _ in range(3)]
    assert frames[0]["id"] == 50
    assert frames[0]["ok"] is True
    # The subscription the new principal may not hold is dropped and the client told.
    assert frames[1] == {"push": "unsubscribed", "channel": "admin:ops", "reason": "forbidden"}
    assert frames[2]["id"] == 51
    assert error(frames[2]) == (403, "forbidden")
    await admin.quiet()  # "after" was published nowhere


async def test_messages_queued_behind_a_closing_refresh_do_nothing(jwt_server, clients):
    bob = await clients(jwt_server.port, token("bob"))
    await bob.call("subscribe", channel="room:x")
    alice = await clients(jwt_server.port, token("alice"))
    # One write: a refresh as somebody else (closed 4403), then a publish queued behind it.
    await alice.ws.send(json.dumps({"id": 1, "op": "refresh", "token": token("mallory")}))
    await alice.ws.send(json.dumps({"id": 2, "op": "publish", "channel": "room:x", "data": 1}))
    frames = await _until_closed(alice)
    assert [(f["id"], f["ok"]) for f in frames] == [(1, False)]
    assert alice.ws.close_code == 4403
    await bob.quiet()  # the publish never happened
    assert (
        await jwt_server.services.broker.history("room:x", since=None, limit=10)
    ).position.offset == 0


async def test_pending_socket_may_do_nothing_but_auth(jwt_server, clients):
    client = await RawClient.connect(jwt_server.port)
    await client.send(handshake_bytes(jwt_server.port))
    assert (await client.read_response()).status == 101
    await client.send(frame(OP_TEXT, b'{"id":1,"op":"subscribe","channel":"chat:a"}'))
    _, payload = await client.read_frame()
    reply = orjson.loads(payload)
    assert (reply["id"], reply["error"]["code"], reply["error"]["reason"]) == (
        1,
        401,
        "auth_required",
    )


# ---------------------------------------------------------------- schemas and encoding


@pytest.fixture
def schema_files(tmp_path: Path) -> tuple[str, str]:
    inbound = tmp_path / "in.json"
    inbound.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": 20},
                    "n": {"type": "integer"},
                },
                "required": ["text"],
                "additionalProperties": False,
            }
        )
    )
    outbound = tmp_path / "out.json"
    # The server promises subscribers that n, when present, is small.
    outbound.write_text(json.dumps({"properties": {"n": {"maximum": 10}}}))
    return str(inbound), str(outbound)


async def test_inbound_and_outbound_schemas_refuse_and_deliver_nothing(
    start_server, clients, schema_files
):
    inbound, outbound = schema_files
    rule = ChannelConfig(
        pattern="chat:*",
        subscribe=("anonymous",),
        publish=("anonymous",),
        schema=inbound,
        output_schema=outbound,
    )
    server = await start_server(auth={"required": False}, channels=[rule])
    reader = await clients(server.port)
    writer = await clients(server.port)
    await reader.call("subscribe", channel="chat:a")
    reply = await writer.call("publish", channel="chat:a", data={"text": "x" * 21})
    assert error(reply) == (422, "invalid_data")
    assert reply["error"]["message"] == "data.text: does not match the schema (maxLength)"
    assert "xxxx" not in json.dumps(reply)  # the value is never reflected
    assert error(await writer.call("publish", channel="chat:a", data={"who": "me"})) == (
        422,
        "invalid_data",
    )
    reply = await writer.call("publish", channel="chat:a", data={"text": "ok", "n": 11})
    assert error(reply) == (500, "bad_output")
    await reader.quiet()
    reply = await writer.call("publish", channel="chat:a", data={"text": "ok", "n": 3})
    assert reply["result"]["offset"] == 1
    assert (await reader.recv())["data"] == {"text": "ok", "n": 3}
    # Trusted publishers (Python, the internal API) get 422 for their own bad output.
    with pytest.raises(ReplyError) as info:
        await server.publish("chat:a", {"text": "ok", "n": 99})
    assert (info.value.code, info.value.reason) == (422, "bad_output")


async def test_html_encoding_escapes_every_string_once_before_fan_out(start_server, clients):
    rule = ChannelConfig(
        pattern="chat:*", subscribe=("anonymous",), publish=("anonymous",), encode="html"
    )
    server = await start_server(auth={"required": False}, channels=[rule])
    a, b = await clients(server.port), await clients(server.port)
    for client in (a, b):
        await client.call("subscribe", channel="chat:lobby")
    payload = {"text": "<img src=x onerror=alert(1)>", "list": ["a&b", 5, None], "'k'": '"q"'}
    await a.call("publish", channel="chat:lobby", data=payload)
    expected = {
        "text": "&lt;img src=x onerror=alert(1)&gt;",
        "list": ["a&amp;b", 5, None],
        "&#x27;k&#x27;": "&quot;q&quot;",
    }
    assert (await a.recv())["data"] == expected
    assert (await b.recv())["data"] == expected


# ---------------------------------------------------------------- limits and the canary


async def test_oversized_message_closes_1009_and_the_canary_keeps_going(start_server, clients):
    server = await start_server(
        auth={"required": False}, channels=[PUBLIC], limits={"max_message_bytes": 1024}
    )
    canary, big = await clients(server.port), await clients(server.port)
    await big.ws.send('{"op":"ping","pad":"' + "x" * 2000 + '"}')
    with pytest.raises(ConnectionClosed) as info:
        await big.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    await canary.quiet()


async def test_flood_gets_429_replies_then_4408_and_the_canary_is_unaffected(start_server, clients):
    frozen = 1000.0  # a fake clock that never moves: no bucket refills during the test
    server = await start_server(
        auth={"required": False},
        channels=[PUBLIC],
        limits={"messages_per_second": 1.0, "burst": 3, "max_violations": 4},
        monotonic=lambda: frozen,
    )
    canary, flooder = await clients(server.port), await clients(server.port)
    for i in range(10):
        await flooder.ws.send(orjson.dumps({"id": i, "op": "ping"}).decode())
    replies = await _until_closed(flooder)
    assert replies[:3] == [{"id": i, "ok": True, "result": {}} for i in range(3)]
    # Refused before decoding (the point of rating first): these replies carry no id.
    assert (
        replies[3:]
        == [
            {
                "ok": False,
                "error": {
                    "code": 429,
                    "reason": "rate_limited",
                    "message": "too many messages; slow down",
                },
            }
        ]
        * 4
    )
    assert flooder.ws.close_code == 4408
    # The canary has its own buckets (another address would have its own user budget too).
    await canary.quiet()


async def _until_closed(client: Client) -> list[dict[str, Any]]:
    frames = []
    for _ in range(1000):  # bounded
        try:
            frames.append(await client.frame())
        except ConnectionClosed:
            return frames
    raise AssertionError("the connection stayed open")


async def test_deep_and_hostile_json_get_their_exact_reasons(channel_server, clients):
    client = await clients(channel_server.port)
    cases = [
        (
            '{"id":1,"op":"publish","channel":"chat:a","data":' + "[" * 40 + "]" * 40 + "}",
            400,
            "too_deep",
        ),
        ('{"id":2,"op":"ping","id":3}', 400, "duplicate_key"),
        ('{"id":4,"op":"publish","channel":"chat:a","data":NaN}', 400, "bad_json"),
        (
            '{"id":5,"op":"publish","channel":"chat:a","data":{"__proto__":{}}}',
            400,
            "forbidden_key",
        ),
        (
            '{"id":6,"op":"publish","channel":"chat:a","data":9007199254740993}',
            400,
            "number_out_of_range",
        ),
    ]
    for text, code, reason in cases:
        await client.ws.send(text)
        reply = await client.recv()
        assert error(reply) == (code, reason), text
        # Refused before any id was trusted: no reply echoes an id the codec never checked.
        assert "id" not in reply


async def test_max_violations_counts_refusals_of_every_kind(start_server, clients):
    server = await start_server(
        auth={"required": False}, channels=[PUBLIC, TICKER], limits={"max_violations": 3}
    )
    client = await clients(server.port)
    assert error(await client.call("subscribe", channel="nowhere:x")) == (404, "unknown_channel")
    assert error(await client.call("publish", channel="ticker:A", data=1)) == (403, "forbidden")
    await client.ws.send(b"\x00binary")
    assert error(await client.recv()) == (400, "binary_unsupported")
    with pytest.raises(ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 4408


async def test_conflicts_do_not_count_as_violations(start_server, clients):
    server = await start_server(
        auth={"required": False}, channels=[PUBLIC], limits={"max_violations": 2}
    )
    client = await clients(server.port)
    await client.call("subscribe", channel="chat:a")
    for _ in range(3):
        assert error(await client.call("subscribe", channel="chat:a")) == (
            409,
            "already_subscribed",
        )
    assert error(await client.call("unsubscribe", channel="chat:b")) == (409, "not_subscribed")
    await client.quiet()


async def test_max_channels_per_connection(start_server, clients):
    server = await start_server(
        auth={"required": False}, channels=[PUBLIC], limits={"max_channels_per_connection": 2}
    )
    client = await clients(server.port)
    assert (await client.call("subscribe", channel="chat:1"))["ok"] is True
    assert (await client.call("subscribe", channel="chat:2"))["ok"] is True
    assert error(await client.call("subscribe", channel="chat:3")) == (429, "too_many_channels")
    assert (await client.call("unsubscribe", channel="chat:1"))["ok"] is True
    assert (await client.call("subscribe", channel="chat:3"))["ok"] is True


# ---------------------------------------------------------------- fan-out


async def test_every_subscriber_gets_every_publication_in_order(channel_server, clients):
    subscribers = [await clients(channel_server.port) for _ in range(5)]
    for client in subscribers:
        await client.call("subscribe", channel="chat:feed")
    for n in range(1, 101):
        await channel_server.publish("chat:feed", {"n": n})
    for client in subscribers:
        pushes = [await client.recv() for _ in range(100)]
        assert [p["offset"] for p in pushes] == list(range(1, 101))
        assert [p["data"]["n"] for p in pushes] == list(range(1, 101))
    assert channel_server.channels() == {"chat:feed": 5}


async def test_unsubscribe_stops_delivery_at_once(channel_server, clients):
    client = await clients(channel_server.port)
    await client.call("subscribe", channel="chat:a")
    await channel_server.publish("chat:a", 1)
    assert (await client.recv())["data"] == 1
    assert (await client.call("unsubscribe", channel="chat:a"))["ok"] is True
    await channel_server.publish("chat:a", 2)
    await client.quiet()
    assert channel_server.channels() == {}


@pytest.mark.slow
async def test_slow_reader_is_closed_4509_while_200_subscribers_get_everything(
    start_server, clients
):
    server = await start_server(
        auth={"required": False},
        channels=[PUBLIC],
        limits={
            "max_connections_per_ip": 300,
            "handshake_rate": 1000.0,
            "handshake_burst": 300,
            # 201 anonymous clients share one address, and so one per-user budget.
            "user_burst": 1000,
            "max_send_queue_bytes": 256 * 1024,
            # The slow reader reads its close frame only once the others are done.
            "close_timeout": 60.0,
        },
    )
    # The slow reader: a raw socket with a tiny receive buffer that never reads.
    slow = await RawClient.connect(server.port, rcvbuf=4096)
    await slow.send(handshake_bytes(server.port))
    assert (await slow.read_response()).status == 101
    await slow.send(frame(OP_TEXT, b'{"op":"subscribe","channel":"chat:feed"}'))
    subscribers = [await clients(server.port) for _ in range(200)]
    for client in subscribers:
        await client.call("subscribe", channel="chat:feed")
    await asyncio.sleep(0.1)  # the raw subscribe is handled (its replies sit unread)
    assert server.channels() == {"chat:feed": 201}
    # About 5 MB per subscriber: more than the kernel buffers for the slow reader (its socket
    # send buffer grows to tcp_wmem's 4 MB) plus its 256 KiB queue.
    count, blob = 320, "x" * 16000
    progress = [0] * len(subscribers)
    readers = [
        asyncio.create_task(_read_n(c, count, progress, i)) for i, c in enumerate(subscribers)
    ]
    for n in range(1, count + 1):
        await server.publish("chat:feed", {"n": n, "pad": blob})
        if n % 20 == 0:
            # Publish at the pace of the readers that do read (they share this process);
            # the slow one falls further behind with every batch.
            await _caught_up(progress, n - 20)
    results = await asyncio.wait_for(asyncio.gather(*readers), 120)
    for offsets in results:
        assert offsets == list(range(1, count + 1))
    # Behind everything queued before it, the slow reader finds the 4509 close frame.
    assert await _close_code(slow) == 4509
    await slow.send(frame(OP_CLOSE, (4509).to_bytes(2, "big")))
    for _ in range(5000):  # bounded: the closing handshake completes and it leaves
        if server.channels() == {"chat:feed": 200}:
            break
        await asyncio.sleep(0.001)
    assert server.channels() == {"chat:feed": 200}


async def _read_n(client: Client, n: int, progress: list[int], index: int) -> list[int]:
    offsets = []
    for _ in range(n):
        offsets.append((await client.recv(timeout=30))["offset"])
        progress[index] += 1
    return offsets


async def _caught_up(progress: list[int], at_least: int) -> None:
    for _ in range(30_000):  # bounded: at most ~30 s
        if min(progress) >= at_least:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"readers stuck at {min(progress)} < {at_least}")


async def _close_code(client: RawClient) -> int | None:
    # Read through whatever was queued before the close frame.
    while True:
        opcode, payload = await client.read_frame(timeout=10)
        if opcode == OP_CLOSE:
            return int.from_bytes(payload[:2], "big")


# ---------------------------------------------------------------- history, recovery, presence


async def test_history_returns_retained_publications_in_order(jwt_server, clients):
    for n in range(1, 6):
        await jwt_server.publish("room:1", {"n": n})
    client = await clients(jwt_server.port, token("alice"))
    reply = await client.call("history", channel="room:1", limit=3)
    result = reply["result"]
    assert [p["offset"] for p in result["publications"]] == [1, 2, 3]
    assert [p["data"]["n"] for p in result["publications"]] == [1, 2, 3]
    assert (result["offset"], result["complete"]) == (5, True)
    since = {"epoch": result["epoch"], "offset": 3}
    result = (await client.call("history", channel="room:1", since=since))["result"]
    assert [p["offset"] for p in result["publications"]] == [4, 5]
    # History is its own grant: chat grants it, the ticker does not.
    assert error(await client.call("history", channel="ticker:A")) == (403, "forbidden")


async def test_subscribe_with_since_replays_the_gap_then_goes_live(jwt_server, clients):
    client = await clients(jwt_server.port, token("alice"))
    first = await jwt_server.publish("room:2", "one")
    for word in ("two", "three", "four"):
        await jwt_server.publish("room:2", word)
    reply = await client.call(
        "subscribe", channel="room:2", since={"epoch": first.epoch, "offset": 1}
    )
    assert reply["result"] == {"epoch": first.epoch, "offset": 4}
    replayed = [await client.recv() for _ in range(3)]
    assert [(p["offset"], p["data"]) for p in replayed] == [(2, "two"), (3, "three"), (4, "four")]
    assert await client.recv() == {
        "push": "recovered",
        "channel": "room:2",
        "complete": True,
        "epoch": first.epoch,
        "offset": 4,
    }
    await jwt_server.publish("room:2", "five")
    live = await client.recv()
    assert (live["offset"], live["data"]) == (5, "five")


async def test_recovery_from_an_unknown_epoch_says_incomplete(jwt_server, clients):
    client = await clients(jwt_server.port, token("alice"))
    await jwt_server.publish("room:3", "a")
    reply = await client.call("subscribe", channel="room:3", since={"epoch": "gone", "offset": 9})
    assert reply["ok"] is True
    epoch = reply["result"]["epoch"]
    # The old stream is lost (complete: false); what the current one holds is replayed.
    replayed = await client.recv()
    assert (replayed["push"], replayed["epoch"], replayed["offset"]) == ("message", epoch, 1)
    assert replayed["data"] == "a"
    recovered = await client.recv()
    assert recovered == {
        "push": "recovered",
        "channel": "room:3",
        "complete": False,
        "epoch": epoch,
        "offset": 1,
    }


async def test_presence_lists_the_subscribed_clients(jwt_server, clients):
    alice = await clients(jwt_server.port, token("alice"))
    bob = await clients(jwt_server.port, token("bob"))
    for client in (alice, bob):
        await client.call("subscribe", channel="room:9")
    result = (await alice.call("presence", channel="room:9"))["result"]
    assert result == {
        "clients": {
            alice.welcome["client"]: {"user": "alice"},
            bob.welcome["client"]: {"user": "bob"},
        }
    }
    await bob.call("unsubscribe", channel="room:9")
    await asyncio.sleep(0.05)  # presence removal runs in the background
    result = (await alice.call("presence", channel="room:9"))["result"]
    assert result == {"clients": {alice.welcome["client"]: {"user": "alice"}}}
    assert error(await alice.call("presence", channel="chat:x")) == (403, "forbidden")


# ---------------------------------------------------------------- rpc


async def test_rpc_handlers_checks_and_errors(start_server, clients):
    jwt_server = await start_server(
        auth={"required": True, "methods": ("jwt",), "jwt": JwtConfig(secret_env="JWT_SECRET")},
        channels=[ROOMS],
        env={"JWT_SECRET": JWT_SECRET},
        limits={"rpc_timeout": 0.2},
    )
    never = asyncio.Event()

    @jwt_server.rpc(
        "orders.place",
        schema={"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}},
        output_schema={"type": "object", "required": ["order"]},
    )
    async def place(ctx: Any, data: Any) -> Any:
        if data.get("qty") == 99:
            raise ReplyError(409, "sold_out", "nothing left")
        if data.get("qty") == 98:
            return {"oops": True}
        if data.get("qty") == 97:
            raise RuntimeError("secret internal detail")
        if data.get("qty") == 96:
            await never.wait()
        await ctx.publish("room:orders", {"by": ctx.principal.user_id, "qty": data["qty"]})
        return {"order": 1, "user": ctx.principal.user_id}

    @jwt_server.rpc("admin.reset", allow=("role:admin",))
    async def reset(ctx: Any, data: Any) -> Any:
        return {}

    alice = await clients(jwt_server.port, token("alice"))
    await alice.call("subscribe", channel="room:orders")
    reply = await alice.call("rpc", method="orders.place", data={"qty": 2})
    assert reply["result"] == {"order": 1, "user": "alice"}
    push = await alice.recv()
    assert push["data"] == {"by": "alice", "qty": 2}
    assert error(await alice.call("rpc", method="nope")) == (404, "unknown_method")
    assert error(await alice.call("rpc", method="admin.reset")) == (403, "forbidden")
    reply = await alice.call("rpc", method="orders.place", data={"qty": 0})
    assert error(reply) == (422, "invalid_data")
    assert reply["error"]["message"] == "data.qty: does not match the schema (minimum)"
    assert error(await alice.call("rpc", method="orders.place", data={"qty": 99})) == (
        409,
        "sold_out",
    )
    assert error(await alice.call("rpc", method="orders.place", data={"qty": 98})) == (
        500,
        "bad_output",
    )
    reply = await alice.call("rpc", method="orders.place", data={"qty": 97})
    assert error(reply) == (500, "internal_error")
    assert "secret" not in json.dumps(reply)
    assert error(await alice.call("rpc", method="orders.place", data={"qty": 96})) == (
        503,
        "timeout",
    )


async def test_rpc_application_errors_are_not_violations(start_server, clients):
    server = await start_server(
        auth={"required": False}, channels=[PUBLIC], limits={"max_violations": 2}
    )

    @server.rpc("app.denies", allow=("anonymous",))
    async def denies(ctx: Any, data: Any) -> Any:
        raise ReplyError(403, "not_yours", "that order is not yours")

    @server.rpc("app.teapot", allow=("anonymous",))
    async def teapot(ctx: Any, data: Any) -> Any:
        raise ReplyError(418, "teapot", "short and stout")

    client = await clients(server.port)
    for _ in range(3):
        reply = await client.call("rpc", method="app.denies")
        assert reply["error"] == {
            "code": 403,
            "reason": "not_yours",
            "message": "that order is not yours",
        }
    # A code outside the protocol's set becomes a plain 500.
    assert error(await client.call("rpc", method="app.teapot")) == (500, "internal_error")
    await client.quiet()


def test_rpc_registration_refuses_bad_names_and_channel_grants() -> None:
    from wsguard.server.rpc import RpcRegistry

    async def handler(ctx: Any, data: Any) -> Any:
        return None

    registry = RpcRegistry()
    with pytest.raises(ValueError, match="1-128 characters"):
        registry.register("bad name", handler)
    with pytest.raises(ValueError, match="owner"):
        registry.register("a", handler, allow=("owner",))
    with pytest.raises(ValueError, match="list of grants"):
        registry.register("a", handler, allow="authenticated")
    registry.register("a", handler)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", handler)


# ---------------------------------------------------------------- metrics


async def test_metrics_count_connections_messages_and_refusals(channel_server, clients):
    from prometheus_client.parser import text_string_to_metric_families

    client = await clients(channel_server.port)
    await client.call("subscribe", channel="chat:m")
    await client.call("publish", channel="chat:m", data=1)
    await client.recv()
    await client.call("publish", channel="ticker:X", data=1)  # 403
    body, _ = channel_server.metrics.render()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("wsguard_connections", ())] == 1
    assert samples[("wsguard_messages_received_total", ())] == 3
    assert samples[("wsguard_publications_total", ())] == 1
    key = ("wsguard_rejections_total", (("reason", "forbidden"), ("stage", "message")))
    assert samples[key] == 1


async def test_an_rpc_handler_runs_in_a_task_from_its_first_step(start_server, clients):
    """The session runs a read's ops as soon as the read ends, in a task started eagerly: a
    handler sees that task from its first line, so libraries that need the current task
    (aiohttp's timeouts, asyncio.timeout) work before and after its first wait."""
    server = await start_server(auth={"required": False}, channels=[PUBLIC])
    seen: list[bool] = []

    @server.rpc("fetch", allow=("anonymous",))
    async def fetch(ctx: Any, data: Any) -> Any:
        seen.append(asyncio.current_task() is not None)
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://127.0.0.1:{server.port}/healthz") as response,
        ):
            body = await response.text()
        seen.append(asyncio.current_task() is not None)
        return {"status": response.status, "body": body}

    client = await clients(server.port)
    reply = await client.call("rpc", method="fetch")
    assert (reply["ok"], reply.get("result")) == (
        True,
        {"status": 200, "body": '{"status":"ok"}\n'},
    )
    assert seen == [True, True]
