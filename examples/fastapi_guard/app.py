"""A FastAPI chat/echo app that checks nothing itself, protected by ``wsguard.asgi.Guard``.

Run (from the repository root)::

    uvicorn examples.fastapi_guard.app:app          # or: hypercorn examples.fastapi_guard.app:app

then open http://127.0.0.1:8000/. The page fetches a ticket from ``POST /ticket`` and connects to
``/ws?ticket=...``. The guard refuses a foreign Origin (403), a missing or replayed ticket (401)
and a message over 4096 bytes (close 1009) before the endpoint below runs; see
``wsguard.toml`` next to this file and docs/howto/protect-an-asgi-app.md.

The ticket secret comes from ``WSGUARD_TICKET_SECRET`` (32+ bytes). When it is unset, this
example makes up one for the process (fine for one dev process, wrong for several workers).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from wsguard.asgi import PRINCIPAL_KEY, Guard
from wsguard.tickets import mint

if len(os.environ.get("WSGUARD_TICKET_SECRET", "")) < 32:
    os.environ["WSGUARD_TICKET_SECRET"] = secrets.token_urlsafe(48)

PAGE = """<!doctype html>
<meta charset="utf-8"><title>wsguard + FastAPI</title>
<p>Messages echo back below.</p>
<input id="text" value="hello"><button id="send">send</button>
<pre id="log"></pre>
<script type="module">
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const {ticket} = await (await fetch("/ticket", {method: "POST"})).json();
const ws = new WebSocket(`ws://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
ws.onmessage = (event) => log(event.data);
ws.onclose = (event) => log(`closed ${event.code}`);
document.getElementById("send").onclick = () => ws.send(document.getElementById("text").value);
</script>
"""

fastapi_app = FastAPI()


@fastapi_app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)


@fastapi_app.post("/ticket")
async def ticket(request: Request) -> dict[str, str]:
    # A real app mints for its logged-in user (session-protected endpoint); the ticket is bound
    # to the page's origin, which here is this app's own address.
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return {"ticket": mint(f"guest-{secrets.token_hex(4)}", origin)}


@fastapi_app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    # No Origin, auth or size checks here: the guard did them. It also says who this is.
    user = websocket.scope[PRINCIPAL_KEY].user_id
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{user}: {text}")
    except WebSocketDisconnect:
        pass


app = Guard(fastapi_app, Path(__file__).with_name("wsguard.toml"))
