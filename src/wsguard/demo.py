"""`wsguard demo`: the secure defaults shown to a newcomer in one command.

Starts the wsguard listener on 127.0.0.1 serving a demo page from its own (allowed) origin, and
a second site on the next port, a different origin, whose page runs the Cross-Site WebSocket
Hijacking script of the OWASP guidance against the server and shows it being refused.

The demo relaxes exactly one default, explicitly: ``auth.required = false`` (anonymous), because
the demo's point here is the Origin/Host wall. Everything else is the production default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import signal
from importlib import resources

from aiohttp import web

from wsguard.exceptions import ConfigError
from wsguard.server.lifecycle import Server, configure_logging
from wsguard.server.responses import Page
from wsguard.settings import AuthConfig, LogConfig, ServerConfig, Settings

__all__ = ["demo_settings", "run_demo"]

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


def _page(name: str) -> Page:
    body = resources.files("wsguard.static").joinpath(name).read_bytes()
    return body, _TYPES[name[name.rindex(".") :]]


def demo_pages() -> dict[str, Page]:
    """The pages the wsguard listener serves in demo mode."""
    return {"/": _page("demo.html"), "/demo.js": _page("demo.js"), "/demo.css": _page("demo.css")}


def attacker_pages() -> dict[str, Page]:
    """The pages of the foreign (attacker) origin."""
    return {
        "/": _page("attacker.html"),
        "/attacker.js": _page("attacker.js"),
        "/demo.css": _page("demo.css"),
    }


def demo_settings(port: int = 8765) -> Settings:
    return dataclasses.replace(
        Settings(),
        server=ServerConfig(host="127.0.0.1", port=port),
        auth=AuthConfig(required=False, methods=("ticket",)),
        log=LogConfig(format="text"),
    )


async def start_static_site(pages: dict[str, Page], port: int) -> web.AppRunner:
    """A minimal static site on 127.0.0.1 (the attacker's origin), on aiohttp. Stop it with
    ``await runner.cleanup()``."""

    async def handler(request: web.Request) -> web.Response:
        page = pages.get(request.path)
        if page is None:
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


def run_demo(port: int = 8765) -> int:
    """Run the demo until Ctrl-C. Returns the exit code."""
    settings = demo_settings(port)
    configure_logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A fresh secret per run: the demo's tickets are worthless anywhere else.
        env = {settings.auth.ticket.secret_env: secrets.token_urlsafe(48)}
        async with Server(settings, pages=demo_pages(), env=env) as server:
            attacker = await start_static_site(attacker_pages(), server.port + 1)
            print(
                f"\nwsguard demo running. Open in a browser:\n"
                f"  the app (allowed origin):      http://127.0.0.1:{server.port}/\n"
                f"  the attacker (foreign origin): http://127.0.0.1:{server.port + 1}/\n"
                f"Audit log lines appear below. Ctrl-C to stop.\n",
                flush=True,
            )
            await stop.wait()
            await attacker.cleanup()

    asyncio.run(main())
    return 0
