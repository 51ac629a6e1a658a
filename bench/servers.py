"""Echo (+ broadcast) WebSocket servers, one engine per process, for benchmarking.

Every server listens on 127.0.0.1:PORT only:
  /echo   echo every text/binary message back (text is decoded to str first, i.e. UTF-8 is
          validated, as an application would do)
  /bcast  subscriber connection; a text message "BCAST <K>" received on any /bcast connection
          makes the server fan out K rounds of one 100-byte text message to every connected
          /bcast client, yielding to the event loop after each round. Not served by wsguard
          (fan-out arrives with channels).

Usage: python servers.py --engine ENGINE --port PORT [--loop asyncio|uvloop]
Engines:
  wsguard     the real wsguard listener in echo mode (server.echo = true), in-process
  websockets  websockets' own asyncio server
  ws-sansio   websockets' Sans-I/O core + a minimal asyncio.Protocol (research prototype)
  picows      picows (Cython), aiofastnet off
  aiohttp     aiohttp's web server
The process prints "LISTENING" on stdout once it accepts connections.
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
    """K from "BCAST <K>" (0 when malformed)."""
    try:
        return int(text.split()[1])
    except (IndexError, ValueError):
        return 0


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


# ---------------------------------------------------------------- websockets
def serve_websockets(port, loop_kind):
    from websockets.asyncio.server import broadcast, serve

    clients = set()

    async def fanout(k):
        for _ in range(k):
            broadcast(clients, PAYLOAD_100)
            await asyncio.sleep(0)

    tasks = set()

    async def handler(ws):
        if ws.request.path == "/bcast":
            clients.add(ws)
            try:
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith("BCAST"):
                        task = asyncio.get_running_loop().create_task(fanout(parse_bcast(msg)))
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

    async def fanout(k):
        wire = frame_bytes(PAYLOAD_100)
        for _ in range(k):
            for c in list(clients):
                c.t.write(wire)
            await asyncio.sleep(0)

    def start_fanout(k):
        task = asyncio.get_running_loop().create_task(fanout(k))
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
                            start_fanout(parse_bcast(text))
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

    async def fanout(k):
        for _ in range(k):
            for t in list(clients):
                t.send(text_t, PAYLOAD_100)
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
                    task = asyncio.get_running_loop().create_task(fanout(parse_bcast(msg)))
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

    async def fanout(k):
        for _ in range(k):
            for ws in list(clients):
                with contextlib.suppress(Exception):
                    await ws.send_str(PAYLOAD_100)
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
                    task = asyncio.get_running_loop().create_task(fanout(parse_bcast(msg.data)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            clients.discard(ws)
        return ws

    async def main(stop):
        app = web.Application()
        app.router.add_get("/echo", echo)
        app.router.add_get("/bcast", bcast)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        ready()
        await stop.wait()
        await runner.cleanup()

    run_asyncio_main(main, loop_kind)


ENGINES = {
    "wsguard": serve_wsguard,
    "websockets": serve_websockets,
    "ws-sansio": serve_sansio,
    "picows": serve_picows,
    "aiohttp": serve_aiohttp,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=sorted(ENGINES))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--max-lifetime", type=float, default=900)
    a = ap.parse_args()
    if not 1024 <= a.port <= 65535:
        sys.exit("port must be 1024-65535")
    install_lifetime_guard(a.max_lifetime)
    ENGINES[a.engine](a.port, a.loop)


if __name__ == "__main__":
    main()
