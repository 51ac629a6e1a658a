"""wsguard.App.asgi(): the typed app mounted in a Starlette app, under a real uvicorn process.

The app is tests/support/typed_asgi.py: a ``WebSocketRoute("/ws", app.asgi())`` and the same
application under ``Mount("/mounted", ...)``, next to an ordinary HTTP route.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from support.processes import free_port, listening_process
from support.typed_asgi import SECRET_VALUE
from support.wsclient import Client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "j" * 48
FOREIGN = "https://evil.test"


def token(sub: str) -> str:
    now = time.time()
    return jwt.encode({"sub": sub, "exp": now + 300, "iat": now}, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")},
        "JWT_SECRET": JWT_SECRET,
        "TYPED_ASGI_ORIGIN": f"http://127.0.0.1:{port}",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "support.typed_asgi:app",
        "--app-dir",
        str(ROOT / "tests"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with listening_process("uvicorn", command, port, env=env, cwd=ROOT) as log:
        yield port
    # No session, writer task or lifespan failed on the way (uvicorn logs those to stderr).
    assert "Traceback" not in log.stderr, log.stderr[-3000:]


@pytest.fixture
async def open_client(port: int) -> AsyncIterator[object]:
    opened: list[ClientConnection] = []

    async def open_(bearer: str | None = None, path: str = "/ws") -> Client:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        ws = await connect(
            f"ws://127.0.0.1:{port}{path}",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=5,
            close_timeout=2,
        )
        opened.append(ws)
        client = Client(ws)
        client.welcome = await client.recv()
        return client

    try:
        yield open_
    finally:
        for ws in opened:
            await ws.close()


async def test_welcome_ping_and_typed_rpc(open_client):
    client = await open_client()
    assert client.welcome["push"] == "welcome"
    assert client.welcome["server"] == "wsguard"
    assert client.welcome["user"] is None
    assert (await client.call("ping"))["ok"] is True
    reply = await client.call("rpc", method="prices.quote", data={"qty": 3})
    assert reply == {"id": client.next_id, "ok": True, "result": {"total": 15}}


async def test_the_principal_from_the_handshake_reaches_the_handler(open_client):
    alice = await open_client(token("alice"))
    assert alice.welcome["user"] == "alice"
    await alice.call("subscribe", channel="user:alice")
    reply = await alice.call("rpc", method="orders.place", data={"items": [{"sku": "A", "qty": 2}]})
    assert reply["result"] == {"order": "o-A", "user": "alice"}
    assert (await alice.recv())["data"] == {"placed": 1}


async def test_anonymous_caller_is_refused_an_authenticated_method(open_client):
    client = await open_client()
    reply = await client.call("rpc", method="orders.place", data={"items": []})
    assert reply["error"]["code"] == 403


@pytest.mark.parametrize(
    ("method", "data", "message"),
    [
        (
            "orders.place",
            {"items": [{"sku": "A", "qty": "2"}]},
            "data.items[0].qty: Expected int, got str",
        ),
        ("prices.quote", {"qty": 0}, "data.qty: Input should be greater than or equal to 1"),
    ],
)
async def test_invalid_input_is_422_with_the_field_path(open_client, method, data, message):
    client = await open_client(token("bob"))
    reply = await client.call("rpc", method=method, data=data)
    assert reply["error"] == {"code": 422, "reason": "invalid_data", "message": message}


async def test_output_violating_its_model_is_500_bad_output(open_client):
    client = await open_client()
    reply = await client.call("rpc", method="prices.broken", data={"qty": 1})
    assert reply["error"] == {"code": 500, "reason": "bad_output", "message": "internal error"}
    assert SECRET_VALUE not in orjson.dumps(reply).decode()
    assert (await client.call("ping"))["ok"] is True  # the connection stays usable


async def test_subscribe_and_publish_between_two_clients(open_client):
    # One client on the WebSocketRoute, the other on the Mount: one shared broker and hub.
    reader = await open_client()
    writer = await open_client(path="/mounted/")
    subscribed = await reader.call("subscribe", channel="room:lobby")
    assert subscribed["ok"] is True
    published = await writer.call("publish", channel="room:lobby", data={"text": "hi"})
    assert published["ok"] is True
    push = await reader.recv()
    assert push["push"] == "message"
    assert push["channel"] == "room:lobby"
    assert push["data"] == {"text": "hi"}
    assert push["offset"] == published["result"]["offset"]


async def test_foreign_origin_is_refused_403_at_the_handshake(port):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{port}/ws", origin=FOREIGN, open_timeout=5):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_http_routes_of_the_host_app_still_work(port):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert (await client.get("/")).text == "host app"
        assert (await client.get("/mounted/anything")).status_code == 404
