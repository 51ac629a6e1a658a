"""The engine under malformed frames, limits, timeouts and backpressure (raw sockets)."""

from __future__ import annotations

import asyncio
import gc
import struct
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.http11 import Request

from support.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    frame,
    handshake_bytes,
)
from wsguard.server.session import ProtocolSession
from wsguard.testing import loopback_settings

pytestmark = pytest.mark.integration


async def open_raw(port: int, *, welcome: bool = True, rcvbuf: int | None = None) -> RawClient:
    client = await RawClient.connect(port, rcvbuf=rcvbuf)
    await client.send(handshake_bytes(port))
    response = await client.read_response()
    assert response.status == 101
    if welcome:
        opcode, payload = await client.read_frame()
        assert opcode == OP_TEXT
        assert orjson.loads(payload)["push"] == "welcome"
    return client


async def echo_server(start_server, **limits):
    return await start_server(
        auth={"required": False},
        server={"echo": True, "host": "127.0.0.1", "port": 0},
        limits=limits,
    )


async def test_unmasked_client_frame_fails_connection_1002(start_server):
    server = await start_server()
    client = await open_raw(server.port)
    await client.send(frame(OP_TEXT, b'{"op":"ping"}', mask=False))
    assert await client.read_until_close() == 1002
    assert await client.at_eof()


async def test_reserved_bit_without_extension_fails_1002(start_server):
    server = await start_server()
    client = await open_raw(server.port)
    await client.send(frame(OP_TEXT, b'{"op":"ping"}', rsv=0b100))
    assert await client.read_until_close() == 1002


async def test_invalid_utf8_text_fails_connection_1007(start_server):
    server = await start_server()
    client = await open_raw(server.port)
    await client.send(frame(OP_TEXT, b'{"op":"\xff\xfe"}'))
    assert await client.read_until_close() == 1007


async def test_invalid_utf8_inside_fragments_fails_fast_1007(start_server):
    server = await echo_server(start_server)
    client = await open_raw(server.port, welcome=False)
    await client.send(frame(OP_TEXT, b"valid ", fin=False))
    await client.send(frame(OP_CONT, b"\xc3\x28", fin=False))  # invalid 2-byte sequence
    assert await client.read_until_close() == 1007


async def test_message_over_max_message_bytes_is_closed_1009(start_server):
    server = await start_server(auth={"required": False}, limits={"max_message_bytes": 1024})
    client = await open_raw(server.port)
    await client.send(frame(OP_TEXT, b"x" * 2048))
    assert await client.read_until_close() == 1009


async def test_fragments_adding_up_past_the_limit_are_closed_1009(start_server):
    server = await echo_server(start_server, max_message_bytes=1024)
    client = await open_raw(server.port, welcome=False)
    await client.send(frame(OP_BINARY, b"a" * 600, fin=False))
    await client.send(frame(OP_CONT, b"b" * 600, fin=False))
    assert await client.read_until_close() == 1009


async def test_fragment_flood_is_cut_at_max_fragments_1009(start_server):
    server = await echo_server(start_server, max_fragments=8)
    client = await open_raw(server.port, welcome=False)
    await client.send(frame(OP_BINARY, b"a", fin=False))
    for _ in range(8):
        await client.send(frame(OP_CONT, b"a", fin=False))
    assert await client.read_until_close() == 1009


async def test_fragmented_text_is_reassembled_in_order(start_server):
    server = await echo_server(start_server)
    client = await open_raw(server.port, welcome=False)
    await client.send(frame(OP_TEXT, "héllo ".encode(), fin=False))
    await client.send(frame(OP_PING, b"mid"))  # control frames may interleave (§5.4)
    await client.send(frame(OP_CONT, b"w\xc3", fin=False))  # a code point split over frames
    await client.send(frame(OP_CONT, b"\xb6rld", fin=True))
    assert await client.read_frame() == (OP_PONG, b"mid")
    assert await client.read_frame() == (OP_TEXT, "héllo wörld".encode())
    client.close()


