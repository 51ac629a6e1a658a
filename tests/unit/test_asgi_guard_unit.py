"""wsguard.asgi.Guard driven by hand-written ASGI receive/send pairs: no server, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from wsguard.asgi import PRINCIPAL_KEY, Guard
from wsguard.config import load_settings
from wsguard.core.decisions import ANONYMOUS
from wsguard.settings import Settings
from wsguard.tickets import mint

SECRET = "s" * 40
ORIGIN = "http://127.0.0.1:8000"
Message = dict[str, Any]


def settings(*overrides: str, tickets: bool = False) -> Settings:
    base = [f'origins.allowed=["{ORIGIN}"]']
    if tickets:
        base += ['auth.methods=["ticket"]']
    else:
        # Anonymous: the ticket method is left out (no secret in env={}).
        base += ["auth.required=false", 'auth.methods=["ticket"]']
    return load_settings(None, env={}, overrides=[*base, *overrides])


def ws_scope(
    *,
    query: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 50000),
    extra: list[tuple[bytes, bytes]] | None = None,
    origin: bytes | None = ORIGIN.encode(),
    denial: bool = True,
    scheme: str = "ws",
) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    if origin is not None:
        headers.append((b"origin", origin))
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": "/chat",
        "raw_path": b"/chat",
        "query_string": query,
        "root_path": "",
        "headers": headers + (extra or []),
        "client": client,
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial else {},
    }


class Peer:
    """The ASGI server side of one connection: a queue in, a list out."""

    def __init__(self, *inbound: Message) -> None:
        self.inbound: asyncio.Queue[Message] = asyncio.Queue()
        for message in ({"type": "websocket.connect"}, *inbound):
            self.inbound.put_nowait(message)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await asyncio.wait_for(self.inbound.get(), 5)

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


App = Callable[[Any, Any, Any], Awaitable[None]]


class EchoApp:
    """Accepts, echoes text, records what it saw, returns on disconnect."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.received: list[Message] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})


async def test_http_scope_reaches_the_app_as_the_same_objects():
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    guard = Guard(app, settings())
    scope: dict[str, Any] = {"type": "http", "path": "/", "headers": []}
    peer = Peer()
    await guard(scope, peer.receive, peer.send)
    assert seen == [(scope, peer.receive, peer.send)]
    assert seen[0][0] is scope
    assert scope == {"type": "http", "path": "/", "headers": []}


async def test_lifespan_scope_reaches_the_app_as_the_same_objects():
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    guard = Guard(app, settings())
    scope = {"type": "lifespan"}
    peer = Peer()
    await guard(scope, peer.receive, peer.send)
    assert seen[0] is scope


async def test_ticket_principal_lands_in_a_copy_of_the_scope():
    app = EchoApp()
    guard = Guard(app, settings(tickets=True), env={"WSGUARD_TICKET_SECRET": SECRET})
    ticket = mint("alice", ORIGIN, roles=["reader"], secret=SECRET.encode())
    scope = ws_scope(query=f"ticket={ticket}".encode())
    peer = Peer({"type": "websocket.disconnect", "code": 1000})
    await guard(scope, peer.receive, peer.send)
    principal = app.scopes[0][PRINCIPAL_KEY]
    assert (principal.user_id, principal.method, principal.roles) == (
        "alice",
        "ticket",
        frozenset({"reader"}),
    )
    assert PRINCIPAL_KEY not in scope
    assert guard.open_connections == 0


async def test_anonymous_principal_when_auth_is_not_required():
    app = EchoApp()
    guard = Guard(app, settings())
    peer = Peer({"type": "websocket.disconnect", "code": 1000})
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.scopes[0][PRINCIPAL_KEY] is ANONYMOUS


async def test_accept_carries_vary_and_the_checked_origin():
    guard = Guard(EchoApp(), settings())
    peer = Peer({"type": "websocket.disconnect", "code": 1000})
    await guard(ws_scope(), peer.receive, peer.send)
    assert peer.sent[0] == {
        "type": "websocket.accept",
        "headers": [(b"vary", b"Origin"), (b"access-control-allow-origin", ORIGIN.encode())],
    }


