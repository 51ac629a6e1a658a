"""A FastAPI ``@app.websocket("/ws")`` echo under uvicorn, with no checks: a scan target.

Run: ``python fastapi_echo.py --port N``. Listens on 127.0.0.1:N/ws (uvicorn started
programmatically, ``log_level="warning"``). Echo: each text message comes back as the same
text, each binary message as the same bytes.

SEEDED weaknesses (what a scanner should report):

- Cross-Site WebSocket Hijacking: no Origin check; any Origin (``https://evil.test``, ``null``)
  and a missing Origin all get 101 (FastAPI's CORS middleware would not apply to WebSockets
  anyway).
- Host spoofing: any Host header is accepted (no TrustedHostMiddleware).
- Plaintext: ``ws://`` only, no TLS.
- No authentication.
- Loose limits: uvicorn's default ``ws_max_size`` of 16 MiB (16777216 bytes), no rate limit,
  no connection limit.
- Compression: uvicorn's default ``ws_per_message_deflate=True``, so permessage-deflate is
  negotiated whenever a client offers it.
- Reflected input: whatever is sent comes back verbatim.

Note: uvicorn's default ``server_header=True`` sends ``Server: uvicorn`` (no version number)
on HTTP responses; whether it reaches the 101 depends on the WebSocket implementation uvicorn
picks (websockets or wsproto).
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            elif message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
