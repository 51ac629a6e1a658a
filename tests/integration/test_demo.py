"""`wsguard demo`: its settings, its demo-only ticket endpoint, its ticker feed and its channel
rules, against the real demo server on 127.0.0.1 and real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from wsguard.config_rules import validate
from wsguard.demo import (
    CHAT_CHANNEL,
    TICKET_PATH,
    RunningDemo,
    attacker_pages,
    demo_pages,
    demo_settings,
)
from wsguard.demo import running_demo as start_demo
from wsguard.server.lifecycle import Server
from wsguard.testing import loopback_settings

pytestmark = pytest.mark.integration

TICKET_ENV = {"WSGUARD_TICKET_SECRET": "t" * 48}


@pytest.fixture
async def demo() -> AsyncIterator[RunningDemo]:
    async with start_demo(0, attacker_port=0, ticker_interval=0.1) as running:
        yield running


def origin_of(demo: RunningDemo) -> str:
    return f"http://127.0.0.1:{demo.server.port}"


async def get_ticket(
    port: int, query: str = "user=alice", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{TICKET_PATH}?{query}", headers=headers) as response,
    ):
        body = await response.read()
        parsed = orjson.loads(body) if response.content_type == "application/json" else {}
        return response.status, parsed, response.headers


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def reply_to(ws: ClientConnection, msg_id: int, timeout: float = 5.0) -> Any:
    """The reply to ``msg_id``, skipping pushes (ticks) that arrive meanwhile."""
    while True:
        message = await recv_json(ws, timeout)
        if message.get("id") == msg_id:
            return message


@contextlib.asynccontextmanager
async def signed_in(demo: RunningDemo, user: str) -> AsyncIterator[ClientConnection]:
    """A socket of the independent `websockets` client, signed in as ``user`` with a ticket
    from the demo endpoint, after the welcome push."""
    status, body, _ = await get_ticket(demo.server.port, f"user={user}")
    assert status == 200
    async with connect(f"ws://127.0.0.1:{demo.server.port}/ws", origin=origin_of(demo)) as ws:
        await ws.send(orjson.dumps({"id": 1, "op": "auth", "ticket": body["ticket"]}).decode())
        assert await recv_json(ws) == {
            "id": 1,
            "ok": True,
            "result": {"user": user, "expires_in": None},
        }
        welcome = await recv_json(ws)
        assert (welcome["push"], welcome["user"], welcome["auth"]) == ("welcome", user, "ticket")
        yield ws


async def request(ws: ClientConnection, msg_id: int, **fields: Any) -> Any:
    await ws.send(orjson.dumps({"id": msg_id, **fields}).decode())
    return await reply_to(ws, msg_id)


# ------------------------------------------------------------------ settings


def test_demo_settings_pass_the_configuration_rules():
    validate(demo_settings(0))


def test_demo_keeps_authentication_required_with_tickets_only():
    auth = demo_settings().auth
    assert (auth.required, auth.methods) == (True, ("ticket",))


def test_demo_settings_keep_the_origin_and_limit_defaults():
    defaults = loopback_settings()
    settings = demo_settings(0)
    assert settings.origins == defaults.origins
    assert settings.limits == defaults.limits
    assert settings.server.allow_plaintext is False


# ------------------------------------------------------------------ the ticket endpoint


async def test_ticket_for_a_good_name_signs_in_over_a_real_websocket(demo):
    async with signed_in(demo, "alice") as ws:
        assert await request(ws, 2, op="ping") == {"id": 2, "ok": True, "result": {}}


async def test_ticket_response_is_json_and_never_cached(demo):
    status, body, headers = await get_ticket(demo.server.port, "user=bob42")
    assert status == 200
    assert list(body) == ["ticket"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"


async def test_ticket_request_from_the_demo_page_itself_is_served(demo):
    # What Chromium sends for the page's own fetch().
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": origin_of(demo)}
    status, body, _ = await get_ticket(demo.server.port, headers=headers)
    assert status == 200
    assert "ticket" in body


async def test_ticket_is_single_use(demo):
    _, body, _ = await get_ticket(demo.server.port)
    frame = orjson.dumps({"id": 1, "op": "auth", "ticket": body["ticket"]}).decode()
    url, origin = f"ws://127.0.0.1:{demo.server.port}/ws", origin_of(demo)
    async with connect(url, origin=origin) as first:
        await first.send(frame)
        assert (await recv_json(first))["ok"] is True
    async with connect(url, origin=origin) as second:
        await second.send(frame)
        reply = await recv_json(second)
        assert (reply["ok"], reply["error"]["code"]) == (False, 401)


@pytest.mark.parametrize(
    "query",
    [
        "user=Alice",
        "user=",
        "user=" + "a" * 17,
        "user=al%20ice",
        "user=al%C3%A9",
        "user=alice&user=bob",
        "user=alice&admin=1",
        "name=alice",
        "user",
        "",
    ],
)
async def test_ticket_for_a_bad_name_is_400(demo, query):
    status, body, headers = await get_ticket(demo.server.port, query)
    assert status == 400
    assert body["error"]["reason"] == "bad_user"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        # Another port of the same host is the same *site*: the attacker page's own fetch.
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="typed-in-url-bar"),
        pytest.param({"Sec-Fetch-Site": "same-origin, cross-site"}, id="two-values"),
        pytest.param({"Origin": "http://evil.test"}, id="foreign-origin"),
        pytest.param({"Origin": "null"}, id="null-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.test"}, id="both"),
    ],
)
async def test_ticket_request_from_elsewhere_is_403(demo, headers):
    status, body, response_headers = await get_ticket(demo.server.port, headers=headers)
    assert status == 403
    assert body["error"]["reason"] == "forbidden"
    assert "ticket" not in body
    assert response_headers["Cache-Control"] == "no-store"


async def test_ticket_request_from_the_attacker_origin_is_403(demo):
    headers = {"Sec-Fetch-Site": "same-site", "Origin": demo.attacker_url.rstrip("/")}
    status, _, _ = await get_ticket(demo.server.port, headers=headers)
    assert status == 403


async def test_ticket_request_with_a_rebound_host_is_403(demo):
    # DNS rebinding: evil.test resolved to 127.0.0.1, so the browser calls it same-origin.
    headers = {"Host": f"evil.test:{demo.server.port}", "Sec-Fetch-Site": "same-origin"}
    status, _, _ = await get_ticket(demo.server.port, headers=headers)
    assert status == 403


async def test_ticket_endpoint_does_not_exist_on_a_normal_server():
    settings = loopback_settings(auth={"methods": ("ticket",)})
    async with Server(settings, env=TICKET_ENV) as server:
        status, _, _ = await get_ticket(server.port)
    assert status == 404


async def test_ticket_endpoint_is_not_among_the_static_demo_pages():
    settings = loopback_settings(auth={"methods": ("ticket",)})
    assert TICKET_PATH not in demo_pages()
    async with Server(settings, pages=demo_pages(), env=TICKET_ENV) as server:
        status, _, _ = await get_ticket(server.port)
    assert status == 404


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/", "text/html; charset=utf-8"), ("/demo.js", "text/javascript"), ("/demo.css", "text/css")],
)
async def test_demo_pages_are_static_with_the_page_headers(demo, path, content_type):
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{demo.server.port}{path}") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == content_type
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_demo_scripts_never_use_inner_html():
    # Every bit of socket data is rendered as text (textContent, createElement).
    for name in ("/demo.js", "/attacker.js"):
        pages = {**demo_pages(), **attacker_pages()}
        page = pages[name]
        assert isinstance(page, tuple)
        code = "\n".join(
            line for line in page[0].decode().splitlines() if not line.lstrip().startswith("//")
        )
        assert "innerHTML" not in code
        assert "outerHTML" not in code
        assert "insertAdjacentHTML" not in code
        assert "document.write" not in code


# ------------------------------------------------------------------ channels and the ticker


async def test_ticker_pushes_price_ticks_to_subscribers(demo):
    async with signed_in(demo, "alice") as ws:
        reply = await request(ws, 2, op="subscribe", channel="ticker:ACME")
        assert reply["ok"] is True
        ticks = []
        while len(ticks) < 2:
            message = await recv_json(ws)
            if message.get("push") == "message":
                ticks.append(message)
    assert {t["channel"] for t in ticks} == {"ticker:ACME"}
    assert ticks[1]["offset"] == ticks[0]["offset"] + 1
    for tick in ticks:
        data = tick["data"]
        assert set(data) == {"symbol", "price", "change", "ts"}
        assert data["symbol"] == "ACME"
        assert data["price"] > 0


async def test_ticker_is_read_only_for_clients(demo):
    async with signed_in(demo, "alice") as ws:
        reply = await request(ws, 2, op="publish", channel="ticker:ACME", data={"price": 1})
    assert reply["error"]["code"] == 403
    assert reply["error"]["reason"] == "forbidden"


async def test_chat_message_is_html_escaped_for_every_subscriber(demo):
    payload = '<img src=x onerror="window.__xss=1">'
    async with signed_in(demo, "alice") as alice, signed_in(demo, "bob") as bob:
        assert (await request(bob, 2, op="subscribe", channel=CHAT_CHANNEL))["ok"] is True
        reply = await request(alice, 2, op="publish", channel=CHAT_CHANNEL, data={"text": payload})
        assert reply["ok"] is True
        pushed = await recv_json(bob)
    assert pushed["push"] == "message"
    assert pushed["data"] == {"text": "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;"}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"text": "hi", "user": "admin"}, id="extra-field"),
        pytest.param({"text": ""}, id="empty"),
        pytest.param({"text": "x" * 501}, id="too-long"),
        pytest.param({"text": 5}, id="not-a-string"),
        pytest.param("hi", id="not-an-object"),
    ],
)
async def test_chat_message_outside_the_schema_is_422(demo, data):
    async with signed_in(demo, "alice") as ws:
        reply = await request(ws, 2, op="publish", channel=CHAT_CHANNEL, data=data)
    assert (reply["error"]["code"], reply["error"]["reason"]) == (422, "invalid_data")


async def test_another_users_channel_is_403_and_ones_own_is_allowed(demo):
    async with signed_in(demo, "alice") as ws:
        other = await request(ws, 2, op="subscribe", channel="user:bob")
        own = await request(ws, 3, op="subscribe", channel="user:alice")
    assert other["error"]["code"] == 403
    assert own["ok"] is True


async def test_pending_socket_gets_nothing_before_auth(demo):
    async with connect(f"ws://127.0.0.1:{demo.server.port}/ws", origin=origin_of(demo)) as ws:
        reply = await request(ws, 1, op="subscribe", channel="ticker:ACME")
    assert (reply["error"]["code"], reply["error"]["reason"]) == (401, "auth_required")


# ------------------------------------------------------------------ the command


def test_wsguard_demo_prints_both_urls_serves_the_page_and_stops_on_sigint():
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsguard.cli", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        urls: list[str] = []
        while len(urls) < 2:
            line = proc.stdout.readline().decode()
            assert line, "the demo exited before printing its URLs"
            urls += [word for word in line.split() if word.startswith("http://127.0.0.1:")]
        app, attacker = urls
        app_port = int(app.rstrip("/").rsplit(":", 1)[1])
        assert attacker == f"http://127.0.0.1:{app_port + 1}/"

        async def fetch() -> tuple[int, int]:
            async with aiohttp.ClientSession() as session:
                async with session.get(app) as page:
                    page_status = page.status
                async with session.get(f"{app}demo/ticket?user=alice") as ticket:
                    return page_status, ticket.status

        assert asyncio.run(fetch()) == (200, 200)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
