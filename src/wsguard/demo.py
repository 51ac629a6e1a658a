"""`wsguard demo`: the secure defaults shown to a newcomer in one command.

Starts the wsguard listener on 127.0.0.1 with a live chat (``chat:lobby``) and a ticker feed the
server pushes (``ticker:ACME``, ``ticker:GLOBEX``), served from its own (allowed) origin, and a
second site on the next port, a different origin, whose page runs the Cross-Site WebSocket
Hijacking script of the OWASP guidance against the server and shows it being refused.

Authentication stays required: demo users get single-use tickets from ``GET /demo/ticket``, an
endpoint that exists only while the demo runs (``running_demo`` adds it; ``Server`` never has
it). Every relaxation of the production defaults is in ``demo_settings``, each one commented.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from websockets.http11 import Response

from wsguard.audit import AuditLog
from wsguard.core.upgrade import UpgradeRequest
from wsguard.exceptions import ConfigError, ReplyError
from wsguard.server.lifecycle import Server, configure_logging
from wsguard.server.responses import Page, StaticPage, json_response
from wsguard.settings import AuthConfig, ChannelConfig, LogConfig, ServerConfig, Settings

__all__ = [
    "CHAT_CHANNEL",
    "TICKER_SYMBOLS",
    "TICKET_PATH",
    "RunningDemo",
    "TicketEndpoint",
    "attacker_pages",
    "demo_pages",
    "demo_settings",
    "run_demo",
    "run_ticker",
    "running_demo",
    "start_static_site",
]

log = logging.getLogger("wsguard.demo")

CHAT_CHANNEL = "chat:lobby"
CHAT_SCHEMA = "demo-chat.schema.json"
TICKET_PATH = "/demo/ticket"
# Opening prices of the simulated feed.
TICKER_SYMBOLS: Mapping[str, float] = {"ACME": 102.40, "GLOBEX": 57.15}

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
_DEMO_USER = re.compile(r"[a-z0-9]{1,16}")


def _page(name: str) -> StaticPage:
    body = resources.files("wsguard.static").joinpath(name).read_bytes()
    return body, _TYPES[name[name.rindex(".") :]]


def demo_pages() -> dict[str, Page]:
    """The static pages the wsguard listener serves in demo mode (the ticket endpoint is added
    by ``running_demo`` only)."""
    return {"/": _page("demo.html"), "/demo.js": _page("demo.js"), "/demo.css": _page("demo.css")}


def attacker_pages() -> dict[str, Page]:
    """The pages of the foreign (attacker) origin."""
    return {
        "/": _page("attacker.html"),
        "/attacker.js": _page("attacker.js"),
        "/demo.css": _page("demo.css"),
    }


def _packaged_schema() -> str:
    # An installed wsguard is a directory on disk; running_demo uses resources.as_file, which
    # also covers a zipped install.
    return str(resources.files("wsguard.static").joinpath(CHAT_SCHEMA))


def demo_settings(port: int = 8765, chat_schema: str | Path | None = None) -> Settings:
    """The demo's configuration: the production defaults plus the relaxations listed here.

    Args:
        port: the listener's port (0: any free one).
        chat_schema: path of the chat's JSON Schema (default: the packaged
            ``demo-chat.schema.json``).
    """
    schema = str(chat_schema) if chat_schema is not None else _packaged_schema()
    return dataclasses.replace(
        Settings(),
        # Relaxation: a fixed loopback port a newcomer can type (the default is 8080). Loopback
        # only, so plain ws:// is allowed without allow_plaintext (the production rule).
        server=ServerConfig(host="127.0.0.1", port=port),
        # Not a relaxation: authentication stays required. Only tickets (no JWT secret to set
        # up); the demo mints them for any name at /demo/ticket, which only the demo serves.
        auth=AuthConfig(required=True, methods=("ticket",)),
        # Relaxation: human-readable log lines in the terminal instead of JSON lines.
        log=LogConfig(format="text"),
        channels=(
            ChannelConfig(
                pattern=CHAT_CHANNEL,
                subscribe=("authenticated",),
                publish=("authenticated",),
                history=("authenticated",),
                presence=("authenticated",),
                # {"text": string of 1..500}, nothing else: anything more is refused with 422.
                schema=schema,
                # Stored XSS: every string is HTML-escaped once, before fan-out.
                encode="html",
                # Relaxation: the default keeps no history; a chat shows its last lines.
                history_size=50,
            ),
            # Read-only for clients: only the server's ticker task publishes (publish granted
            # to nobody, so a client's publish is refused with 403).
            ChannelConfig(pattern="ticker:*", subscribe=("anonymous",)),
            # A user's private channel: "owner" means user:alice is alice's alone.
            ChannelConfig(pattern="user:*", subscribe=("owner",)),
        ),
    )


def _error(status: int, reason: str, message: str) -> Response:
    body = {"error": {"code": status, "reason": reason, "message": message}}
    return json_response(status, orjson.dumps(body))


class TicketEndpoint:
    """``GET /demo/ticket?user=NAME``: a single-use ticket for NAME, for the demo page only.

    It answers before the handshake pipeline's Host check (it is a page), so it does its own:
    the Host must be this listener by a loopback name (DNS rebinding), the request must come
    from the demo page itself (``Sec-Fetch-Site: same-origin``, or no such header from a
    non-browser client) and, when it carries an Origin, carry the page's own. The ticket is
    bound to that origin, so it opens a socket only from the demo page. Anyone on this machine
    may pick any name: that is the demo's point, and why the endpoint exists only in demo mode.

    Call ``bind(server)`` once the server is listening (its port is part of the origin).
    """

    def __init__(self) -> None:
        self._server: Server | None = None

    def bind(self, server: Server) -> None:
        self._server = server

    def __call__(self, request: UpgradeRequest) -> Response:
        server = self._server
        if server is None:
            return _error(503, "unavailable", "the demo is starting")
        if request.method != "GET":
            return _error(405, "method_not_allowed", "use GET")
        origin = _page_origin(request, server.port)
        if isinstance(origin, _Refusal):
            log.warning(
                "demo ticket refused: 403 %s (Origin %s, Sec-Fetch-Site %s)",
                origin.reason,
                request.headers.get("Origin"),
                request.headers.get("Sec-Fetch-Site"),
            )
            return _error(403, "forbidden", "tickets are for the demo page only")
        user = _demo_user(request.query)
        if user is None:
            return _error(400, "bad_user", "user must be 1 to 16 characters a-z, 0-9")
        ticket = server.mint_ticket(user, origin)
        log.info("demo ticket minted for %s at %s", user, origin)
        return json_response(200, orjson.dumps({"ticket": ticket}))


@dataclasses.dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str


def _page_origin(request: UpgradeRequest, port: int) -> str | _Refusal:
    """The demo page's origin this request comes from, or why it is refused."""
    headers = request.headers
    hosts = headers.get_all("Host")
    if len(hosts) != 1 or hosts[0] not in (f"127.0.0.1:{port}", f"localhost:{port}"):
        return _Refusal("host_not_allowed")
    origin = f"http://{hosts[0]}"
    # Fetch Metadata: a browser says where the request comes from; only the page itself may
    # ask. A client without the header is not a browser page, so it cannot be hijacked.
    if headers.get_all("Sec-Fetch-Site") not in ((), ("same-origin",)):
        return _Refusal("cross_site")
    if headers.get_all("Origin") not in ((), (origin,)):
        return _Refusal("origin_not_allowed")
    return origin


