"""wsguard.js, the browser client, in real Chromium against real servers: tickets and payloads
shown as text, a server restart recovered without loss or duplicate, a revocation that stops
reconnecting, a JWT refreshed on the same socket, and errors that carry the server's codes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from wsguard.audit import AuditLog
from wsguard.brokers.base import Broker
from wsguard.brokers.memory import MemoryBroker
from wsguard.demo import start_static_site
from wsguard.exceptions import ReplyError
from wsguard.server.lifecycle import Server
from wsguard.server.responses import Page
from wsguard.settings import ChannelConfig, JwtConfig
from wsguard.testing import loopback_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TICKET_SECRET = "t" * 48
JWT_SECRET = "j" * 48
ENV = {"WSGUARD_TICKET_SECRET": TICKET_SECRET, "JWT_SECRET": JWT_SECRET}
XSS = '<img src=x onerror="window.__xss=1">'
AUTHENTICATED = ("authenticated",)
ROOMS = ChannelConfig(
    pattern="room:*",
    subscribe=AUTHENTICATED,
    publish=AUTHENTICATED,
    history=AUTHENTICATED,
    presence=AUTHENTICATED,
    history_size=100,
)
TICKER = ChannelConfig(pattern="ticker:*", subscribe=AUTHENTICATED)  # read-only for clients
# Keeps only the last two publications: a longer absence cannot be recovered completely.
FEED = ChannelConfig(
    pattern="feed:*", subscribe=AUTHENTICATED, publish=AUTHENTICATED, history_size=2
)
_PAGE_DIR = Path(__file__).parent / "pages"
PAGES: dict[str, Page] = {
    "/": ((_PAGE_DIR / "client-test.html").read_bytes(), "text/html; charset=utf-8"),
    "/client-test.js": ((_PAGE_DIR / "client-test.js").read_bytes(), "text/javascript"),
}
RECORD = "() => window.wsguardTest.record"


class Harness:
    """Servers with the test page, and the credential function the page calls.

    ``credential(user, kind)`` is exposed to every page as ``window.wsguardCredential``: it mints
    a ticket at the current server (the page's origin) or a short JWT, and records each call.
    """

    def __init__(self, audit: Any) -> None:
        self.audit = audit
        self.server: Server | None = None
        self.running: list[Server] = []
        self.calls: list[tuple[str, str]] = []
        self.token_lifetime = 300.0
        self.failing_users: set[str] = set()  # their provider fails after the first call
        self.app_origin: str | None = None  # the page's origin when not the server's

    async def start(self, broker: Broker | None = None, port: int = 0, **sections: Any) -> Server:
        sections.setdefault("auth", {"required": True, "methods": ("ticket",)})
        sections.setdefault("channels", [ROOMS, TICKER, FEED])
        settings = loopback_settings(**sections)
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, port=port)
        )
        logger = logging.Logger(f"client-js-audit-{id(self)}")
        logger.addHandler(self.audit)
        server = Server(
            settings, pages=PAGES, env=ENV, broker=broker, audit=AuditLog(logger=logger)
        )

        @server.rpc("whoami")
        async def whoami(ctx: Any, data: Any) -> Any:
            return {"user": ctx.principal.user_id, "client": ctx.client_id, "echo": data}

        @server.rpc("slow")
        async def slow(ctx: Any, data: Any) -> Any:
            await asyncio.sleep(3)
            return {}

        @server.rpc("app.denies")
        async def denies(ctx: Any, data: Any) -> Any:
            raise ReplyError(403, "not_yours", "that order is not yours")

        await server.start()
        self.server = server
        self.running.append(server)
        return server

    async def stop(self, server: Server) -> None:
        self.running.remove(server)
        await server.stop()

    async def credential(self, user: str, kind: str) -> str:
        self.calls.append((user, kind))
        if user in self.failing_users and len([c for c in self.calls if c[0] == user]) > 1:
            raise RuntimeError("the app backend refused")
        server = self.server
        assert server is not None
        if kind == "ticket":
            origin = self.app_origin or f"http://127.0.0.1:{server.port}"
            return server.mint_ticket(user, origin)
        now = time.time()
        claims = {"sub": user, "iat": now, "exp": now + self.token_lifetime}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    async def open(
        self, browser: Any, query: str = "", errors: list[str] | None = None, site: str = ""
    ) -> Any:
        """The test page (from the server, or from ``site``), connected: welcome received."""
        server = self.server
        assert server is not None
        page = await browser.new_page()
        if errors is not None:
            page.on("pageerror", lambda error: errors.append(str(error)))
        await page.expose_function("wsguardCredential", self.credential)
        await page.goto(f"{site or f'http://127.0.0.1:{server.port}'}/?{query}")
        await page.wait_for_function(
            "() => window.wsguardTest && window.wsguardTest.record.welcomes.length === 1",
            timeout=10_000,
        )
        return page

    def ws_handshakes(self) -> int:
        """Handshakes on /ws the servers decided (accepted or refused)."""
        return len(
            [
                e
                for e in self.audit.events
                if e["event"].startswith("handshake_") and e.get("path") == "/ws"
            ]
        )


@pytest.fixture
async def harness(audit: Any) -> AsyncIterator[Harness]:
    harness = Harness(audit)
    yield harness
    for server in list(harness.running):
        await harness.stop(server)


async def call(page: Any, script: str, arg: Any = None) -> Any:
    """Run ``script`` (a JS function of ``t``, the page's test handle, and ``arg``) and return
    its outcome: ``{"ok": true, "value": ...}`` or ``{"ok": false, "code", "reason", ...}``."""
    return await page.evaluate(
        f"([arg]) => {{ const t = window.wsguardTest; return t.outcome(({script})(t, arg)); }}",
        [arg],
    )


def refused(code: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "wsguardError": True, "code": code, "reason": reason}


# ---------------------------------------------------------------- connect, publish, receive


async def test_ticket_connect_subscribe_publish_and_payload_shown_as_text(browser, harness):
    errors: list[str] = []
    await harness.start()
    page = await harness.open(browser, errors=errors)
    record = await page.evaluate(RECORD)
    assert record["states"] == ["connecting", "open"]
    [welcome] = record["welcomes"]
    assert (welcome["user"], welcome["auth"], welcome["protocol"]) == ("alice", "ticket", 1)
    assert harness.calls == [("alice", "ticket")]

    subscribed = await page.evaluate("() => window.wsguardTest.subscribe('room:lobby')")
    assert subscribed["ok"] is True
    epoch = subscribed["value"]["epoch"]
    assert subscribed == {
        "ok": True,
        "value": {"channel": "room:lobby", "epoch": epoch, "offset": 0},
    }

    published = await call(page, "(t, text) => t.client.publish('room:lobby', {text})", XSS)
    assert published == {"ok": True, "value": {"epoch": epoch, "offset": 1}}
    await page.wait_for_function(
        "() => window.wsguardTest.record.received.length === 1", timeout=10_000
    )
    record = await page.evaluate(RECORD)
    assert record["received"] == [
        {"channel": "room:lobby", "epoch": epoch, "offset": 1, "data": {"text": XSS}}
    ]
    # The payload is text on the page: no element was made of it, nothing ran.
    assert await page.eval_on_selector_all(
        "#messages li", "items => items.map((item) => item.textContent)"
    ) == [XSS]
    assert await page.evaluate("() => document.querySelectorAll('#messages img').length") == 0
    assert await page.evaluate("() => typeof window.__xss") == "undefined"

    history = await call(page, "(t) => t.client.history('room:lobby', {limit: 10})")
    assert history == {
        "ok": True,
        "value": {
            "publications": [{"offset": 1, "data": {"text": XSS}}],
            "epoch": epoch,
            "offset": 1,
            "complete": True,
        },
    }
    presence = await call(page, "(t) => t.client.presence('room:lobby')")
    assert presence == {"ok": True, "value": {"clients": {welcome["client"]: {"user": "alice"}}}}
    whoami = await call(page, "(t) => t.client.rpc('whoami', [1, 'two'])")
    assert whoami == {
        "ok": True,
        "value": {"user": "alice", "client": welcome["client"], "echo": [1, "two"]},
    }
    # The module exports what wsguard.d.ts declares, and nothing else.
    assert await page.evaluate("() => window.wsguardTest.exports") == [
        "WsguardClient",
        "WsguardError",
        "text",
    ]
    declarations = resources.files("wsguard.static").joinpath("wsguard.d.ts").read_text()
    assert sorted(re.findall(r"^export (?:class|function) (\w+)", declarations, re.M)) == [
        "WsguardClient",
        "WsguardError",
        "text",
    ]
    assert (await page.evaluate(RECORD))["errors"] == []
    assert errors == []


async def test_app_page_on_another_origin_imports_the_client_from_the_server(browser, harness):
    errors: list[str] = []
    site = await start_static_site(PAGES, 0)
    try:
        app_origin = f"http://127.0.0.1:{site.addresses[0][1]}"
        harness.app_origin = app_origin
        server = await harness.start(origins={"allowed": (app_origin,)})
        page = await harness.open(browser, f"server=127.0.0.1:{server.port}", errors, app_origin)
        subscribed = await page.evaluate("() => window.wsguardTest.subscribe('room:lobby')")
        assert subscribed["ok"] is True
        published = await call(page, "(t) => t.client.publish('room:lobby', {text: 'hi'})")
        assert published["ok"] is True
        await page.wait_for_function(
            "() => window.wsguardTest.record.received.length === 1", timeout=10_000
        )
        assert await page.eval_on_selector_all(
            "#messages li", "items => items.map((item) => item.textContent)"
        ) == ["hi"]
    finally:
        await site.cleanup()
    accepted = [e for e in harness.audit.events if e["event"] == "handshake_accepted"]
    assert [(e["origin"], e["user"], e["auth"]) for e in accepted] == [
        (app_origin, "alice", "ticket")
    ]
    assert errors == []


# ---------------------------------------------------------------- restart and recovery


async def test_server_restart_is_recovered_with_every_message_once_in_order(browser, harness):
    errors: list[str] = []
    broker = MemoryBroker()
    server = await harness.start(broker=broker)
    port = server.port
    page = await harness.open(browser, errors=errors)
    subscribed = await page.evaluate("() => window.wsguardTest.subscribe('room:lobby')")
    epoch = subscribed["value"]["epoch"]
    feed = await page.evaluate("() => window.wsguardTest.subscribe('feed:news')")
    feed_epoch = feed["value"]["epoch"]
    assert (await call(page, "(t) => t.client.publish('feed:news', {text: 'f0'})"))["ok"] is True
    for i in range(3):
        published = await call(
            page, "(t, text) => t.client.publish('room:lobby', {text})", f"before {i}"
        )
        assert published == {"ok": True, "value": {"epoch": epoch, "offset": i + 1}}
    await page.wait_for_function(
        "() => window.wsguardTest.record.received.length === 4", timeout=10_000
    )

    await harness.stop(server)
    await page.wait_for_function(
        "() => window.wsguardTest.client.state === 'reconnecting'", timeout=10_000
    )
    # While no server runs, the channel moves on in the broker the next server will use.
    for i in range(5):
        await broker.publish(
            "room:lobby",
            orjson.dumps({"text": f"meanwhile {i}"}),
            history_size=ROOMS.history_size,
            history_ttl=0,
        )
        await broker.publish(
            "feed:news",
            orjson.dumps({"text": f"f{i + 1}"}),
            history_size=FEED.history_size,
            history_ttl=0,
        )
    await asyncio.sleep(0.3)  # the page keeps failing to reconnect meanwhile
    assert harness.ws_handshakes() == 1

    await harness.start(broker=broker, port=port)
    await page.wait_for_function(
        "() => window.wsguardTest.record.recovered.length === 2", timeout=10_000
    )
    for i in range(2):
        published = await call(
            page, "(t, text) => t.client.publish('room:lobby', {text})", f"after {i}"
        )
        assert published == {"ok": True, "value": {"epoch": epoch, "offset": 9 + i}}
    await page.wait_for_function(
        "() => window.wsguardTest.record.received.length >= 13", timeout=10_000
    )
    await asyncio.sleep(0.2)  # a duplicate would arrive now
    record = await page.evaluate(RECORD)
    texts = [f"before {i}" for i in range(3)]
    texts += [f"meanwhile {i}" for i in range(5)]
    texts += [f"after {i}" for i in range(2)]
    assert [r for r in record["received"] if r["channel"] == "room:lobby"] == [
        {"channel": "room:lobby", "epoch": epoch, "offset": n, "data": {"text": text}}
        for n, text in enumerate(texts, start=1)
    ]
    # The feed's history held only its last two publications: f1..f3 are lost, and said so.
    assert [
        (r["offset"], r["data"]["text"]) for r in record["received"] if r["channel"] == "feed:news"
    ] == [(1, "f0"), (5, "f4"), (6, "f5")]
    assert sorted(record["recovered"], key=lambda r: r["channel"]) == [
        {"channel": "feed:news", "complete": False, "epoch": feed_epoch, "offset": 6},
        {"channel": "room:lobby", "complete": True, "epoch": epoch, "offset": 8},
    ]
    assert record["gaps"] == [{"channel": "feed:news", "epoch": feed_epoch, "offset": 6}]
    # The server's going-away close, then connection refused (1006) while it was down.
    assert record["closed"][0] == {"code": 1001, "reason": "going away", "reconnect": True}
    assert all(c == {"code": 1006, "reason": "", "reconnect": True} for c in record["closed"][1:])
    assert record["states"] == ["connecting", "open", "reconnecting", "open"]
    [first, second] = record["welcomes"]
    assert first["client"] != second["client"]
    # A fresh ticket for every attempt: one per refused attempt and one for the new server.
    assert harness.calls == [("alice", "ticket")] * (len(record["closed"]) + 1)
    assert record["errors"] == []
    assert errors == []


# ---------------------------------------------------------------- revocation


async def test_revoked_user_gets_4403_and_the_client_stops_reconnecting(browser, harness):
    errors: list[str] = []
    server = await harness.start()
    page = await harness.open(browser, errors=errors)
    await page.evaluate("() => window.wsguardTest.subscribe('room:lobby')")
    # A request in flight when the socket closes.
    await page.evaluate(
        "() => { window.inFlight = window.wsguardTest.outcome("
        "window.wsguardTest.client.rpc('slow')); }"
    )
    await asyncio.sleep(0.1)
    handshakes = harness.ws_handshakes()
    assert handshakes == 1

    assert await server.revoke("alice") == 1
    await page.wait_for_function(
        "() => window.wsguardTest.client.state === 'closed'", timeout=10_000
    )
    assert await page.text_content("#status") == "closed 4403 revoked"
    assert await page.evaluate("() => window.inFlight") == {
        "ok": False,
        "wsguardError": True,
        "code": 0,
        "reason": "disconnected",
    }
    await asyncio.sleep(2)  # no reconnect attempt in this time
    record = await page.evaluate(RECORD)
    assert record["closed"] == [{"code": 4403, "reason": "revoked", "reconnect": False}]
    assert record["states"] == ["connecting", "open", "closed"]
    assert harness.ws_handshakes() == handshakes
    assert harness.calls == [("alice", "ticket")]
    assert server.connections == 0
    # A closed client refuses requests at once.
    assert await call(page, "(t) => t.client.ping()") == refused(0, "closed")
    assert errors == []


# ---------------------------------------------------------------- credential refresh


async def test_expiring_jwt_is_refreshed_on_the_same_socket(browser, harness):
    errors: list[str] = []
    harness.token_lifetime = 2.5
    harness.failing_users = {"bob"}
    await harness.start(
        auth={
            "required": True,
            "methods": ("jwt",),
            "jwt": JwtConfig(secret_env="JWT_SECRET"),
            "expiring_notice": 1.5,
            "expiry_grace": 0.5,
        }
    )
    started = time.monotonic()
    alice = await harness.open(browser, "auth=token&user=alice", errors)
    bob = await harness.open(browser, "auth=token&user=bob", errors)

    # Bob's provider fails on refresh: reported, and the socket lasts until the server closes
    # it 4401 (the token's expiry plus the grace), without a reconnect.
    await bob.wait_for_function(
        "() => window.wsguardTest.client.state === 'closed'", timeout=10_000
    )
    bob_record = await bob.evaluate(RECORD)
    assert bob_record["errors"] == [{"code": 0, "reason": "credential"}]
    assert [e["in"] > 0 for e in bob_record["expiring"]] == [True]
    assert bob_record["closed"] == [
        {"code": 4401, "reason": "credential expired", "reconnect": False}
    ]
    assert bob_record["states"] == ["connecting", "open", "closed"]

    # Alice's first token has expired (and its grace passed) by now: she is still connected.
    await asyncio.sleep(max(0.0, started + 3.5 - time.monotonic()))
    whoami = await call(alice, "(t) => t.client.rpc('whoami')")
    assert whoami["ok"] is True
    record = await alice.evaluate(RECORD)
    [welcome] = record["welcomes"]
    assert whoami["value"] == {"user": "alice", "client": welcome["client"], "echo": None}
    assert (welcome["user"], welcome["auth"]) == ("alice", "jwt")
    assert record["closed"] == []
    assert record["states"] == ["connecting", "open"]
    assert record["errors"] == []
    assert len(record["expiring"]) >= 2
    # One token per connect and per expiring push (a push just read may still be fetching).
    for _ in range(20):
        expiring = len((await alice.evaluate(RECORD))["expiring"])
        alice_calls = [c for c in harness.calls if c[0] == "alice"]
        if len(alice_calls) == 1 + expiring:
            break
        await asyncio.sleep(0.05)
    assert alice_calls == [("alice", "token")] * (1 + expiring)
    assert harness.ws_handshakes() == 2
    assert errors == []


# ---------------------------------------------------------------- errors


async def test_rejections_carry_the_server_code_and_reason_and_timeouts_are_local(browser, harness):
    errors: list[str] = []
    await harness.start()
    page = await harness.open(browser, "timeout=0.5", errors)
    outcomes = {
        "read-only": "(t) => t.client.publish('ticker:ACME', {price: 1})",
        "unknown channel": "(t) => t.client.subscribe('nowhere:x', () => {})",
        "unknown method": "(t) => t.client.rpc('no.such.method')",
        "app error": "(t) => t.client.rpc('app.denies')",
    }
    results = {name: await call(page, script) for name, script in outcomes.items()}
    assert results == {
        "read-only": refused(403, "forbidden"),
        "unknown channel": refused(404, "unknown_channel"),
        "unknown method": refused(404, "unknown_method"),
        "app error": refused(403, "not_yours"),
    }
    message = await page.evaluate(
        "() => window.wsguardTest.client.rpc('app.denies').catch((error) => error.message)"
    )
    assert message == "that order is not yours"
    # Twice the same channel is refused by the client itself.
    assert (await call(page, "(t) => t.client.subscribe('room:a', () => {})"))["ok"] is True
    assert await call(page, "(t) => t.client.subscribe('room:a', () => {})") == refused(
        0, "already_subscribed"
    )
    # The handler takes 3 s, the page waits 0.5 s. (The server answers one connection's
    # requests in order: this one goes last.)
    started = time.monotonic()
    assert await call(page, "(t) => t.client.rpc('slow')") == refused(0, "timeout")
    assert 0.4 < time.monotonic() - started < 2
    record = await page.evaluate(RECORD)
    assert record["states"] == ["connecting", "open"]
    assert record["closed"] == []
    assert errors == []


# ---------------------------------------------------------------- no markup, no eval


def test_wsguard_js_never_builds_markup_or_evaluates_strings():
    source = resources.files("wsguard.static").joinpath("wsguard.js").read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
        "setTimeout('",
    ):
        assert sink not in source, sink
    assert "textContent" in source
