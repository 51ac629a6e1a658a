"""The Python client against real servers on 127.0.0.1: requests and their error codes,
reconnect with recovery across a server restart, terminal closes, credential refresh on the
same socket, jittered reconnects of 100 clients, and the internal API client."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import orjson
import pytest

from wsguard.brokers.memory import MemoryBroker
from wsguard.client import ApiClient, Client, ClientError, Message, Position, backoff_delay
from wsguard.server.api import ApiServer
from wsguard.server.lifecycle import Server
from wsguard.settings import ChannelConfig, JwtConfig, Settings
from wsguard.testing import loopback_settings
from wsguard.tickets import mint

pytestmark = pytest.mark.integration

TICKET_SECRET = "t" * 48
JWT_SECRET = "j" * 48
API_KEY = "k" * 40
ENV = {"WSGUARD_TICKET_SECRET": TICKET_SECRET, "JWT_SECRET": JWT_SECRET, "WSGUARD_API_KEY": API_KEY}
ROOMS = ChannelConfig(
    pattern="room:*",
    subscribe=("authenticated",),
    publish=("authenticated",),
    history=("authenticated",),
    presence=("authenticated",),
    history_size=100,
)
TICKER = ChannelConfig(pattern="ticker:*", subscribe=("authenticated",))  # read-only


def ticket_settings(**sections: Any) -> Settings:
    return loopback_settings(
        auth={"required": True, "methods": ("ticket",)}, channels=[ROOMS, TICKER], **sections
    )


def endpoints(port: int) -> tuple[str, str]:
    return f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"


class Tickets:
    """A ticket provider that records when it is called: once per handshake."""

    def __init__(self, user: str, origin: str) -> None:
        self.user, self.origin = user, origin
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        return mint(self.user, self.origin, secret=TICKET_SECRET.encode())


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """Clients to close at the end (before the servers stop)."""
    opened: list[Client] = []
    yield opened
    await asyncio.gather(*(client.close() for client in opened))


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def take(sub: Any, n: int, within: float = 5.0) -> list[Message]:
    return [await asyncio.wait_for(anext(sub), within) for _ in range(n)]


# ---------------------------------------------------------------- requests and errors


async def test_a_ticket_client_subscribes_publishes_receives_and_errors_carry_codes(
    start_server, clients
):
    server = await start_server(settings=ticket_settings(limits={"rpc_timeout": 5.0}), env=ENV)
    release = asyncio.Event()

    @server.rpc("slow")
    async def slow(ctx: Any, data: Any) -> Any:
        await release.wait()
        return {}

    @server.rpc("echo")
    async def echo(ctx: Any, data: Any) -> Any:
        return {"user": ctx.principal.user_id, "data": data}

    url, origin = endpoints(server.port)
    tickets = Tickets("alice", origin)
    client = Client(url, ticket=tickets, origin=origin, timeout=0.5)
    clients.append(client)
    await client.connect()
    assert client.state == "open"
    assert client.welcome is not None
    assert (client.welcome["user"], client.welcome["auth"]) == ("alice", "ticket")

    sub = await client.subscribe("room:1")
    assert sub.position is not None
    assert sub.position.offset == 0
    position = await client.publish("room:1", {"text": "hi"})
    assert position == Position(sub.position.epoch, 1)
    [message] = await take(sub, 1)
    assert message == Message("room:1", position.epoch, 1, {"text": "hi"})
    assert sub.position == position

    with pytest.raises(ClientError) as info:
        await client.publish("ticker:ACME", {"price": 1})
    assert (info.value.code, info.value.reason) == (403, "forbidden")
    with pytest.raises(ClientError) as info:
        await client.rpc("nope")
    assert (info.value.code, info.value.reason) == (404, "unknown_method")
    with pytest.raises(ClientError) as info:
        await client.subscribe("room:1")
    assert (info.value.code, info.value.reason) == (409, "already_subscribed")
    assert await client.rpc("echo", {"x": 1}) == {"user": "alice", "data": {"x": 1}}

    started = time.monotonic()
    with pytest.raises(ClientError) as info:
        await client.rpc("slow")
    assert (info.value.code, info.value.reason) == (0, "timeout")
    assert 0.4 < time.monotonic() - started < 2.0
    release.set()
    await client.ping()  # the late reply was dropped; the connection is fine

    history = await client.history("room:1")
    assert (history.offset, history.complete) == (1, True)
    assert history.publications == [message]
    presence = await client.presence("room:1")
    assert presence == {client.welcome["client"]: {"user": "alice"}}

    await sub.unsubscribe()
    assert not sub.active
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    await server.publish("room:1", "after")
    await client.ping()
    assert server.channels() == {}
    assert len(tickets.calls) == 1


async def test_on_message_callbacks_get_every_message_in_order(start_server, clients):
    server = await start_server(settings=ticket_settings(), env=ENV)
    url, origin = endpoints(server.port)
    client = Client(url, ticket=Tickets("bob", origin), origin=origin)
    clients.append(client)
    await client.connect()
    seen: list[int] = []

    async def on_message(message: Message) -> None:
        await asyncio.sleep(0)  # a coroutine callback: awaited before the next one
        seen.append(message.data)

    sub = await client.subscribe("room:cb", on_message=on_message)
    for n in range(1, 31):
        await server.publish("room:cb", n)
    await until(lambda: len(seen) == 30)
    assert seen == list(range(1, 31))
    assert sub.position is not None
    assert sub.position.offset == 30


# ---------------------------------------------------------------- reconnect and recovery


async def test_a_restarted_server_is_rejoined_and_missed_messages_arrive_once_in_order(clients):
    broker = MemoryBroker()
    settings = ticket_settings()
    first = Server(settings, broker=broker, env=ENV)
    await first.start()
    port = first.port
    url, origin = endpoints(port)
    tickets = Tickets("alice", origin)
    client = Client(url, ticket=tickets, origin=origin, backoff_base=0.1, backoff_cap=0.5)
    clients.append(client)
    states: list[str] = []
    recovered: list[tuple[str, bool, str, int]] = []
    client.on_state(states.append)
    client.on_recovered(lambda *args: recovered.append(args))
    second = None
    try:
        await client.connect()
        sub = await client.subscribe("room:r")
        for n in range(1, 4):
            await first.publish("room:r", {"n": n})
        before = await take(sub, 3)
        await first.stop()
        await until(lambda: client.state == "reconnecting")
        # Published while no server runs, straight into the broker the next one will use.
        for n in range(4, 9):
            await broker.publish(
                "room:r", orjson.dumps({"n": n}), history_size=ROOMS.history_size, history_ttl=0
            )
        second = Server(loopback_settings(settings, server={"port": port}), broker=broker, env=ENV)
        await second.start()
        await until(lambda: client.state == "open" and bool(recovered))
        await second.publish("room:r", {"n": 9})
        after = await take(sub, 6)
    finally:
        await client.close()
        await first.stop()
        if second is not None:
            await second.stop()
    messages = before + after
    assert [m.offset for m in messages] == list(range(1, 10))
    assert [m.data["n"] for m in messages] == list(range(1, 10))
    assert len({m.epoch for m in messages}) == 1
    assert recovered == [("room:r", True, messages[0].epoch, 8)]
    assert sub.gaps == 0
    assert states[:4] == ["open", "reconnecting", "open", "closed"]
    assert len(tickets.calls) >= 2  # a fresh ticket for the reconnect


async def test_a_recovery_from_a_lost_epoch_is_reported_as_a_gap(clients):
    settings = ticket_settings()
    first = Server(settings, env=ENV)  # its own broker: the stream dies with it
    await first.start()
    port = first.port
    url, origin = endpoints(port)
    client = Client(url, ticket=Tickets("alice", origin), origin=origin, backoff_base=0.05)
    clients.append(client)
    gaps: list[int] = []
    second = None
    try:
        await client.connect()
        sub = await client.subscribe("room:g", on_gap=lambda s: gaps.append(s.gaps))
        await first.publish("room:g", "old")
        [old] = await take(sub, 1)
        await first.stop()
        second = Server(loopback_settings(settings, server={"port": port}), env=ENV)
        await second.publish("room:g", "new")  # a new epoch, offset 1 again
        await second.start()
        [new] = await take(sub, 1)
    finally:
        await client.close()
        await first.stop()
        if second is not None:
            await second.stop()
    assert (new.offset, new.data) == (1, "new")
    assert new.epoch != old.epoch
    assert gaps == [1]


async def test_a_revoked_client_closes_4403_and_never_reconnects(start_server, clients):
    server = await start_server(settings=ticket_settings(), env=ENV)
    url, origin = endpoints(server.port)
    tickets = Tickets("mallory", origin)
    client = Client(url, ticket=tickets, origin=origin, backoff_base=0.01)
    clients.append(client)
    errors: list[ClientError] = []
    client.on_error(errors.append)
    await client.connect()
    sub = await client.subscribe("room:x")
    pending = asyncio.create_task(anext(sub))
    assert await server.revoke("mallory") == 1
    error = await asyncio.wait_for(client.wait_closed(), 5)
    assert client.state == "closed"
    assert error is not None
    assert (error.code, error.reason) == (4403, "closed")
    with pytest.raises(ClientError) as info:
        await asyncio.wait_for(pending, 1)  # the subscription ends with the same error
    assert info.value.code == 4403
    with pytest.raises(ClientError) as info:
        await client.ping()
    assert info.value.code == 4403
    await asyncio.sleep(0.3)  # with a 10 ms backoff a reconnect would have come by now
    assert len(tickets.calls) == 1
    assert errors == []


async def test_refused_handshakes_stop_and_refused_connections_back_off_then_give_up(
    start_server,
):
    server = await start_server(settings=ticket_settings(), env=ENV)
    url, origin = endpoints(server.port)
    # A foreign page's origin: 403 at the handshake, and nothing to retry.
    tickets = Tickets("alice", "https://evil.example")
    client = Client(url, ticket=tickets, origin="https://evil.example", backoff_base=0.01)
    with pytest.raises(ClientError) as info:
        await client.connect()
    assert (info.value.code, info.value.reason) == (403, "handshake_refused")
    assert client.state == "closed"
    assert len(tickets.calls) == 1

    await server.stop()  # nothing listens on the port any more: connection refused
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)

    client = Client(
        url, origin=origin, max_retries=4, rng=random.Random(7), sleep=no_sleep, backoff_cap=4.0
    )
    with pytest.raises(ClientError) as info:
        await client.connect()
    assert info.value.reason == "retries_exhausted"
    replay = random.Random(7)
    assert delays == [backoff_delay(n, base=0.5, cap=4.0, rng=replay) for n in range(4)]


# ---------------------------------------------------------------- credential refresh


def token_server_settings(**auth: Any) -> Settings:
    return loopback_settings(
        auth={
            "required": True,
            "methods": ("jwt",),
            "jwt": JwtConfig(secret_env="JWT_SECRET", leeway=0),
            **auth,
        },
        channels=[ROOMS],
    )


def make_token(user: str, lifetime: float) -> str:
    now = time.time()
    claims = {"sub": user, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def test_expiring_tokens_are_refreshed_on_the_same_socket(start_server, clients):
    server = await start_server(
        settings=token_server_settings(expiring_notice=1.0, expiry_grace=0.2), env=ENV
    )
    url, origin = endpoints(server.port)
    calls: list[float] = []

    async def token() -> str:
        calls.append(time.monotonic())
        return make_token("carol", 1.5)

    client = Client(url, token=token, origin=origin)
    clients.append(client)
    states: list[str] = []
    client.on_state(states.append)
    await client.connect()
    assert client.welcome is not None
    assert (client.welcome["user"], client.welcome["auth"]) == ("carol", "jwt")
    first_client_id = client.welcome["client"]
    connected = calls[0]
    sub = await client.subscribe("room:t")
    # Past the first token's expiry and grace (1.7 s), with refreshes every ~0.5 s.
    await until(lambda: time.monotonic() - connected > 2.2 and len(calls) >= 3, within=6)
    position = await client.publish("room:t", "still here")
    [message] = await take(sub, 1)
    assert message.position == position
    assert client.state == "open"
    assert client.welcome["client"] == first_client_id
    assert states == ["open"]


async def test_a_refused_refresh_is_reported_and_the_socket_lives_until_expiry(
    start_server, clients
):
    server = await start_server(
        settings=token_server_settings(expiring_notice=0.8, expiry_grace=0.1), env=ENV
    )
    url, origin = endpoints(server.port)
    tokens = iter([make_token("dave", 1.0), "not-a-token"])

    async def token() -> str:
        return next(tokens)

    client = Client(url, token=token, origin=origin)
    clients.append(client)
    errors: list[ClientError] = []
    client.on_error(errors.append)
    await client.connect()
    await until(lambda: bool(errors))
    assert (errors[0].code, errors[0].reason) == (401, "unauthorized")
    await client.ping()  # kept: the first token is still valid
    error = await asyncio.wait_for(client.wait_closed(), 5)
    assert error is not None
    assert (error.code, error.reason) == (4401, "closed")


# ---------------------------------------------------------------- a herd, spread out


class RecordedSleep:
    """The client's backoff sleep: records each delay it was asked for and when, then sleeps."""

    def __init__(self) -> None:
        self.naps: list[tuple[float, float]] = []  # (delay, monotonic time the nap began)

    async def __call__(self, delay: float) -> None:
        self.naps.append((delay, time.monotonic()))
        await asyncio.sleep(delay)