async def test_close_between_fragments_is_a_normal_close(start_server):
    # RFC 6455 §5.4 lets control frames interleave with fragments; Autobahn case 7.1.5.
    server = await echo_server(start_server)
    client = await open_raw(server.port, welcome=False)
    await client.send(frame(OP_TEXT, b"fragment1", fin=False))
    await client.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
    await client.send(frame(OP_CONT, b"fragment2", fin=True))
    assert await client.read_until_close() == 1000


def _upgrade_requests_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Request)


async def test_an_open_connection_keeps_no_upgrade_request(start_server):
    """The core's parser drops the parsed request once the 101 is out (about 3 KB a socket)."""
    server = await echo_server(start_server)
    before = _upgrade_requests_alive()
    clients = [await open_raw(server.port, welcome=False) for _ in range(5)]
    assert _upgrade_requests_alive() == before
    for n, client in enumerate(clients):
        await client.send(frame(OP_TEXT, f"still parsed {n}".encode()))
        assert await client.read_frame() == (OP_TEXT, f"still parsed {n}".encode())
        client.close()


@pytest.mark.parametrize("split", [0, 3], ids=["whole-frame", "partial-frame"])
async def test_frames_in_the_read_of_the_request_are_parsed_whole_or_split(
    start_server, split: int
):
    """A frame right behind the request head (whole, or cut after ``split`` bytes of the next
    one) is answered after the 101, in order, whichever parser reads the rest."""
    server = await echo_server(start_server)
    client = await RawClient.connect(server.port)
    first, second = frame(OP_TEXT, b"first"), frame(OP_TEXT, b"second")
    head = second[:split] if split else b""
    await client.send(handshake_bytes(server.port) + first + head)
    assert (await client.read_response()).status == 101
    assert await client.read_frame() == (OP_TEXT, b"first")
    await client.send(second[split:] if split else second)
    assert await client.read_frame() == (OP_TEXT, b"second")
    await client.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert await client.read_until_close() == 1000


async def test_echo_mode_echoes_binary_unchanged(start_server):
    server = await echo_server(start_server)
    origin = f"http://127.0.0.1:{server.port}"
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=origin) as ws:
        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256))


async def test_binary_message_gets_400_reply_in_protocol_mode(start_server):
    server = await start_server()
    client = await open_raw(server.port)
    await client.send(frame(OP_BINARY, b"\x00\x01"))
    opcode, payload = await client.read_frame()
    assert opcode == OP_TEXT
    assert orjson.loads(payload)["error"]["code"] == 400
    client.close()


