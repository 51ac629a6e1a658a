"""Echo (+ broadcast) WebSocket servers, one engine per process, for benchmarking.

Every server listens on 127.0.0.1:PORT only:
  /echo   echo every text/binary message back (text is decoded to str first, i.e. UTF-8 is
          validated, as an application would do)
  /bcast  subscriber connection; a text message "BCAST <K> [<B>]" received on any /bcast
          connection makes the server fan out K rounds of one 100-byte text message to every
          connected /bcast client, yielding to the event loop after every B-th round (B
          defaults to 1: one publication per loop pass). Not served by the wsguard (echo-mode)
          engine.
  wsguard-full serves its wire protocol on /ws instead (rpc `echo`, rpc `bench.bcast`, channel
  `bench:fanout`); socketio serves Engine.IO v4 on /socket.io/ (events `echo`, `bcast`).

Usage: python servers.py --engine ENGINE --port PORT [--loop asyncio|uvloop] [--workers N]
Engines:
  wsguard     the real wsguard listener in echo mode (server.echo = true), in-process
  wsguard-full  wsguard in protocol mode with its full secure configuration (Host and Origin
              allow-lists, JWT authentication required, rate limits on, JSON decoding,
              authorization and a JSON Schema on every message); see wsguard_full_settings
  websockets  websockets' own asyncio server
  ws-sansio   websockets' Sans-I/O core + a minimal asyncio.Protocol (research prototype)
  picows      picows (Cython), aiofastnet off
  aiohttp     aiohttp's web server
  socketio    python-socketio AsyncServer (async_mode="aiohttp") on an aiohttp web app
  fastapi     FastAPI @app.websocket endpoints under uvicorn (uvicorn's defaults)
  wsguard-redis  `wsguard serve` with --workers N on the Redis broker (127.0.0.1:6379), the
              full configuration, publishing allowed on bench:* (no rpc: clients publish)
The process prints "LISTENING" (wsguard-redis: "wsguard listening on port P") on stdout once
it accepts connections.
Stop it with SIGTERM/SIGINT; it exits after --max-lifetime seconds anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading

HOST = "127.0.0.1"
PAYLOAD_100 = "b" * 100
MAX_SIZE = 1 << 20  # 1 MiB message limit everywhere, for parity


def parse_bcast(text):
    """(K, B) from "BCAST <K> [<B>]": K rounds, a loop pass every B rounds (B defaults to 1).

    K is 0 when malformed; B is clamped to 1..1000."""
    parts = text.split()
    try:
        k = int(parts[1])
        b = int(parts[2]) if len(parts) > 2 else 1
    except (IndexError, ValueError):
        return 0, 1
    return k, max(1, min(1000, b))


def ready():
    print("LISTENING", flush=True)


def install_lifetime_guard(seconds):
    """Hard stop so that a forgotten server never outlives the benchmark."""

    def _kill():
        os._exit(3)

    t = threading.Timer(seconds, _kill)
    t.daemon = True
    t.start()


def new_loop(kind):
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_asyncio_main(main_coro_factory, loop_kind):
    loop = new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()

    async def runner():
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await main_coro_factory(stop)

    try:
        loop.run_until_complete(runner())
    finally:
        loop.close()


# ---------------------------------------------------------------- wsguard
def run_aiohttp_app(app, port, loop_kind):
    """Serve an aiohttp application on HOST:port until stopped (no access log, no signals)."""
    from aiohttp import web

    async def main(stop):
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        ready()
        await stop.wait()
        await runner.cleanup()

    run_asyncio_main(main, loop_kind)


def wsguard_settings(port):
    """wsguard's secure defaults, relaxed only where an engine benchmark needs it."""
    from wsguard.testing import loopback_settings

    return loopback_settings(
        server={"host": HOST, "port": port, "echo": True, "ws_path": "/echo"},
        # The benchmark measures the engine; auth arrives in a later issue.
        auth={"required": False},
        # The raw bench client sends no Origin header.
        origins={"allow_missing": True},
        limits={
            "max_message_bytes": MAX_SIZE,
            "max_connections": 20000,
            "max_connections_per_ip": 20000,
            "handshake_rate": 1e9,
            "handshake_burst": int(1e9),
            # The echo tests send ~100k+ msg/s per connection by design.
            "messages_per_second": 1e9,
            "burst": int(1e9),
            "idle_timeout": 3600,
            "ping_interval": 20,
        },
    )