@pytest.mark.slow
async def test_100_clients_reconnect_to_a_restarted_server_spread_out_in_time(clients):
    """The herd's first retries are spread by the jitter, honoured, and all rejoin.

    The spread is asserted on the delays each client chose (seeded, so a failure replays),
    not on when the event loop got round to the retries: one loop runs the server and all
    100 clients, and on a loaded machine a stall bunches timers that were far apart.
    """
    limits = {
        "max_connections_per_ip": 1000,
        "handshake_rate": 1000.0,
        "handshake_burst": 1000,
    }
    settings = ticket_settings(limits=limits)
    first = Server(settings, env=ENV)
    await first.start()
    port = first.port
    url, origin = endpoints(port)
    providers = [Tickets(f"user{n}", origin) for n in range(100)]
    sleeps = [RecordedSleep() for _ in range(100)]
    herd = [
        Client(
            url,
            ticket=provider,
            origin=origin,
            backoff_base=1.0,
            backoff_cap=4.0,
            keepalive=None,
            rng=random.Random(n),
            sleep=sleep,
        )
        for n, (provider, sleep) in enumerate(zip(providers, sleeps, strict=True))
    ]
    clients.extend(herd)
    second = None
    try:
        await asyncio.gather(*(client.connect() for client in herd))
        assert all(sleep.naps == [] for sleep in sleeps)
        stopped = time.monotonic()
        await first.stop()
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - stopped)))
        second = Server(loopback_settings(settings, server={"port": port}), env=ENV)
        await second.start()
        restarted = time.monotonic() - stopped
        await until(lambda: all(client.state == "open" for client in herd), within=20)
        rejoined = time.monotonic() - stopped
    finally:
        await asyncio.gather(*(client.close() for client in herd))
        await first.stop()
        if second is not None:
            await second.stop()
    # The first nap after the drop has the ceiling backoff_base (1.0 s): a uniform draw.
    chosen = sorted(sleep.naps[0][0] for sleep in sleeps)
    assert all(0.0 <= delay < 1.0 for delay in chosen)
    spread = chosen[-1] - chosen[0]
    busiest = max(sum(1 for d in chosen if start <= d < start + 0.05) for start in chosen)
    # Each client's first handshake after the drop came after its nap, not before.
    early = [
        n
        for n, (provider, sleep) in enumerate(zip(providers, sleeps, strict=True))
        if next(t for t in provider.calls if t > stopped) < sum(sleep.naps[0]) - 0.001
    ]
    print(
        f"\nfirst delays chosen: {chosen[0]:.3f}..{chosen[-1]:.3f} s (spread {spread:.3f} s); "
        f"busiest 50 ms window: {busiest} of 100; all naps: {sum(len(s.naps) for s in sleeps)}; "
        f"restarted at {restarted:.3f} s; all 100 open again at {rejoined:.3f} s"
    )
    assert spread > 0.8
    assert busiest <= 15
    assert early == []
    assert all(client.welcome is not None for client in herd)


