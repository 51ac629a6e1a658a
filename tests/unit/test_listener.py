"""WsConnection, the listener's asyncio.Protocol, fed bytes on a fake transport (no socket).

Found by fuzzing/fuzz_handshake.py: a request head followed, in the same read, by a complete
frame the websockets core refuses. The core fails the connection at once (it ends the stream
while still in the handshake), so answering the request afterwards raised AssertionError out of
data_received: no answer, no audit event, a traceback in the log for every such request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from wsguard.audit import AuditLog
from wsguard.server.lifecycle import Server
from wsguard.server.listener import WsConnection
from wsguard.settings import AuthConfig, ServerConfig, Settings


def request(origin: str) -> bytes:
    return (
        "GET /ws HTTP/1.1\r\n"
        "Host: 127.0.0.1:8080\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Origin: {origin}\r\n\r\n"
    ).encode()


# A complete frame the core refuses: all reserved bits set, a reserved opcode, unmasked.
BAD_FRAME = b"\xff\x00"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def audit() -> Events:
    events = Events()
    logger = logging.getLogger("test.listener.audit")
    logger.addHandler(events)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return events


async def connection(audit: Events) -> tuple[WsConnection, FakeTransport]:
    settings = Settings(server=ServerConfig(port=8080), auth=AuthConfig(required=False, methods=()))
    server = Server(settings, audit=AuditLog(logger=logging.getLogger("test.listener.audit")))
    conn = WsConnection(server._state)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://evil.test", id="refused-origin"),
        pytest.param("http://127.0.0.1:8080", id="allowed-origin"),
    ],
)
async def test_bad_frame_pipelined_behind_the_request_gets_400_malformed_request(
    audit: Events, origin: str
):
    conn, transport = await connection(audit)
    conn.data_received(request(origin) + BAD_FRAME)
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed
    assert '"reason":"malformed_request"' in audit.lines[-1]
    conn.connection_lost(None)


class BackedUpTransport(FakeTransport):
    """A transport whose peer stopped reading: ``buffered`` bytes stay queued."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered = 0
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = self.closed = True


def fire_handed_over(conn: WsConnection, when: float) -> None:
    """Do what the wheel's timer does at the deadline's second (hand it over: a loop timer at
    exactly ``when``), then what that timer does at ``when``."""
    conn.wheel_due(when, None)
    assert conn._timer_bucket is None
    timer = conn._timer
    assert timer is not None
    assert timer.when() == when
    timer.cancel()
    conn._on_timer()


