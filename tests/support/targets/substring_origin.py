"""An aiohttp echo whose Origin check is a SUBSTRING match: a scan target.

Run: ``python substring_origin.py --port N``. Listens on 127.0.0.1:N/ws. Echo: each text
message comes back as the same text, each binary message as the same bytes.

The check: HTTP 403 unless ``"app.example.com" in origin``; a missing Origin is 403 too. The
trusted page is ``https://app.example.com``, and it gets 101. So a scanner sending only
``https://evil.test`` (403) or no Origin (403) sees a server that checks Origin.

SEEDED weaknesses (what a scanner should report):

- Cross-Site WebSocket Hijacking through the substring match; all of these get 101:
  ``https://app.example.com.evil.test`` (suffix appended), ``https://evilapp.example.com``
  (prefix glued on), ``http://app.example.com`` (scheme flip), ``https://app.example.com:9999``
  (other port), ``https://evil.test/?app.example.com`` or any Origin containing the string.
  (``null`` and ``https://evil.test`` get 403.)
- Host spoofing: any Host header is accepted.
- Plaintext: ``ws://`` only, no TLS.
- No authentication.
- Loose limits: aiohttp's default ``max_msg_size`` of 4 MiB, no rate or connection limits.
- Version disclosure: aiohttp's default ``Server: Python/3.x aiohttp/3.x`` header.
- Reflected input: whatever is sent comes back verbatim.

Compression is off (aiohttp's default for WebSocketResponse is compress=True, so it is
switched off explicitly here).
"""

from __future__ import annotations

import argparse

from aiohttp import web
from aiohttp_echo import echo_socket  # a sibling script: its folder is on sys.path

TRUSTED = "app.example.com"


async def echo(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin", "")
    if TRUSTED not in origin:  # the bug: a substring test instead of an exact comparison
        return web.Response(status=403, text="origin not allowed\n")
    return await echo_socket(request, compress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/ws", echo)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