async def test_replayed_ticket_is_refused_with_401():
    guard = Guard(EchoApp(), settings(tickets=True), env={"WSGUARD_TICKET_SECRET": SECRET})
    ticket = mint("alice", ORIGIN, secret=SECRET.encode())
    first = Peer({"type": "websocket.disconnect", "code": 1000})
    await guard(ws_scope(query=f"ticket={ticket}".encode()), first.receive, first.send)
    replay = Peer()
    await guard(ws_scope(query=f"ticket={ticket}".encode()), replay.receive, replay.send)
    assert first.types()[0] == "websocket.accept"
    assert replay.sent[0]["status"] == 401
    assert guard.open_connections == 0


async def test_missing_ticket_is_refused_with_401_not_left_pending():
    app = EchoApp()
    guard = Guard(app, settings(tickets=True), env={"WSGUARD_TICKET_SECRET": SECRET})
    peer = Peer()
    await guard(ws_scope(), peer.receive, peer.send)
    assert peer.sent == [
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"content-length", b"17"),
            ],
        },
        {"type": "websocket.http.response.body", "body": b"401 Unauthorized\n", "more_body": False},
    ]
    assert app.scopes == []
    assert guard.open_connections == 0


async def test_refusal_without_the_denial_extension_closes_before_accept_with_1008():
    guard = Guard(EchoApp(), settings())
    peer = Peer()
    await guard(ws_scope(origin=b"https://evil.test", denial=False), peer.receive, peer.send)
    assert peer.sent == [{"type": "websocket.close", "code": 1008}]
    assert type(peer.sent[0]["code"]) is int


async def test_foreign_origin_is_refused_with_403():
    guard = Guard(EchoApp(), settings())
    peer = Peer()
    await guard(ws_scope(origin=b"https://evil.test"), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 403


async def test_duplicate_origin_is_kept_and_refused_with_400():
    guard = Guard(EchoApp(), settings())
    peer = Peer()
    extra = [(b"origin", b"https://evil.test")]
    await guard(ws_scope(extra=extra), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 400


async def test_forwarded_proto_from_an_untrusted_peer_is_ignored():
    guard = Guard(EchoApp(), settings())
    peer = Peer()
    extra = [(b"x-forwarded-proto", b"https")]
    await guard(ws_scope(client=("10.0.0.9", 1234), extra=extra), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 403  # plaintext from a non-loopback peer


async def test_forwarded_proto_from_a_trusted_proxy_is_believed():
    https_origin = "https://127.0.0.1:8000"
    overrides = ('server.trusted_proxies=["10.0.0.9"]', f'origins.allowed=["{https_origin}"]')
    app = EchoApp()
    guard = Guard(app, settings(*overrides))
    peer = Peer({"type": "websocket.disconnect", "code": 1000})
    extra = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.5")]
    scope = ws_scope(client=("10.0.0.9", 1234), extra=extra, origin=https_origin.encode())
    await guard(scope, peer.receive, peer.send)
    assert peer.types()[0] == "websocket.accept"


async def test_connection_slot_is_released_when_the_socket_ends():
    guard = Guard(EchoApp(), settings("limits.max_connections_per_ip=1"))
    first = Peer()
    task = asyncio.create_task(guard(ws_scope(), first.receive, first.send))
    for _ in range(100):  # bounded: the first connection is accepted within a few passes
        if first.sent:
            break
        await asyncio.sleep(0)
    assert first.types() == ["websocket.accept"]
    assert guard.open_connections == 1
    second = Peer()
    await guard(ws_scope(), second.receive, second.send)
    assert second.sent[0]["status"] == 429
    first.inbound.put_nowait({"type": "websocket.disconnect", "code": 1001})
    await asyncio.wait_for(task, 5)
    assert guard.open_connections == 0
    third = Peer({"type": "websocket.disconnect", "code": 1000})
    await guard(ws_scope(), third.receive, third.send)
    assert third.types()[0] == "websocket.accept"


async def test_slot_is_released_when_the_app_fails():
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("app bug")

    guard = Guard(broken, settings())
    peer = Peer()
    with pytest.raises(RuntimeError, match="app bug"):
        await guard(ws_scope(), peer.receive, peer.send)
    assert guard.open_connections == 0


async def test_message_over_max_message_bytes_closes_1009_and_app_sees_disconnect():
    app = EchoApp()
    guard = Guard(app, settings("limits.max_message_bytes=10"))
    peer = Peer(
        {"type": "websocket.receive", "text": "0123456789"},
        {"type": "websocket.receive", "text": "é" * 6},  # 6 characters, 12 bytes
    )
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.received == [
        {"type": "websocket.receive", "text": "0123456789"},
        {"type": "websocket.disconnect", "code": 1009},
    ]
    assert peer.sent[-1] == {"type": "websocket.close", "code": 1009}
    assert type(peer.sent[-1]["code"]) is int  # daphne (autobahn) refuses IntEnum codes
    assert guard.open_connections == 0


async def test_binary_message_over_the_limit_closes_1009():
    app = EchoApp()
    guard = Guard(app, settings("limits.max_message_bytes=10"))
    peer = Peer({"type": "websocket.receive", "bytes": b"x" * 11})
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.received == [{"type": "websocket.disconnect", "code": 1009}]
    assert peer.sent[-1] == {"type": "websocket.close", "code": 1009}


async def test_message_over_the_rate_closes_1008():
    app = EchoApp()
    guard = Guard(
        app,
        settings("limits.messages_per_second=1", "limits.burst=2"),
        monotonic=lambda: 100.0,
    )
    messages = [{"type": "websocket.receive", "text": str(i)} for i in range(3)]
    peer = Peer(*messages)
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.received == [*messages[:2], {"type": "websocket.disconnect", "code": 1008}]
    assert peer.sent[-1] == {"type": "websocket.close", "code": 1008}


async def test_schema_refusal_closes_1007_and_valid_messages_pass():
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 5}},
        "required": ["text"],
    }
    app = EchoApp()
    guard = Guard(app, settings(), schema=schema)
    good = {"type": "websocket.receive", "text": '{"text": "hi"}'}
    peer = Peer(good, {"type": "websocket.receive", "text": '{"text": "too long"}'})
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.received == [good, {"type": "websocket.disconnect", "code": 1007}]
    assert peer.sent[-1] == {"type": "websocket.close", "code": 1007}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.receive", "text": "{not json"},
        {"type": "websocket.receive", "text": '{"text": "a", "text": "b"}'},
        {"type": "websocket.receive", "bytes": b'{"text": "hi"}'},
    ],
)
async def test_schema_mode_refuses_non_json_duplicate_keys_and_binary_with_1007(message):
    app = EchoApp()
    guard = Guard(app, settings(), schema={"type": "object"})
    peer = Peer(message)
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.received == [{"type": "websocket.disconnect", "code": 1007}]


