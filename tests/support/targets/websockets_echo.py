"""An echo server built on ``websockets.asyncio.server.serve`` with its defaults: a scan target.

Run: ``python websockets_echo.py --port N``. Listens on 127.0.0.1:N; the path is /ws (the
defaults accept every path; /ws is the one the tests use). Echo: each text message comes back
as the same text, each binary message as the same bytes.

SEEDED weaknesses (what a scanner should report):

- Cross-Site WebSocket Hijacking: ``origins`` is not set, so any Origin (``https://evil.test``,
  ``null``) and a missing Origin all get 101.
- Host spoofing: any Host header is accepted.
- Plaintext: ``ws://`` only, no TLS.
- No authentication.
- Loose limits: the default ``max_size`` of 1 MiB (1048576 bytes) per message, no rate limit,
  no connection limit.
- Compression: ``compression="deflate"`` is the library default, so permessage-deflate is
  negotiated whenever a client offers it.
- Version disclosure: the default ``Server: Python/3.x websockets/17.x`` header.
- Reflected input: whatever is sent comes back verbatim.
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)  # str stays a text frame, bytes a binary frame


async def run(port: int) -> None:
    async with serve(echo, "127.0.0.1", port) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(run(args.port))


if __name__ == "__main__":
    main()