async def test_a_closed_connection_with_bytes_queued_is_aborted_close_timeout_later(
    audit: Events,
) -> None:
    # Found by the attack suite (FRM-32): transport.close() waits until the queue drains, and
    # the timer used to return early on a closing transport, so a peer that sent its close
    # frame and then stopped reading held the connection and its slots forever.
    settings = Settings(server=ServerConfig(port=8080), auth=AuthConfig(required=False, methods=()))
    server = Server(settings, audit=AuditLog(logger=logging.getLogger("test.listener.audit")))
    conn = WsConnection(server._state)
    transport = BackedUpTransport()
    conn.connection_made(transport)
    conn.data_received(request("http://127.0.0.1:8080"))
    assert transport.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    transport.buffered = 4096
    conn.data_received(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000, zero mask key
    assert transport.closed
    assert not transport.aborted
    # close_timeout (5 s) is far: the deadline waits in the loop's wheel until its second.
    assert conn._timer is None
    bucket = conn._timer_bucket
    assert bucket is not None
    when, _ = bucket[conn]
    assert when - asyncio.get_running_loop().time() == pytest.approx(
        settings.limits.close_timeout, abs=0.5
    )
    fire_handed_over(conn, when)
    assert transport.aborted
    conn.connection_lost(None)


# ---------------------------------------------------------------- deadlines in the wheel


async def test_far_deadlines_wait_in_the_wheel_and_leave_it_when_done_with(audit: Events) -> None:
    """The handshake timeout (5 s) and the keepalive (20 s) are a bucket entry each, not a loop
    timer; the 101 moves the connection from the first to the second, and the connection's end
    takes it out, so a closed connection is held by no bucket until its second."""
    conn, transport = await connection(audit)
    loop = asyncio.get_running_loop()
    limits = conn._state.limits
    assert conn._timer is None
    handshake = conn._timer_bucket
    assert handshake is not None
    assert handshake[conn][0] - loop.time() == pytest.approx(limits.handshake_timeout, abs=0.5)
    conn.data_received(request("http://127.0.0.1:8080"))
    assert transport.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert conn not in handshake
    keepalive = conn._timer_bucket
    assert keepalive is not None
    assert conn._timer is None
    assert keepalive[conn][0] - loop.time() == pytest.approx(limits.ping_interval, abs=0.5)
    conn.connection_lost(None)
    assert conn._timer_bucket is None
    assert conn not in keepalive


async def test_a_deadline_the_wheel_hands_over_fires_the_connections_timer(
    audit: Events,
) -> None:
    """A socket that never sends its request: at the handshake timeout's second the wheel
    arms the exact timer, which drops the connection and audits a 408."""
    conn, transport = await connection(audit)
    bucket = conn._timer_bucket
    assert bucket is not None
    when, _ = bucket[conn]
    fire_handed_over(conn, when)
    assert transport.closed
    assert '"reason":"handshake_timeout"' in audit.lines[-1]
    conn.connection_lost(None)


# ---------------------------------------------------------------- the fast path (frames.py)
#
# The listener reads whole masked text/binary frames itself and hands every other frame to the
# websockets core. The tests below feed the same byte streams to a connection that may take the
# fast path and to one that may not (the core reads everything), in many chunkings, and require
# the same bytes written, the same close and the same messages delivered.


def masked(
    first: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d", *, length: str = ""
) -> bytes:
    """A client frame; ``length="64"`` writes a 64-bit length, ``"unmasked"`` no mask."""
    size = len(payload)
    if length == "64":
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    elif size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    if length == "unmasked":
        return bytes((head[0], head[1] & 0x7F)) + head[2:] + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


CLOSE_1000 = masked(0x88, b"\x03\xe8")

STREAMS = {
    "texts and binaries": [
        masked(0x81, b"hello"),
        masked(0x82, bytes(range(200))),
        masked(0x81, "h\u00e9llo \u2603".encode() * 40),  # 16-bit length
        masked(0x81, b""),
        CLOSE_1000,
    ],
    "ping and pong between messages": [
        masked(0x81, b"a"),
        masked(0x89, b"ping!"),
        masked(0x81, b"b"),
        masked(0x8A, b""),
        masked(0x82, b"c"),
        CLOSE_1000,
    ],
    "fragmented message with a ping inside": [
        masked(0x01, b"frag-"),
        masked(0x89, b"p"),
        masked(0x00, b"ment-"),
        masked(0x80, b"ed"),
        masked(0x81, b"after"),
        CLOSE_1000,
    ],
    "64-bit length": [masked(0x82, b"x" * 300, length="64"), masked(0x81, b"next"), CLOSE_1000],
    "large frame for the core": [masked(0x82, b"y" * 70_000), masked(0x81, b"next"), CLOSE_1000],
    "invalid utf-8": [masked(0x81, b"ok"), masked(0x81, b"\xc3\x28"), masked(0x81, b"lost")],
    "reserved bit": [masked(0x81, b"ok"), masked(0xC1, b"rsv1"), masked(0x81, b"lost")],
    "reserved opcode": [masked(0x81, b"ok"), masked(0x83, b"op3"), masked(0x81, b"lost")],
    "unmasked frame": [masked(0x81, b"ok"), masked(0x81, b"bare", length="unmasked")],
    "text inside a fragmented message": [masked(0x01, b"a"), masked(0x81, b"b")],
    "continuation with nothing to continue": [masked(0x81, b"ok"), masked(0x80, b"c")],
    "over max_message_bytes": [masked(0x81, b"ok"), masked(0x82, b"z" * 100_001)],
    "control frame too long": [masked(0x81, b"ok"), masked(0x89, b"p" * 126)],
    "peer closes, then sends": [masked(0x81, b"ok"), CLOSE_1000, masked(0x81, b"after close")],
}


class Recorder:
    """An echo session that also records what it was given."""

    def __init__(self, conn: WsConnection, got: list[object]) -> None:
        self.conn, self.got = conn, got

    def on_open(self) -> None:
        pass

    def on_text(self, text: str) -> None:
        self.got.append(text)
        self.conn.send_text(text.encode())

    def on_binary(self, data: bytes) -> None:
        self.got.append(bytes(data))
        self.conn.send_binary(data)

    def on_read_end(self) -> None:
        pass

    def on_close(self, code: int | None) -> None:
        self.got.append(("closed", code))

    def keeps_alive(self) -> bool:
        return True


class ReadRecorder(Recorder):
    """A Recorder that also records the end of each read."""

    def on_read_end(self) -> None:
        self.got.append("read end")


async def run_stream(
    chunks: list[bytes],
    *,
    fast: bool,
    monkeypatch: pytest.MonkeyPatch,
    session: type[Recorder] = Recorder,
) -> tuple[bytes, bool, list[object], bool]:
    from wsguard.server import frames
    from wsguard.settings import LimitsConfig

    settings = Settings(
        server=ServerConfig(port=8080),
        auth=AuthConfig(required=False, methods=()),
        limits=LimitsConfig(max_message_bytes=100_000),
    )
    server = Server(settings, audit=AuditLog(logger=logging.getLogger("test.listener.audit")))
    got: list[object] = []
    server._state.session_factory = lambda conn: session(conn, got)  # type: ignore[assignment,arg-type,return-value]
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(frames, "core_between_frames", lambda proto: False)
        conn = WsConnection(server._state)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(request("http://127.0.0.1:8080"))
        head, _, rest = transport.written.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        transport.written = rest
        took_fast = False
        for chunk in chunks:
            conn.data_received(chunk)
            took_fast = took_fast or conn._fast
        conn.connection_lost(None)
    return transport.written, transport.closed, got, took_fast


def chunkings(stream: bytes) -> dict[str, list[bytes]]:
    import random

    rng = random.Random(6455)
    out = {"whole": [stream], "bytewise": [stream[i : i + 1] for i in range(len(stream))]}
    for n in range(3):
        cuts = sorted(rng.sample(range(1, len(stream)), k=min(len(stream) - 1, 5 + n * 7)))
        out[f"random-{n}"] = [
            stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
        ]
    return out


@pytest.mark.interpreted  # forces the core path by patching frames.core_between_frames
@pytest.mark.parametrize("name", list(STREAMS))
async def test_fast_path_writes_and_delivers_what_the_core_alone_does(
    name: str, audit: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reference: the core alone, one frame per read. (Given several frames in one read, the
    # core parses them all before the first is handled: messages ahead of a close frame in the
    # same read were delivered, but their replies dropped, the core being CLOSING already. The
    # fast path handles each message before it reads the next frame, as here.)
    # A first message in its own read: the core reads it, and the fast path starts after it.
    stream = b"".join(STREAMS[name])
    lead = masked(0x81, b"first")
    core = await run_stream([lead, *STREAMS[name]], fast=False, monkeypatch=monkeypatch)
    assert not core[3]
    for how, chunks in chunkings(stream).items():
        fast = await run_stream([lead, *chunks], fast=True, monkeypatch=monkeypatch)
        assert fast[3], f"{how}: the fast path never engaged"
        assert fast[:3] == core[:3], f"{name}, {how}"


async def test_fast_path_delivers_each_message_once_in_order(
    audit: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = [masked(0x81, b"first"), *(masked(0x81, b"m%d" % i) for i in range(50))]
    written, _, got, took_fast = await run_stream(
        [stream[0], b"".join(stream[1:])], fast=True, monkeypatch=monkeypatch
    )
    assert took_fast
    assert got == ["first", *(f"m{i}" for i in range(50)), ("closed", None)]
    assert written == b"".join(bytes((0x81, len(t))) + t.encode() for t in got[:-1])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "fast",
    # the core case forces the core path by patching frames.core_between_frames
    [
        pytest.param(True, id="fast path"),
        pytest.param(False, id="core", marks=pytest.mark.interpreted),
    ],
)
async def test_the_session_hears_the_end_of_each_read_after_its_messages(
    fast: bool, audit: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames_ = [masked(0x81, t) for t in (b"first", b"a", b"b", b"c", b"d", b"e")]
    half = len(frames_[5]) // 2
    chunks = [
        frames_[0],
        frames_[1] + frames_[2] + frames_[3],  # three messages in one read
        frames_[4] + frames_[5][:half],  # one and a half
        frames_[5][half:],
    ]
    _, _, got, took_fast = await run_stream(
        chunks, fast=fast, monkeypatch=monkeypatch, session=ReadRecorder
    )
    assert took_fast is fast
    assert got == [
        "read end",  # the handshake's read: the session opened in it, with nothing queued
        "first",
        "read end",
        "a",
        "b",
        "c",
        "read end",
        "d",
        "read end",
        "e",
        "read end",
        ("closed", None),
    ]


@pytest.mark.parametrize(
    ("name", "delivered", "close"),
    [
        ("fragmented message with a ping inside", ["frag-ment-ed", "after"], 1000),
        ("invalid utf-8", ["ok"], 1007),
        ("reserved bit", ["ok"], 1002),
        ("unmasked frame", ["ok"], 1002),
        ("over max_message_bytes", ["ok"], 1009),
        ("peer closes, then sends", ["ok"], 1000),
    ],
)
async def test_fast_path_stream_outcomes(
    name: str, delivered: list[str], close: int, audit: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The differential test above compares the two paths; this pins what both must do.
    lead = masked(0x81, b"first")
    written, closed, got, _ = await run_stream(
        [lead, b"".join(STREAMS[name])], fast=True, monkeypatch=monkeypatch
    )
    assert got[1:-1] == delivered
    assert closed
    close_frame = written[written.rindex(b"\x88") :]
    assert int.from_bytes(close_frame[2:4], "big") == close


async def test_an_rpc_reply_is_written_by_the_pass_that_ran_it(audit: Events) -> None:
    # The session's drain writes its batch when it ends; the connection's own end-of-pass
    # flush used to add a loop pass to every reply (tens of microseconds on an idle server).
    # On Python 3.12+ the drain starts eagerly, inside the read itself.
    conn, transport = await connection(audit)
    conn.data_received(request("http://127.0.0.1:8080"))
    transport.written = b""
    conn.data_received(masked(0x81, b'{"id":7,"op":"rpc","method":"no.such","data":{}}'))
    await asyncio.sleep(0)  # the drain task's first step (already run when eager)
    assert transport.written.startswith(b"\x81")
    assert b'"id":7,"ok":false' in transport.written
    conn.connection_lost(None)