async def test_client_close_is_answered_with_same_code(start_server, audit):
    server = await start_server()
    client = await open_raw(server.port)
    await client.send(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
    assert await client.read_until_close() == 1000
    assert await client.at_eof()
    for _ in range(100):
        if any(e["event"] == "connection_closed" for e in audit.events):
            break
        await asyncio.sleep(0.01)
    closed = [e for e in audit.events if e["event"] == "connection_closed"]
    assert closed[-1]["code"] == 1000


# ---------------------------------------------------------------- timeouts (short, real)


async def test_slowloris_handshake_is_dropped_after_handshake_timeout(start_server, audit):
    server = await start_server(auth={"required": False}, limits={"handshake_timeout": 0.3})
    client = await RawClient.connect(server.port)
    await client.send(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes
    assert await client.at_eof(timeout=3)
    assert audit.rejected()[-1]["reason"] == "handshake_timeout"


async def test_peer_that_never_answers_pings_is_closed_1011(start_server):
    server = await start_server(
        auth={"required": False},
        limits={"ping_interval": 0.2, "ping_timeout": 0.2},
    )
    client = await open_raw(server.port)
    opcode, _ = await client.read_frame(timeout=3)
    assert opcode == OP_PING
    # Do not answer: the server gives up after ping_timeout.
    assert await client.read_until_close(timeout=3) == 1011


async def test_peer_answering_pings_stays_open(start_server):
    server = await start_server(
        auth={"required": False},
        limits={"ping_interval": 0.1, "ping_timeout": 0.1, "idle_timeout": 60},
    )
    client = await open_raw(server.port)
    for _ in range(5):  # five rounds: well past one ping_timeout
        opcode, payload = await client.read_frame(timeout=3)
        assert opcode == OP_PING
        await client.send(frame(OP_PONG, payload))
    await client.send(frame(OP_TEXT, b'{"id":1,"op":"ping"}'))
    while True:
        opcode, payload = await client.read_frame(timeout=3)
        if opcode == OP_TEXT:
            break
    assert orjson.loads(payload) == {"id": 1, "ok": True, "result": {}}
    client.close()


async def test_idle_connection_is_closed_1001_after_idle_timeout(start_server):
    server = await start_server(
        auth={"required": False}, limits={"idle_timeout": 0.3, "ping_interval": 0}
    )
    client = await open_raw(server.port)
    assert await client.read_until_close(timeout=3) == 1001


# ---------------------------------------------------------------- backpressure


async def test_peer_that_does_not_read_is_paused_and_others_keep_working(start_server):
    # Every rate budget out of the way: this peer's pings are all valid, it just never reads.
    unlimited = {
        "messages_per_second": 1e6,
        "burst": 1_000_000,
        "user_messages_per_second": 1e6,
        "user_burst": 1_000_000,
        "bytes_per_second": 1 << 30,
        "user_bytes_per_second": 1 << 30,
    }
    server = await start_server(auth={"required": False}, limits=unlimited)
    port = server.port
    # A small receive buffer (set before connecting) so the server's replies back up quickly.
    hog = await open_raw(port, rcvbuf=4096)
    ping = frame(OP_TEXT, b'{"id":1,"op":"ping"}')
    batch = ping * 500
    blocked = False
    for _ in range(2000):  # bounded: at most ~26 MB offered
        hog.writer.write(batch)
        try:
            await asyncio.wait_for(hog.writer.drain(), 0.5)
        except TimeoutError:
            blocked = True  # the server stopped reading from us
            break
    assert blocked, "the server kept reading from a peer that reads nothing"
    # A well-behaved client is unaffected.
    async with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
        await ws.recv()
        await ws.send('{"id": 9, "op": "ping"}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {
            "id": 9,
            "ok": True,
            "result": {},
        }
    hog.writer.transport.abort()


async def test_send_queue_over_the_limit_is_closed_4509_after_the_queued_data(start_server):
    server = await echo_server(
        start_server, max_message_bytes=16 << 20, max_send_queue_bytes=1 << 20
    )
    client = await open_raw(server.port, welcome=False, rcvbuf=4096)
    message = bytes(12 << 20)  # far more than the kernel buffers on loopback
    await client.send(frame(OP_BINARY, message))
    await asyncio.sleep(0.2)  # let the echo pile up while we do not read
    assert await client.read_frame(timeout=10) == (OP_BINARY, message)
    assert await client.read_until_close(timeout=10) == 4509


# ---------------------------------------------------------------- fail closed


class _BuggySession:
    """A session with a bug: any message containing "boom" raises. It wraps the real session
    rather than subclass it: the compiled build's ProtocolSession takes no Python subclass."""

    def __init__(self, conn: Any) -> None:
        self._session = ProtocolSession(conn)

    def on_text(self, text: str) -> None:
        if "boom" in text:
            raise RuntimeError("a bug in application code")
        self._session.on_text(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


async def test_exception_in_a_session_closes_that_connection_1011_only(start_server):
    server = await start_server(
        settings=loopback_settings(auth={"required": False}), session_factory=_BuggySession
    )
    victim = await open_raw(server.port)
    bystander = await open_raw(server.port)
    await victim.send(frame(OP_TEXT, b'{"op":"boom"}'))
    assert await victim.read_until_close() == 1011
    await bystander.send(frame(OP_TEXT, b'{"id":2,"op":"ping"}'))
    opcode, payload = await bystander.read_frame()
    assert (opcode, orjson.loads(payload)) == (OP_TEXT, {"id": 2, "ok": True, "result": {}})


async def read_close(client: RawClient) -> tuple[int, str, int]:
    """Read to the close frame: (code, reason, pongs seen before it)."""
    pongs = 0
    while True:
        opcode, payload = await client.read_frame()
        if opcode == OP_PONG:
            pongs += 1
        elif opcode == OP_CLOSE:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode(), pongs


@pytest.mark.parametrize(
    ("bad_frame", "code", "reason"),
    [
        (frame(OP_TEXT, b'{"op":"ping"}', mask=False), 1002, "protocol error"),
        (frame(OP_TEXT, b'{"op":"ping"}', rsv=0b010), 1002, "protocol error"),
        (frame(0x3, b"x"), 1002, "protocol error"),
        (frame(OP_BINARY, b"x" * 2048), 1009, "message too big"),
    ],
)
async def test_close_reasons_are_fixed_phrases_not_the_parsers_words(
    start_server, bad_frame, code, reason
):
    # websockets would say "incorrect masking", "reserved bits must be 0", "invalid opcode: 3"
    # and "over size limit (2048 > 1024 bytes)": a fingerprint and a disclosed limit.
    server = await start_server(limits={"max_message_bytes": 1024})
    client = await open_raw(server.port)
    await client.send(bad_frame)
    assert (await read_close(client))[:2] == (code, reason)


async def test_ping_flood_past_the_burst_is_closed_1008_after_burst_pongs(start_server):
    server = await start_server(limits={"messages_per_second": 1, "burst": 5})
    client = await open_raw(server.port)
    await client.send(b"".join(frame(OP_PING, b"p") for _ in range(50)))
    assert await read_close(client) == (1008, "policy violation", 5)
    assert await client.at_eof()


async def test_pings_within_the_burst_are_all_answered(start_server):
    server = await start_server(limits={"messages_per_second": 1, "burst": 5})
    client = await open_raw(server.port)
    await client.send(b"".join(frame(OP_PING, bytes([i])) for i in range(5)))
    pongs = [await client.read_frame() for _ in range(5)]
    assert pongs == [(OP_PONG, bytes([i])) for i in range(5)]
    await client.send(frame(OP_TEXT, b'{"id": 1, "op": "ping"}'))
    opcode, payload = await client.read_frame()
    assert (opcode, orjson.loads(payload)) == (OP_TEXT, {"id": 1, "ok": True, "result": {}})


@pytest.mark.interpreted  # counts writes by patching WsConnection._write
async def test_replies_of_one_event_loop_pass_leave_in_one_write(start_server, monkeypatch):
    from wsguard.server import listener

    server = await start_server()

    @server.rpc("echo", allow=("anonymous",))
    async def echo(ctx, data):
        return data  # answered from the session's task, after data_received returned

    writes: list[int] = []
    original = listener.WsConnection._write

    def counting(self, chunk):
        writes.append(len(chunk))
        original(self, chunk)

    client = await open_raw(server.port)
    monkeypatch.setattr(listener.WsConnection, "_write", counting)
    requests = [
        orjson.dumps({"id": i, "op": "rpc", "method": "echo", "data": i}) for i in range(16)
    ]
    await client.send(b"".join(frame(OP_TEXT, r) for r in requests))
    replies = [orjson.loads((await client.read_frame())[1]) for _ in range(16)]
    assert replies == [{"id": i, "ok": True, "result": i} for i in range(16)]
    # 16 replies produced one by one by the session's task in one pass: one write, not 16.
    assert len(writes) == 1, writes