# ---------------------------------------------------------------- the internal API client


async def test_api_client_tickets_publish_channels_disconnect_and_revoke(start_server, clients):
    settings = ticket_settings(api={"port": 0})
    server = await start_server(settings=settings, env=ENV)
    url, origin = endpoints(server.port)
    async with (
        ApiServer(settings, server, env=ENV) as api_server,
        ApiClient(f"http://127.0.0.1:{api_server.port}", API_KEY) as api,
    ):
        issued: list[str] = []

        async def fresh_ticket() -> str:
            issued.append(await api.ticket("alice", origin, ttl=10))
            return issued[-1]

        alice = Client(url, ticket=fresh_ticket, origin=origin, backoff_base=0.05)
        clients.append(alice)
        await alice.connect()

        async def replayed() -> str:
            return issued[0]

        thief = Client(url, ticket=replayed, origin=origin)
        with pytest.raises(ClientError) as info:
            await thief.connect()
        assert (info.value.code, info.value.reason) == (401, "handshake_refused")

        sub = await alice.subscribe("room:api")
        position = await api.publish("room:api", {"from": "backend"})
        [message] = await take(sub, 1)
        assert message == Message("room:api", position.epoch, position.offset, {"from": "backend"})
        assert await api.channels() == {"room:api": 1}
        with pytest.raises(ClientError) as info:
            await api.publish("nowhere:x", 1)
        assert (info.value.code, info.value.reason) == (404, "unknown_channel")
        with pytest.raises(ClientError) as info:
            await api.ticket("alice", "not an origin")
        assert (info.value.code, info.value.reason) == (400, "bad_request")
        async with ApiClient(f"http://127.0.0.1:{api_server.port}", "w" * 40) as wrong:
            with pytest.raises(ClientError) as info:
                await wrong.channels()
        assert (info.value.code, info.value.reason) == (401, "unauthorized")

        # 4503 allows a reconnect: a fresh ticket, and the subscription carries on.
        first_id = alice.welcome["client"] if alice.welcome else None
        assert await api.disconnect("alice") == 1
        await until(lambda: alice.state == "open" and alice.welcome["client"] != first_id)
        second = await api.publish("room:api", {"n": 2})
        [message] = await take(sub, 1)
        assert message.position == second
        assert len(issued) == 2

        assert await api.revoke("alice") == 1
        error = await asyncio.wait_for(alice.wait_closed(), 5)
        assert error is not None
        assert error.code == 4403
        assert len(issued) == 2
