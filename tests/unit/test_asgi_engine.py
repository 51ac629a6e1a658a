"""wsguard.server.asgi_engine and App.asgi() driven by hand-written receive/send: no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from wsguard import App
from wsguard.asgi import CLIENT_IP_KEY, PRINCIPAL_KEY
from wsguard.brokers.memory import MemoryBroker
from wsguard.core.decisions import ANONYMOUS
from wsguard.metrics import Metrics
from wsguard.server.asgi_engine import run_session
from wsguard.server.services import Services
from wsguard.settings import ChannelConfig
from wsguard.testing import loopback_settings

Message = dict[str, Any]

SETTINGS = loopback_settings(
    auth={"required": False},
    channels=[ChannelConfig(pattern="room:*", subscribe=("anonymous",), publish=("anonymous",))],
)


class Socket:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.got = asyncio.Event()

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.got.set()

    def text(self, value: dict[str, Any]) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": orjson.dumps(value).decode()})

    async def frames(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(5):
            while len([m for m in self.sent if m["type"] == "websocket.send"]) < count:
                self.got.clear()
                await self.got.wait()
        return [orjson.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


def scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "client": ("127.0.0.1", 5000),
        PRINCIPAL_KEY: ANONYMOUS,
        CLIENT_IP_KEY: "127.0.0.1",
    }


async def test_session_subscribes_and_leaves_the_hub_on_disconnect():
    services = Services(SETTINGS, MemoryBroker(), Metrics())
    auth = App(SETTINGS).asgi(env={}).auth
    sock = Socket()
    sock.inbox.put_nowait({"type": "websocket.connect"})
    task = asyncio.create_task(run_session(scope(), sock.receive, sock.send, services, auth))
    sock.text({"id": 1, "op": "subscribe", "channel": "room:a"})
    frames = await sock.frames(2)
    assert frames[0]["push"] == "welcome"
    assert frames[1]["ok"] is True
    assert services.hub.counts() == {"room:a": 1}
    sock.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    async with asyncio.timeout(5):
        await task
    assert services.hub.counts().get("room:a", 0) == 0
    assert sock.sent[0] == {"type": "websocket.accept"}


async def test_scope_without_the_guard_principal_is_refused_before_accept():
    services = Services(SETTINGS, MemoryBroker(), Metrics())
    auth = App(SETTINGS).asgi(env={}).auth
    sock = Socket()
    sock.inbox.put_nowait({"type": "websocket.connect"})
    bare = {"type": "websocket", "client": ("127.0.0.1", 5000)}
    async with asyncio.timeout(5):
        await run_session(bare, sock.receive, sock.send, services, auth)
    assert sock.sent == [{"type": "websocket.close", "code": 1008}]


async def test_violations_close_4408_and_end_the_session():
    services = Services(SETTINGS, MemoryBroker(), Metrics())
    auth = App(SETTINGS).asgi(env={}).auth
    sock = Socket()
    sock.inbox.put_nowait({"type": "websocket.connect"})
    task = asyncio.create_task(run_session(scope(), sock.receive, sock.send, services, auth))
    for _ in range(5):  # limits.max_violations
        sock.inbox.put_nowait({"type": "websocket.receive", "text": "not json"})
    async with asyncio.timeout(5):
        await task  # our close ends the session without waiting for the client
    assert sock.sent[-1] == {"type": "websocket.close", "code": 4408}


async def test_lifespan_starts_and_stops_the_services_and_http_is_404():
    app = App(SETTINGS)
    guard = app.asgi(env={})
    assert app.asgi() is guard
    sock = Socket()
    sock.inbox.put_nowait({"type": "lifespan.startup"})
    sock.inbox.put_nowait({"type": "lifespan.shutdown"})
    async with asyncio.timeout(5):
        await guard({"type": "lifespan"}, sock.receive, sock.send)
    assert [m["type"] for m in sock.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    http = Socket()
    http.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    async with asyncio.timeout(5):
        await guard({"type": "http", "method": "GET", "path": "/"}, http.receive, http.send)
    assert http.sent[0]["status"] == 404
