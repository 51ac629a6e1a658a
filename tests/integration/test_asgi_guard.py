"""wsguard.asgi.Guard in front of the example apps, under real ASGI servers (subprocesses).

FastAPI under uvicorn and hypercorn (both offer the "websocket.http.response" extension, so a
refused handshake gets the pipeline's own status), Django Channels under daphne (no extension:
every refusal is daphne's HTTP 403 for a close before accept).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.processes import free_port, listening_process
from support.rawws import RawClient, handshake_bytes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "t" * 48
FOREIGN = "https://evil.test"


@dataclass
class Served:
    port: int
    ws_path: str
    ticket_path: str

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, ticket: str | None = None) -> str:
        query = f"?ticket={ticket}" if ticket else ""
        return f"ws://127.0.0.1:{self.port}{self.ws_path}{query}"

    async def ticket(self) -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(f"{self.origin}{self.ticket_path}")
        assert response.status_code == 200
        return str(response.json()["ticket"])


def _command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        app = "examples.fastapi_guard.app:app"
        return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    if server == "hypercorn":
        app = "examples.fastapi_guard.app:app"
        return [sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]
    app = "examples.channels_guard.asgi:application"
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]


@contextlib.contextmanager
def serve(server: str) -> Iterator[int]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")},
        "WSGUARD_TICKET_SECRET": SECRET,
        "WSGUARD_ORIGINS_ALLOWED": f'["http://127.0.0.1:{port}"]',
    }
    with listening_process(server, _command(server, port), port, env=env, cwd=ROOT):
        yield port


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def fastapi_server(request: pytest.FixtureRequest) -> Iterator[Served]:
    with serve(request.param) as port:
        yield Served(port, "/ws", "/ticket")


@pytest.fixture(scope="module")
def channels_server() -> Iterator[Served]:
    with serve("daphne") as port:
        yield Served(port, "/ws/", "/ticket/")


async def refused_status(url: str, origin: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=origin, open_timeout=5):
            pass
    return refused.value.response.status_code


# ---------------------------------------------------------------- FastAPI, uvicorn + hypercorn


async def test_fastapi_foreign_origin_gets_403(fastapi_server: Served):
    ticket = await fastapi_server.ticket()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(fastapi_server.url(ticket), origin=FOREIGN, open_timeout=5):
            pass
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"403 Forbidden\n"


async def test_fastapi_missing_ticket_gets_401(fastapi_server: Served):
    assert await refused_status(fastapi_server.url(), fastapi_server.origin) == 401


async def test_fastapi_valid_ticket_is_accepted_and_echoes(fastapi_server: Served):
    ticket = await fastapi_server.ticket()
    async with connect(fastapi_server.url(ticket), origin=fastapi_server.origin) as ws:
        assert ws.response.headers["Vary"] == "Origin"
        assert ws.response.headers["Access-Control-Allow-Origin"] == fastapi_server.origin
        await ws.send("hello")
        user, _, text = str(await ws.recv(decode=True)).partition(": ")
        assert user.startswith("guest-")
        assert text == "hello"
        await ws.send("x" * 4096)  # exactly max_message_bytes passes
        assert str(await ws.recv(decode=True)) == f"{user}: {'x' * 4096}"


async def test_fastapi_replayed_ticket_gets_401(fastapi_server: Served):
    ticket = await fastapi_server.ticket()
    async with connect(fastapi_server.url(ticket), origin=fastapi_server.origin) as ws:
        await ws.send("once")
        await ws.recv()
    assert await refused_status(fastapi_server.url(ticket), fastapi_server.origin) == 401


async def test_fastapi_message_over_max_message_bytes_closes_1009(fastapi_server: Served):
    ticket = await fastapi_server.ticket()
    async with connect(fastapi_server.url(ticket), origin=fastapi_server.origin) as ws:
        await ws.send("x" * 4097)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_fastapi_duplicate_origin_gets_400(fastapi_server: Served):
    client = await RawClient.connect(fastapi_server.port)
    try:
        await client.send(handshake_bytes(fastapi_server.port, extra=[("Origin", FOREIGN)]))
        response = await client.read_response()
    finally:
        await RawClient.close_all()
    assert response.status == 400


async def test_http_responses_are_identical_with_and_without_the_guard(monkeypatch):
    monkeypatch.setenv("WSGUARD_TICKET_SECRET", SECRET)
    monkeypatch.syspath_prepend(str(ROOT))
    example = importlib.import_module("examples.fastapi_guard.app")
    assert example.app.app is example.fastapi_app

    async def fetch(app: object, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.request(method, path)
        headers = {k: v for k, v in response.headers.items() if k not in ("date", "server")}
        return response.status_code, response.content, headers

    for method, path in (("GET", "/"), ("GET", "/missing"), ("DELETE", "/"), ("GET", "/ticket")):
        guarded = await fetch(example.app, method, path)
        assert guarded == await fetch(example.fastapi_app, method, path)
    assert (await fetch(example.app, "GET", "/"))[0] == 200


# ---------------------------------------------------------------- Django Channels, daphne


async def test_channels_foreign_origin_is_refused_with_daphne_403(channels_server: Served):
    # daphne offers no "websocket.http.response" extension: the guard closes before accept
    # and daphne answers its own 403, whatever the pipeline's status.
    ticket = await channels_server.ticket()
    assert await refused_status(channels_server.url(ticket), FOREIGN) == 403


async def test_channels_missing_ticket_is_refused_with_daphne_403(channels_server: Served):
    assert await refused_status(channels_server.url(), channels_server.origin) == 403


async def test_channels_valid_ticket_is_accepted_and_echoes(channels_server: Served):
    ticket = await channels_server.ticket()
    async with connect(channels_server.url(ticket), origin=channels_server.origin) as ws:
        await ws.send("hello")
        user, _, text = str(await ws.recv(decode=True)).partition(": ")
        assert user.startswith("guest-")
        assert text == "hello"
    assert await refused_status(channels_server.url(ticket), channels_server.origin) == 403


async def test_channels_message_over_max_message_bytes_closes_4413(channels_server: Served):
    # daphne (autobahn) refuses 1009 from an application (only 1000 and 3000-4999): the guard
    # falls back to 4413, "too large" in the terminal application range.
    ticket = await channels_server.ticket()
    async with connect(channels_server.url(ticket), origin=channels_server.origin) as ws:
        await ws.send("x" * 4097)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4413