async def test_app_sends_after_a_guard_close_are_dropped():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive()) == {"type": "websocket.disconnect", "code": 1009}
        await send({"type": "websocket.send", "text": "late"})
        assert (await receive()) == {"type": "websocket.disconnect", "code": 1009}

    guard = Guard(app, settings("limits.max_message_bytes=4"))
    peer = Peer({"type": "websocket.receive", "text": "12345"})
    await guard(ws_scope(), peer.receive, peer.send)
    assert peer.types() == ["websocket.accept", "websocket.close"]


async def test_client_gone_before_connect_never_reaches_the_app():
    app = EchoApp()
    guard = Guard(app, settings())
    peer = Peer()
    peer.inbound = asyncio.Queue()
    peer.inbound.put_nowait({"type": "websocket.disconnect", "code": 1006})
    await guard(ws_scope(), peer.receive, peer.send)
    assert app.scopes == []
    assert peer.sent == []


async def test_config_path_is_loaded(tmp_path):
    path = tmp_path / "wsguard.toml"
    path.write_text("[auth]\nrequired = false\n[limits]\nmax_message_bytes = 7\n")
    guard = Guard(EchoApp(), str(path))
    assert guard.settings.limits.max_message_bytes == 7


async def test_server_refusing_rfc_close_codes_gets_the_application_code():
    class StrictPeer(Peer):
        async def send(self, message: Message) -> None:
            if message["type"] == "websocket.close" and message["code"] < 3000:
                raise ValueError("invalid close code")
            self.sent.append(message)

    app = EchoApp()
    guard = Guard(app, settings("limits.max_message_bytes=4"))
    peer = StrictPeer({"type": "websocket.receive", "text": "12345"})
    await guard(ws_scope(), peer.receive, peer.send)
    assert peer.sent[-1] == {"type": "websocket.close", "code": 4413}
    assert app.received == [{"type": "websocket.disconnect", "code": 1009}]