def serve_wsguard(port, loop_kind):
    from wsguard.server.lifecycle import Server

    settings = wsguard_settings(port)

    async def main(stop):
        async with Server(settings):
            ready()
            await stop.wait()

    run_asyncio_main(main, loop_kind)


# ---------------------------------------------------------------- wsguard, full configuration
# The environment variable holding the HS256 secret (run_bench.py generates one per run and
# hands it to the server and the clients; the client mints its token with it).
JWT_SECRET_ENV = "WSGUARD_BENCH_JWT_SECRET"  # noqa: S105 - a variable name
JWT_AUDIENCE = "wsguard-bench"
JWT_ISSUER = "wsguard-bench"
BENCH_CHANNEL = "bench:fanout"
# Every echo request's data must match this (strict: one bounded string, nothing else).
ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 1024}},
    "required": ["text"],
    "additionalProperties": False,
}
BCAST_SCHEMA = {
    "type": "object",
    "properties": {
        "k": {"type": "integer", "minimum": 1, "maximum": 100000},
        "b": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    "required": ["k"],
    "additionalProperties": False,
}
# Every publication on bench:* must match this (the channel's inbound schema; it also applies
# to the server's own publish).
PUBLICATION_SCHEMA = {"type": "string", "maxLength": 100}
# Rate limits stay ON, set high enough not to trip at benchmark rates: the echo tests drive
# ~100k msg/s of 64-byte requests over 1-64 connections, all of ONE user.
FULL_LIMITS = {
    "max_message_bytes": MAX_SIZE,
    "messages_per_second": 1e6,
    "burst": 1_000_000,
    "bytes_per_second": 1 << 30,
    "user_messages_per_second": 1e6,
    "user_burst": 1_000_000,
    "user_bytes_per_second": 1 << 30,
    "max_connections": 20000,
    "max_connections_per_ip": 20000,
    "max_connections_per_user": 20000,
    "handshake_rate": 1e6,
    "handshake_burst": 1_000_000,
    "idle_timeout": 3600,
    "ping_interval": 20,
}


def wsguard_full_settings(port, schema_path):
    """wsguard's secure defaults; only the limits above are raised (TLS off: loopback)."""
    from wsguard.settings import ChannelConfig, JwtConfig
    from wsguard.testing import loopback_settings

    return loopback_settings(
        server={"host": HOST, "port": port, "ws_path": "/ws"},
        origins={
            "allowed_hosts": (f"{HOST}:{port}",),
            "allowed": (f"http://{HOST}:{port}",),
            "allow_missing": False,
        },
        auth={
            "required": True,
            "methods": ("jwt",),
            "jwt": JwtConfig(
                algorithms=("HS256",),
                secret_env=JWT_SECRET_ENV,
                audience=JWT_AUDIENCE,
                issuer=JWT_ISSUER,
            ),
        },
        limits=FULL_LIMITS,
        channels=[
            ChannelConfig(pattern="bench:*", subscribe=("authenticated",), schema=schema_path)
        ],
    )


@contextlib.contextmanager
def publication_schema_file(engine):
    """The path of PUBLICATION_SCHEMA in a temporary file, for the channel rule (deleted on exit);
    first, a clear exit when the JWT secret the full configuration verifies with is missing."""
    import json
    import tempfile

    if not os.environ.get(JWT_SECRET_ENV):
        sys.exit(f"{engine} needs the HS256 secret in ${JWT_SECRET_ENV} (run_bench sets it)")
    with tempfile.NamedTemporaryFile(
        "w", prefix="wsguard-bench-", suffix=".json", delete=False
    ) as f:
        json.dump(PUBLICATION_SCHEMA, f)
    try:
        yield f.name
    finally:
        os.unlink(f.name)


def serve_wsguard_full(port, loop_kind):
    from wsguard.server.lifecycle import Server

    with publication_schema_file("wsguard-full") as schema_path:
        settings = wsguard_full_settings(port, schema_path)
        tasks = set()

        async def main(stop):
            server = Server(settings)

            @server.rpc("echo", allow=("authenticated",), schema=ECHO_SCHEMA)
            async def echo(ctx, data):
                return data

            async def fanout(k, b):
                for i in range(k):
                    await server.publish(BENCH_CHANNEL, PAYLOAD_100)
                    if (i + 1) % b == 0:
                        await asyncio.sleep(0)

            # "BCAST K B" for this config: {"op":"rpc","method":"bench.bcast",
            # "data":{"k":K,"b":B}} (b optional, 1); the reply comes at once, the K rounds run
            # in a task (B publications per loop pass).
            @server.rpc("bench.bcast", allow=("authenticated",), schema=BCAST_SCHEMA)
            async def bcast(ctx, data):
                task = asyncio.get_running_loop().create_task(fanout(data["k"], data.get("b", 1)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return {}

            async with server:
                ready()
                await stop.wait()

        run_asyncio_main(main, loop_kind)


# ---------------------------------------------------------------- wsguard, Redis, N workers
REDIS_URL = "redis://127.0.0.1:6379/0"


def serve_wsguard_redis(port, workers):
    """``wsguard serve`` with ``server.workers = N`` on the Redis broker, as a deployment runs it.

    The full configuration of wsguard-full, plus: the broker is Redis (every publication goes
    through it, also with one worker), and authenticated users may publish on ``bench:*`` (the
    same schema), because a ``wsguard serve`` process runs no application code: the load
    client publishes with ``publish`` ops instead of the ``bench.bcast`` rpc. The event loop is
    what ``wsguard serve`` picks (uvloop when installed). The Redis keys live under a prefix of
    this process's own and are deleted when it stops.
    """
    from wsguard.server.lifecycle import serve
    from wsguard.settings import ChannelConfig
    from wsguard.testing import loopback_settings

    prefix = f"wsguard-bench-{os.getpid()}:"
    with publication_schema_file("wsguard-redis") as schema_path:
        channel = ChannelConfig(
            pattern="bench:*",
            subscribe=("authenticated",),
            publish=("authenticated",),
            schema=schema_path,
        )
        settings = loopback_settings(
            wsguard_full_settings(port, schema_path),
            server={"port": port, "workers": workers},  # loopback_settings resets the port
            broker={"url": REDIS_URL, "prefix": prefix},
            log={"level": "warning"},
            channels=[channel],
        )
        try:
            # serve() prints "wsguard listening on port P" once every worker listens; run_bench
            # waits for that line.
            code = serve(settings)
        finally:
            delete_redis_keys(prefix)
    sys.exit(code)


def delete_redis_keys(prefix):
    """Delete this run's keys (bounded: the prefix is ours, a few keys per channel)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# ---------------------------------------------------------------- websockets
def serve_websockets(port, loop_kind):
    from websockets.asyncio.server import broadcast, serve

    clients = set()

    async def fanout(k, b):
        for i in range(k):
            broadcast(clients, PAYLOAD_100)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    tasks = set()

    async def handler(ws):
        if ws.request.path == "/bcast":
            clients.add(ws)
            try:
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith("BCAST"):
                        task = asyncio.get_running_loop().create_task(fanout(*parse_bcast(msg)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            finally:
                clients.discard(ws)
        else:
            async for msg in ws:
                await ws.send(msg)

    async def main(stop):
        # Library defaults kept (ping_interval=20, max_queue=16, write_limit=32 KiB,
        # compression offered but the bench client does not negotiate it).
        async with serve(handler, HOST, port, max_size=MAX_SIZE):
            ready()
            await stop.wait()

    run_asyncio_main(main, loop_kind)


# ---------------------------------------------------------------- websockets Sans-I/O core
# websockets' protocol state machine (handshake, framing, limits, close handshake) driven by a
# minimal asyncio.Protocol instead of websockets' own asyncio layer: the research prototype
# that wsguard's listener grew from. No keepalive, timeouts, backpressure, reassembly of
# fragmented messages or origin checks. Broadcast encodes the server frame once (server
# frames are unmasked) and writes the same bytes to every transport.
def serve_sansio(port, loop_kind):
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    op_text, op_binary = Opcode.TEXT, Opcode.BINARY
    clients = set()
    tasks = set()

    def frame_bytes(text):
        data = text.encode()
        n = len(data)
        if n < 126:
            return bytes([0x81, n]) + data
        if n < 65536:
            return bytes([0x81, 126]) + n.to_bytes(2, "big") + data
        return bytes([0x81, 127]) + n.to_bytes(8, "big") + data

    async def fanout(k, b):
        wire = frame_bytes(PAYLOAD_100)
        for i in range(k):
            for c in list(clients):
                c.t.write(wire)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    def start_fanout(k, b):
        task = asyncio.get_running_loop().create_task(fanout(k, b))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    class Conn(asyncio.Protocol):
        __slots__ = ("bcast", "p", "t")

        def connection_made(self, t):
            self.t = t
            self.p = ServerProtocol(max_size=MAX_SIZE)
            self.bcast = False

        def data_received(self, data):
            p = self.p
            p.receive_data(data)
            for ev in p.events_received():
                if isinstance(ev, Frame):
                    op = ev.opcode
                    if op is op_text:
                        text = ev.data.decode()  # UTF-8 validation (unfragmented frames here)
                        if not self.bcast:
                            p.send_text(text.encode())
                        elif text.startswith("BCAST"):
                            start_fanout(*parse_bcast(text))
                    elif op is op_binary and not self.bcast:
                        p.send_binary(ev.data)
                    # PING/PONG/CLOSE replies are produced by the protocol itself
                elif isinstance(ev, Request):
                    resp = p.accept(ev)
                    p.send_response(resp)
                    if p.state is State.OPEN and ev.path == "/bcast":
                        self.bcast = True
                        clients.add(self)
            for chunk in p.data_to_send():
                if chunk:
                    self.t.write(chunk)
                elif self.t.can_write_eof():
                    self.t.write_eof()
            if p.close_expected():
                self.t.close()

        def eof_received(self):
            self.p.receive_eof()
            return False

        def connection_lost(self, exc):
            clients.discard(self)

    async def main(stop):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Conn, HOST, port)
        ready()
        await stop.wait()
        server.close()

    run_asyncio_main(main, loop_kind)


# ---------------------------------------------------------------- picows
def serve_picows(port, loop_kind):
    from picows import WSListener, WSMsgType, WSUpgradeRequest, ws_create_server

    text_t, binary_t, close_t = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
    clients = set()
    tasks = set()

    class Echo(WSListener):
        def on_ws_frame(self, t, frame):
            mt = frame.msg_type
            if mt is text_t:
                # decode == UTF-8 validation (picows does not validate by itself)
                t.send(text_t, frame.get_payload_as_utf8_text())
            elif mt is binary_t:
                t.send(binary_t, frame.get_payload_as_memoryview())
            elif mt is close_t:
                t.send_close(frame.get_close_code())
                t.disconnect()

    async def fanout(k, b):
        for i in range(k):
            for t in list(clients):
                t.send(text_t, PAYLOAD_100)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    class Bcast(WSListener):
        def on_ws_connected(self, t):
            clients.add(t)

        def on_ws_disconnected(self, t):
            clients.discard(t)

        def on_ws_frame(self, t, frame):
            mt = frame.msg_type
            if mt is text_t:
                msg = frame.get_payload_as_utf8_text()
                if msg.startswith("BCAST"):
                    task = asyncio.get_running_loop().create_task(fanout(*parse_bcast(msg)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            elif mt is close_t:
                t.send_close(frame.get_close_code())
                t.disconnect()

    def factory(req: WSUpgradeRequest):
        if req.path == b"/bcast":
            return Bcast()
        return Echo()

    async def main(stop):
        server = await ws_create_server(
            factory, HOST, port, max_frame_size=MAX_SIZE, use_aiofastnet=False
        )
        ready()
        await stop.wait()
        server.close()

    run_asyncio_main(main, loop_kind)


# ---------------------------------------------------------------- aiohttp
def serve_aiohttp(port, loop_kind):
    from aiohttp import WSMsgType, web

    clients = set()
    tasks = set()

    async def fanout(k, b):
        for i in range(k):
            for ws in list(clients):
                with contextlib.suppress(Exception):
                    await ws.send_str(PAYLOAD_100)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    async def echo(request):
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def bcast(request):
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data.startswith("BCAST"):
                    task = asyncio.get_running_loop().create_task(fanout(*parse_bcast(msg.data)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/bcast", bcast)
    run_aiohttp_app(app, port, loop_kind)


# ---------------------------------------------------------------- python-socketio
# Engine.IO v4 / Socket.IO v5 over a WebSocket (the bench clients skip the polling transport:
# GET /socket.io/?EIO=4&transport=websocket). Library defaults (pingInterval 25 s) except the
# message size. Event "echo" is emitted back to the sender; event "bcast" with K (or
# {"k": K, "b": B}) emits K rounds of event "m" to every client of the namespace, B rounds per
# loop pass (default 1). The data of "m" is
# sized so the text frame's payload (42["m","..."]) is exactly 100 bytes, like the others.
SIO_PAYLOAD = "b" * (100 - len('42["m",""]'))


def serve_socketio(port, loop_kind):
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=MAX_SIZE)
    tasks = set()

    async def fanout(k, b):
        for i in range(k):
            await sio.emit("m", SIO_PAYLOAD)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    @sio.on("echo")
    async def echo(sid, data):
        await sio.emit("echo", data, to=sid)

    @sio.on("bcast")
    async def bcast(sid, data):
        # data: K, or {"k": K, "b": B} (B publications per loop pass, default 1)
        k, b = (data.get("k"), data.get("b", 1)) if isinstance(data, dict) else (data, 1)
        if isinstance(k, int) and k > 0 and isinstance(b, int) and 1 <= b <= 1000:
            task = asyncio.get_running_loop().create_task(fanout(k, b))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    app = web.Application()
    sio.attach(app)
    run_aiohttp_app(app, port, loop_kind)


# ---------------------------------------------------------------- FastAPI under uvicorn
def serve_fastapi(port, loop_kind):
    import uvicorn
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    app = FastAPI()
    clients = set()

    def typed(fn):
        # this module uses `from __future__ import annotations`, and FastAPI resolves string
        # annotations in the module's globals, where WebSocket is not: give it the class
        fn.__annotations__ = {"ws": WebSocket}
        return fn

    tasks = set()

    async def fanout(k, b):
        for i in range(k):
            for ws in list(clients):
                with contextlib.suppress(Exception):
                    await ws.send_text(PAYLOAD_100)
            if (i + 1) % b == 0:
                await asyncio.sleep(0)

    @app.websocket("/echo")
    @typed
    async def echo(ws):
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("text") is not None:
                    await ws.send_text(msg["text"])
                elif msg.get("bytes") is not None:
                    await ws.send_bytes(msg["bytes"])

    @app.websocket("/bcast")
    @typed
    async def bcast(ws):
        await ws.accept()
        clients.add(ws)
        try:
            while True:
                text = await ws.receive_text()
                if text.startswith("BCAST"):
                    task = asyncio.get_running_loop().create_task(fanout(*parse_bcast(text)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except WebSocketDisconnect:
            pass
        finally:
            clients.discard(ws)

    async def main(stop):
        # uvicorn's defaults (ws="auto", 16 MiB max message, 20 s pings); the loop is ours,
        # created by run_asyncio_main with the same kind.
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", loop=loop_kind)
        server = uvicorn.Server(config)
        serving = asyncio.get_running_loop().create_task(server.serve())
        for _ in range(300):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            sys.exit("uvicorn did not start")
        ready()
        stopping = asyncio.get_running_loop().create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving

    run_asyncio_main(main, loop_kind)


ENGINES = {
    "wsguard": serve_wsguard,
    "websockets": serve_websockets,
    "ws-sansio": serve_sansio,
    "picows": serve_picows,
    "aiohttp": serve_aiohttp,
    "wsguard-full": serve_wsguard_full,
    "socketio": serve_socketio,
    "fastapi": serve_fastapi,
}
# Engines that run as `wsguard serve` runs (their own loop choice, --workers N).
WORKER_ENGINES = {"wsguard-redis": serve_wsguard_redis}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=sorted({*ENGINES, *WORKER_ENGINES}))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--max-lifetime", type=float, default=900)
    ap.add_argument("--workers", type=int, default=1, help="wsguard-redis: worker processes")
    a = ap.parse_args()
    if not 1024 <= a.port <= 65535:
        sys.exit("port must be 1024-65535")
    if not 1 <= a.workers <= 8:
        sys.exit("--workers must be 1-8")
    install_lifetime_guard(a.max_lifetime)
    if a.engine in WORKER_ENGINES:
        WORKER_ENGINES[a.engine](a.port, a.workers)
    else:
        ENGINES[a.engine](a.port, a.loop)


if __name__ == "__main__":
    main()