def _demo_user(query: str) -> str | None:
    try:
        fields = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    if len(fields) != 1 or fields[0][0] != "user":
        return None
    user = fields[0][1]
    return user if _DEMO_USER.fullmatch(user) else None


async def run_ticker(
    server: Server,
    symbols: Mapping[str, float] = TICKER_SYMBOLS,
    interval: float = 1.0,
    rng: random.Random | None = None,
) -> None:
    """Publish a price tick ``{"symbol", "price", "change", "ts"}`` to ``ticker:SYMBOL`` for
    every symbol each ``interval`` seconds, prices following a random walk. Runs until
    cancelled; a refused publication is logged and the feed goes on."""
    rng = rng or random.Random()  # noqa: S311 - simulated prices, not secrets
    prices = dict(symbols)
    while True:
        for symbol, price in prices.items():
            # A multiplicative step keeps the price positive; 0.2% volatility per tick.
            new_price = max(0.01, round(price * math.exp(rng.gauss(0.0, 0.002)), 2))
            prices[symbol] = new_price
            tick = {
                "symbol": symbol,
                "price": new_price,
                "change": round(new_price - price, 2),
                "ts": round(time.time(), 3),
            }
            try:
                await server.publish(f"ticker:{symbol}", tick)
            except ReplyError as exc:
                log.warning("ticker: publication to ticker:%s refused: %s", symbol, exc)
        await asyncio.sleep(interval)


