"""A bare aiohttp WebSocket echo on 127.0.0.1:PORT/ws, with aiohttp's defaults: a scan target.

Run: ``python aiohttp_echo.py --port N [--compress]``. Echo: each text message comes back as
the same text, each binary message as the same bytes.

SEEDED weaknesses (what a scanner should report):

- Cross-Site WebSocket Hijacking: no Origin check at all; any Origin (``https://evil.test``,
  ``null``) and a missing Origin all get 101.
- Host spoofing: any Host header is accepted (no allow-list; DNS rebinding works).
- Plaintext: ``ws://`` only, no TLS.
- No authentication: anyone who can connect gets an echo socket.
- Loose limits: aiohttp's default ``max_msg_size`` of 4 MiB (4194304 bytes) per message, no
  rate limit, no connection limit, no idle timeout.
- Version disclosure: aiohttp's default ``Server: Python/3.x aiohttp/3.x`` header.
- Reflected input: whatever is sent comes back verbatim (``<script>`` included).
- Compression: only with ``--compress`` (``WebSocketResponse(compress=True)``): then
  permessage-deflate is accepted whenever a client offers it. Without the flag this script
  passes ``compress=False``. NOTE: aiohttp's own default is ``compress=True``; the flag exists
  so that the tests can have an aiohttp target with and without compression.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo_socket(request: web.Request, *, compress: bool) -> web.WebSocketResponse:
    """Upgrade ``request`` and echo every message (the other aiohttp targets use it too)."""
    ws = web.WebSocketResponse(compress=compress)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def make_app(compress: bool) -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        return await echo_socket(request, compress=compress)

    app = web.Application()
    app.router.add_get("/ws", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--compress", action="store_true", help="offer permessage-deflate")
    args = parser.parse_args()
    web.run_app(
        make_app(args.compress), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
