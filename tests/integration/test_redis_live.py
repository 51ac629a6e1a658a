"""Servers sharing one real Redis, in this process: delivery across nodes, tickets consumed once
across nodes, revocation reaching every node, and clear 503s when Redis is unreachable.
(Separate processes, node crashes and a Redis restart: test_cluster.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from brokers.test_redis_broker import kill_pubsub_link
from support.redisdb import REDIS_URL, drop_prefix, unique_prefix
from support.wsclient import Client
from wsguard.brokers.redis import RedisBroker
from wsguard.codes import CloseCode
from wsguard.server.lifecycle import Server
from wsguard.settings import ChannelConfig, TicketConfig
from wsguard.testing import loopback_settings
from wsguard.tickets import mint

pytestmark = [pytest.mark.integration, pytest.mark.redis]

SECRET = "t" * 48
ENV = {"TICKET_SECRET": SECRET}
APP = "https://app.test"  # the one page origin every node serves
ROOMS = ChannelConfig(
    pattern="room:*",
    subscribe=("authenticated",),
    publish=("authenticated",),
    history=("authenticated",),
    presence=("authenticated",),
    history_size=100,
)
ADMIN = ChannelConfig(pattern="admin:*", subscribe=("role:admin",), history_size=100)
SHORT = ChannelConfig(
    pattern="short:*", subscribe=("authenticated",), publish=("authenticated",), history_size=2
)


def node_settings(prefix: str, url: str = REDIS_URL) -> Any:
    return loopback_settings(
        auth={
            "required": True,
            "methods": ("ticket",),
            "ticket": TicketConfig(secret_env="TICKET_SECRET"),
        },
        origins={"allowed": (APP,)},
        broker={"url": url, "prefix": prefix},
        channels=[ROOMS, SHORT, ADMIN],
    )


def ticket(user: str) -> str:
    return mint(user, APP, secret=SECRET.encode())


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    await drop_prefix(value)


@pytest.fixture
async def nodes(prefix: str) -> AsyncIterator[list[Server]]:
    servers = [Server(node_settings(prefix), env=ENV) for _ in range(3)]
    for server in servers:
        await server.start()
        broker = server.services.broker
        assert isinstance(broker, RedisBroker)
        assert await broker.wait_connected(5.0)
    yield servers
    for server in servers:
        await server.stop(grace=0.5)


@pytest.fixture
async def open_client() -> AsyncIterator[Any]:
    opened: list[ClientConnection] = []

    async def open_(server: Server, user: str = "alice") -> Client:
        ws = await connect(
            f"ws://127.0.0.1:{server.port}/ws?ticket={ticket(user)}",
            origin=APP,  # type: ignore[arg-type]
        )
        opened.append(ws)
        client = Client(ws)
        welcome = await client.frame()
        assert welcome["push"] == "welcome", welcome
        return client

    yield open_
    for ws in opened:
        await ws.close()


async def test_a_publication_on_one_node_reaches_subscribers_on_every_node(
    nodes: list[Server], open_client: Any
) -> None:
    subscribers = [await open_client(node, f"user{n}") for n, node in enumerate(nodes)]
    for client in subscribers:
        reply = await client.call("subscribe", channel="room:lobby")
        assert reply["ok"] is True, reply
    publisher = await open_client(nodes[0], "publisher")
    for n in range(1, 21):
        reply = await publisher.call("publish", channel="room:lobby", data={"n": n})
        assert reply["result"]["offset"] == n
    epochs = set()
    for client in subscribers:
        pushes = [await client.recv() for _ in range(20)]
        assert [(p["push"], p["offset"], p["data"]) for p in pushes] == [
            ("message", n, {"n": n}) for n in range(1, 21)
        ]
        epochs |= {p["epoch"] for p in pushes}
    assert len(epochs) == 1


async def test_a_ticket_is_accepted_once_on_one_node_and_refused_on_another(
    nodes: list[Server], open_client: Any
) -> None:
    value = ticket("alice")
    url = "ws://127.0.0.1:{}/ws?ticket=" + value
    ws = await connect(url.format(nodes[1].port), origin=APP)  # type: ignore[arg-type]
    try:
        assert orjson.loads(await ws.recv())["push"] == "welcome"
        with pytest.raises(InvalidStatus) as replay:
            await connect(url.format(nodes[2].port), origin=APP)  # type: ignore[arg-type]
        assert replay.value.response.status_code == 401
    finally:
        await ws.close()


async def test_revoking_on_one_node_closes_the_users_sockets_on_every_node_within_a_second(
    nodes: list[Server], open_client: Any
) -> None:
    victims = [await open_client(node, "mallory") for node in nodes[1:]]
    bystander = await open_client(nodes[2], "bob")
    stale = [ticket("mallory") for _ in nodes]  # minted before the revocation
    started = time.monotonic()
    assert await nodes[0].revoke("mallory") == 0  # none of hers on this node
    for client in victims:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.ws.recv(), 1.0)
        assert client.ws.close_code == CloseCode.FORBIDDEN
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    # A ticket minted before the revocation is refused on every node.
    for node, value in zip(nodes, stale, strict=True):
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                f"ws://127.0.0.1:{node.port}/ws?ticket={value}",
                origin=APP,  # type: ignore[arg-type]
            )
        assert refused.value.response.status_code == 403
    assert (await bystander.call("ping"))["ok"] is True


async def test_a_node_that_starts_later_learns_earlier_revocations(
    nodes: list[Server], prefix: str
) -> None:
    stale = ticket("mallory")  # minted before the revocation
    await nodes[0].revoke("mallory")
    late = Server(node_settings(prefix), env=ENV)
    await late.start()
    try:
        broker = late.services.broker
        assert isinstance(broker, RedisBroker)
        assert await broker.wait_connected(5.0)
        for _ in range(50):  # the replay runs right after the connection
            if late._state.auth.revocations:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                f"ws://127.0.0.1:{late.port}/ws?ticket={stale}",
                origin=APP,  # type: ignore[arg-type]
            )
        assert refused.value.response.status_code == 403
    finally:
        await late.stop(grace=0.5)


async def test_presence_is_shared_by_every_node(nodes: list[Server], open_client: Any) -> None:
    alice = await open_client(nodes[0], "alice")
    bob = await open_client(nodes[1], "bob")
    for client in (alice, bob):
        assert (await client.call("subscribe", channel="room:a"))["ok"] is True
    reply = await alice.call("presence", channel="room:a")
    users = sorted(info["user"] for info in reply["result"]["clients"].values())
    assert users == ["alice", "bob"]


async def test_lost_publications_close_the_subscribers_with_4510_and_recovery_says_so(
    nodes: list[Server], open_client: Any
) -> None:
    reader = await open_client(nodes[1], "reader")
    reply = await reader.call("subscribe", channel="short:a")
    epoch = reply["result"]["epoch"]
    writer = await open_client(nodes[0], "writer")
    assert (await writer.call("publish", channel="short:a", data=1))["ok"] is True
    assert (await reader.recv())["offset"] == 1
    broker = nodes[1].services.broker
    assert isinstance(broker, RedisBroker)
    await kill_pubsub_link(broker)
    for n in (2, 3, 4, 5):  # the history keeps 2: offsets 2 and 3 are gone for good
        assert (await writer.call("publish", channel="short:a", data=n))["ok"] is True
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reader.ws.recv(), 10.0)
    assert reader.ws.close_code == CloseCode.INSUFFICIENT_STATE
    again = await open_client(nodes[1], "reader")
    reply = await again.call("subscribe", channel="short:a", since={"epoch": epoch, "offset": 1})
    assert reply["result"] == {"epoch": epoch, "offset": 5}
    replayed = [await again.recv() for _ in range(3)]
    assert [(p["push"], p.get("offset")) for p in replayed] == [
        ("message", 4),
        ("message", 5),
        ("recovered", 5),
    ]
    assert replayed[-1]["complete"] is False


async def test_without_redis_every_shared_operation_is_a_clear_503(start_server: Any) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    server = await start_server(
        settings=loopback_settings(
            auth={"required": False},
            broker={"url": dead, "prefix": "wsguard-dead:"},
            channels=[
                ChannelConfig(
                    pattern="room:*",
                    subscribe=("anonymous",),
                    publish=("anonymous",),
                    history=("anonymous",),
                    presence=("anonymous",),
                )
            ],
        )
    )
    ws = await connect(
        f"ws://127.0.0.1:{server.port}/ws",
        origin=f"http://127.0.0.1:{server.port}",  # type: ignore[arg-type]
    )
    try:
        client = Client(ws)
        assert (await client.frame())["push"] == "welcome"
        unavailable = {"code": 503, "reason": "unavailable", "message": "the broker is unavailable"}
        for op, fields in [
            ("publish", {"channel": "room:a", "data": 1}),
            ("history", {"channel": "room:a"}),
            ("presence", {"channel": "room:a"}),
            ("subscribe", {"channel": "room:a"}),
        ]:
            reply = await client.call(op, **fields)
            assert (op, reply["error"]) == (op, unavailable)
        # Nothing half-done: the failed subscribe left no subscription behind.
        assert server.channels() == {}
        assert (await client.call("ping"))["ok"] is True
    finally:
        await ws.close()
    with pytest.raises(ConnectionError):
        await server.revoke("alice")


async def test_a_ticket_cannot_be_checked_without_redis_so_it_is_refused_with_503(
    start_server: Any,
) -> None:
    settings = node_settings("wsguard-dead:", url="redis://127.0.0.1:1/0")
    server = await start_server(settings=settings, env=ENV)
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            f"ws://127.0.0.1:{server.port}/ws?ticket={ticket('alice')}",
            origin=APP,  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 503


async def test_without_redis_the_internal_api_answers_503(start_server: Any) -> None:
    from wsguard.server.api import ApiServer

    settings = loopback_settings(
        auth={"required": False},
        broker={"url": "redis://127.0.0.1:1/0", "prefix": "wsguard-dead:"},
        api={"port": 0},
        channels=[ROOMS],
    )
    server = await start_server(settings=settings)
    key = "k" * 40
    async with (
        ApiServer(settings, server, env={"WSGUARD_API_KEY": key}) as api,
        aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{api.port}", headers={"Authorization": f"Bearer {key}"}
        ) as http,
    ):
        async with http.post("/api/publish", json={"channel": "room:a", "data": 1}) as response:
            assert response.status == 503
            body = await response.json()
            assert body["error"]["reason"] == "unavailable"
        for path, body in [
            ("/api/revoke", {"user": "alice"}),
            ("/api/disconnect", {"user": "alice", "code": 4000}),
        ]:
            async with http.post(path, json=body) as response:
                assert response.status == 503
                assert (await response.json())["error"] == {
                    "code": 503,
                    "reason": "unavailable",
                    "message": "done on this node only: the broker is unavailable",
                }


async def test_recovery_checks_the_grant_first_so_a_user_without_it_recovers_nothing(
    nodes: list[Server], open_client: Any
) -> None:
    published = [await nodes[0].publish("admin:ops", {"n": n}) for n in range(3)]
    since = {"epoch": published[0].epoch, "offset": 0}
    # The same position, asked on another node: without the role, a 403 and nothing replayed.
    reader = await open_client(nodes[1], "reader")
    reply = await reader.call("subscribe", channel="admin:ops", since=since)
    assert reply["error"]["code"] == 403
    assert (await reader.call("ping"))["ok"] is True
    assert reader.pushes == []
    # With the role, all three.
    ws = await connect(
        f"ws://127.0.0.1:{nodes[2].port}/ws?ticket="
        + mint("root", APP, roles=("admin",), secret=SECRET.encode()),
        origin=APP,  # type: ignore[arg-type]
    )
    try:
        admin = Client(ws)
        assert (await admin.frame())["push"] == "welcome"
        assert (await admin.call("subscribe", channel="admin:ops", since=since))["ok"] is True
        replayed = [await admin.recv() for _ in range(4)]
        assert [p.get("offset") for p in replayed] == [1, 2, 3, 3]
        assert replayed[-1]["push"] == "recovered"
        assert replayed[-1]["complete"] is True
    finally:
        await ws.close()