async def start_static_site(pages: Mapping[str, Page], port: int) -> web.AppRunner:
    """A minimal static site on 127.0.0.1 (the attacker's origin), on aiohttp. Stop it with
    ``await runner.cleanup()``."""

    async def handler(request: web.Request) -> web.Response:
        page = pages.get(request.path)
        if not isinstance(page, tuple):
            return web.Response(status=404, text="404 Not Found\n")
        body, content_type = page
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError("--port", f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    return runner


@dataclasses.dataclass(frozen=True, slots=True)
class RunningDemo:
    """A running demo: the wsguard server (the app's origin) and the attacker site's port."""

    server: Server
    attacker_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"

    @property
    def attacker_url(self) -> str:
        return f"http://127.0.0.1:{self.attacker_port}/"


@contextlib.asynccontextmanager
async def running_demo(
    port: int = 8765,
    *,
    attacker_port: int | None = None,
    ticker_interval: float = 1.0,
    audit: AuditLog | None = None,
) -> AsyncIterator[RunningDemo]:
    """Run the whole demo in the current event loop: the server with the demo pages and the
    ticket endpoint, the ticker feed, and the attacker site (on ``attacker_port``, by default
    the server's port + 1)."""
    with resources.as_file(resources.files("wsguard.static").joinpath(CHAT_SCHEMA)) as schema:
        settings = demo_settings(port, chat_schema=schema)
        # A fresh secret per run: the demo's tickets are worthless anywhere else.
        env = {settings.auth.ticket.secret_env: secrets.token_urlsafe(48)}
        endpoint = TicketEndpoint()
        pages = {**demo_pages(), TICKET_PATH: endpoint}
        async with Server(settings, pages=pages, env=env, audit=audit) as server:
            endpoint.bind(server)
            ticker = asyncio.create_task(run_ticker(server, interval=ticker_interval))
            attacker = await start_static_site(
                attacker_pages(), server.port + 1 if attacker_port is None else attacker_port
            )
            try:
                sockets = attacker.addresses
                yield RunningDemo(server, sockets[0][1])
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                await attacker.cleanup()


def run_demo(port: int = 8765) -> int:
    """Run the demo until Ctrl-C. Returns the exit code."""
    configure_logging(demo_settings(port))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running_demo(port) as demo:
            print(
                f"\nwsguard demo running. Open in a browser:\n"
                f"  the app (allowed origin):      {demo.url}\n"
                f"  the attacker (foreign origin): {demo.attacker_url}\n"
                f"Open the app in two windows (two names) to chat. Audit log lines appear\n"
                f"below. Ctrl-C to stop.\n",
                flush=True,
            )
            await stop.wait()

    asyncio.run(main())
    return 0
