"""Raw scanner traffic: frames and requests built byte for byte, and a bounded reader that
parses whatever a (possibly hostile) server sends back, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from wsguard.scanner import wire
from wsguard.scanner.wire import Connection, Handshake, Received, build_frame, build_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def server_frame(opcode: int, payload: bytes = b"") -> bytes:
    return build_frame(opcode, payload, mask=False)


def parse_client_frame(data: bytes) -> Frame:
    """Parse one masked frame as a server would."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


# ---------------------------------------------------------------- build_frame


@pytest.mark.parametrize(
    ("length", "header"),
    [
        pytest.param(0, b"\x81\x00", id="0"),
        pytest.param(125, b"\x81\x7d", id="125-7bit"),
        pytest.param(126, b"\x81\x7e\x00\x7e", id="126-16bit"),
        pytest.param(65535, b"\x81\x7e\xff\xff", id="65535-16bit"),
        pytest.param(65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", id="65536-64bit"),
    ],
)
def test_unmasked_frame_is_header_then_payload(length: int, header: bytes):
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    assert build_frame(wire.OP_TEXT, payload, mask=False) == header + payload


@pytest.mark.parametrize(
    ("length", "header"),
    [
        pytest.param(0, b"\x81\x80", id="0"),
        pytest.param(125, b"\x81\xfd", id="125-7bit"),
        pytest.param(126, b"\x81\xfe\x00\x7e", id="126-16bit"),
        pytest.param(65535, b"\x81\xfe\xff\xff", id="65535-16bit"),
        pytest.param(65536, b"\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00", id="65536-64bit"),
    ],
)
def test_masked_frame_header_sets_the_mask_bit(length: int, header: bytes):
    data = build_frame(wire.OP_TEXT, b"a" * length)
    assert data[: len(header)] == header
    assert len(data) == len(header) + 4 + length


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 65535, 65536])
def test_masked_frame_unmasks_to_the_payload(length: int):
    payload = bytes((i * 7) % 256 for i in range(length))
    frame = parse_client_frame(build_frame(wire.OP_BINARY, payload))
    assert (frame.opcode, frame.data, frame.fin) == (Opcode.BINARY, payload, True)


def test_masked_payload_leading_zeros_survive():
    payload = b"\x00\x00\x00\x00\x00abc"
    assert parse_client_frame(build_frame(wire.OP_BINARY, payload)).data == payload


def test_masked_frame_is_masked_on_the_wire():
    payload = b"a" * 64
    assert payload not in build_frame(wire.OP_TEXT, payload)


def test_length_override_is_declared_in_the_header():
    data = build_frame(wire.OP_BINARY, b"", mask=False, length=2**63)
    assert data == b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"


def test_length_override_masked_adds_only_the_key():
    data = build_frame(wire.OP_BINARY, b"ab", length=10)
    assert data[:2] == b"\x82\x8a"
    assert len(data) == 2 + 4 + 2


@pytest.mark.parametrize(
    ("rsv", "first"),
    [
        pytest.param(4, 0xC1, id="RSV1"),
        pytest.param(2, 0xA1, id="RSV2"),
        pytest.param(1, 0x91, id="RSV3"),
        pytest.param(7, 0xF1, id="all"),
    ],
)
def test_rsv_bits_placement(rsv: int, first: int):
    assert build_frame(wire.OP_TEXT, b"x", mask=False, rsv=rsv)[0] == first


def test_fin_false_clears_the_top_bit():
    assert build_frame(wire.OP_CONT, b"x", fin=False, mask=False) == b"\x00\x01x"


def test_reserved_opcode_is_encoded_as_given():
    assert build_frame(0x3, b"x", mask=False) == b"\x83\x01x"


def test_parsed_fragment_keeps_fin_false():
    frame = parse_client_frame(build_frame(wire.OP_TEXT, b"part", fin=False))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, False, b"part")


# ---------------------------------------------------------------- build_request


def test_request_keeps_duplicate_headers_in_order():
    data = build_request(
        "/ws?a=1", [("Host", "h.test"), ("Origin", "https://a"), ("Origin", "https://b")]
    )
    assert data == (
        b"GET /ws?a=1 HTTP/1.1\r\nHost: h.test\r\nOrigin: https://a\r\nOrigin: https://b\r\n\r\n"
    )


def test_request_ends_with_a_blank_line():
    assert build_request("/", []) == b"GET / HTTP/1.1\r\n\r\n"


def test_request_method():
    assert build_request("/", [("Host", "h")], method="POST").startswith(b"POST / HTTP/1.1\r\n")


def test_request_replaces_non_latin1():
    assert build_request("/", [("X", "中")]) == b"GET / HTTP/1.1\r\nX: ?\r\n\r\n"


def test_upgrade_headers():
    assert wire.upgrade_headers("h.test:8080", "dGhlIHNhbXBsZSBub25jZQ==") == [
        ("Host", "h.test:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]


# ---------------------------------------------------------------- Handshake / Received


def test_handshake_header_is_case_insensitive_and_first_wins():
    response = Handshake(101, headers=[("Server", "a"), ("server", "b")])
    assert (response.header("SERVER"), response.header("Via")) == ("a", None)


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (Handshake(403, "Forbidden"), "HTTP 403 Forbidden"),
        (Handshake(403), "HTTP 403"),
        (Handshake(None, error="timeout"), "timeout"),
        (Handshake(None), "no response"),
    ],
)
def test_handshake_describe(response: Handshake, text: str):
    assert response.describe() == text


@pytest.mark.parametrize(
    ("got", "text"),
    [
        (Received(close_code=1002, close_reason="x", closed=True), "close 1002 'x'"),
        (Received(close_code=1000, closed=True), "close 1000"),
        (Received(closed=True, error="boom"), "connection closed (boom)"),
        (Received(closed=True), "connection closed"),
        (Received(data=["a", "b"]), "2 message(s), connection still open"),
        (Received(), "no reply, connection still open"),
    ],
)
def test_received_describe(got: Received, text: str):
    assert got.describe() == text


# ---------------------------------------------------------------- Connection over a socket


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _finish(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def replying(data: bytes, *, hang_up: bool = False) -> Handler:
    """A server that writes ``data`` in one write, then hangs up or waits for the client to."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if data:
            writer.write(data)
            await writer.drain()
        if not hang_up:
            with contextlib.suppress(ConnectionError):
                await reader.read()
        await _finish(writer)

    return handle


@contextlib.asynccontextmanager
async def connected(handler: Handler) -> AsyncIterator[Connection]:
    async with serve(handler) as port:
        conn = await wire.open_connection(
            "127.0.0.1", port, tls=None, server_hostname=None, within=2.0
        )
        try:
            yield conn
        finally:
            await conn.close()


async def test_101_then_a_frame_in_the_same_write():
    async with connected(replying(RESPONSE_101 + server_frame(wire.OP_TEXT, b"hello"))) as conn:
        response = await conn.read_handshake(2.0)
        got = await conn.collect(2.0, until=lambda r: bool(r.data))
    assert (response.status, response.reason, response.accepted) == (
        101,
        "Switching Protocols",
        True,
    )
    assert response.headers == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]
    assert (got.data, got.closed, got.error) == (["hello"], False, "")


async def test_403_with_a_body():
    reply = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nServer: x/1.2\r\n\r\nforbidden"
    async with connected(replying(reply)) as conn:
        response = await conn.read_handshake(2.0)
    assert (response.status, response.reason, response.body, response.error) == (
        403,
        "Forbidden",
        "forbidden",
        "",
    )
    assert response.header("server") == "x/1.2"
    assert response.accepted is False


async def test_body_is_cut_at_2048_bytes():
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3000\r\n\r\n" + b"b" * 3000
    async with connected(replying(reply)) as conn:
        response = await conn.read_handshake(2.0)
    assert response.body == "b" * 2048


async def test_garbage_is_a_malformed_response():
    async with connected(replying(b"HELLO\r\n\r\n")) as conn:
        response = await conn.read_handshake(2.0)
    assert response.status is None
    assert response.error.startswith("malformed response")


async def test_server_closing_without_answer():
    async with connected(replying(b"", hang_up=True)) as conn:
        response = await conn.read_handshake(2.0)
    assert (response.status, response.error) == (None, "connection closed")


async def test_server_closing_mid_response():
    async with connected(replying(b"HTTP/1.1 101 Switching", hang_up=True)) as conn:
        response = await conn.read_handshake(2.0)
    assert (response.status, response.error) == (None, "connection closed")


async def test_silent_server_times_out():
    loop = asyncio.get_running_loop()
    async with connected(replying(b"")) as conn:
        started = loop.time()
        response = await conn.read_handshake(0.3)
        waited = loop.time() - started
    assert (response.status, response.error, response.describe()) == (None, "timeout", "timeout")
    assert 0.25 <= waited < 2.0


async def test_close_frame_code_and_reason():
    close = server_frame(wire.OP_CLOSE, struct.pack("!H", 1002) + b"x")
    async with connected(replying(RESPONSE_101 + close)) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0)
    assert (got.close_code, got.close_reason, got.closed, got.error) == (1002, "x", True, "")


async def test_close_frame_without_payload_has_no_code():
    async with connected(replying(RESPONSE_101 + server_frame(wire.OP_CLOSE))) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0)
    assert (got.close_code, got.close_reason, got.closed) == (None, "", True)


async def test_tcp_close_marks_closed_without_error():
    async with connected(replying(RESPONSE_101, hang_up=True)) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0)
    assert (got.closed, got.close_code, got.error) == (True, None, "")


async def test_handshake_over_max_read(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(wire, "MAX_READ", 1000)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000
    async with connected(replying(reply)) as conn:
        response = await conn.read_handshake(2.0)
    assert (response.status, response.error) == (
        None,
        "malformed response: the server sent more than 1000 bytes",
    )


def replying_after_go(first: bytes, then: bytes) -> Handler:
    """A server that writes ``first``, waits for the client's ``go``, then writes ``then``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        await writer.drain()
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readexactly(2)
            writer.write(then)
            await writer.drain()
            await reader.read()
        await _finish(writer)

    return handle


async def test_101_and_frames_over_max_read_in_one_chunk(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(wire, "MAX_READ", 1000)
    frames = server_frame(wire.OP_TEXT, b"m" * 98) * 50
    async with connected(replying(RESPONSE_101 + frames)) as conn:
        response = await conn.read_handshake(2.0)
    assert (response.status, response.error) == (
        None,
        "malformed response: the server sent more than 1000 bytes",
    )


async def test_frames_over_max_read_end_the_collection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(wire, "MAX_READ", 1000)
    frames = server_frame(wire.OP_TEXT, b"m" * 98) * 50  # 50 frames of 100 bytes
    async with connected(replying_after_go(RESPONSE_101, frames)) as conn:
        response = await conn.read_handshake(2.0)
        await conn.send(b"go")
        got = await conn.collect(2.0)
    assert response.status == 101
    assert (got.closed, got.error) == (
        True,
        "unparsable frame: the server sent more than 1000 bytes",
    )
    assert len(got.data) < 50


async def test_frame_declaring_a_huge_length_ends_the_collection():
    # Ten bytes declaring 2^62 bytes: the parser refuses it before reading any payload.
    huge = b"\x82\x7f" + struct.pack("!Q", 2**62)
    async with connected(replying(RESPONSE_101 + huge)) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0)
    assert got.closed is True
    assert got.error.startswith("unparsable frame: ")


async def test_masked_server_frame_is_unparsable():
    async with connected(replying(RESPONSE_101 + build_frame(wire.OP_TEXT, b"hi"))) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0)
    assert (got.closed, got.error) == (True, "unparsable frame: incorrect masking")


async def test_pongs_are_counted():
    pongs = server_frame(wire.OP_PONG, b"p") * 3
    async with connected(replying(RESPONSE_101 + pongs)) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(0.3)
    assert (got.pongs, got.data, got.closed) == (3, [], False)


async def test_binary_and_continuation_frames_are_recorded():
    frames = (
        server_frame(wire.OP_BINARY, b"\x00\x01")
        + build_frame(wire.OP_TEXT, b"ab", fin=False, mask=False)
        + server_frame(wire.OP_CONT, b"cd")
    )
    async with connected(replying(RESPONSE_101 + frames)) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0, until=lambda r: len(r.data) == 3)
    assert got.data == ["b'\\x00\\x01'", "ab", "cd"]


async def test_invalid_utf8_text_is_backslash_escaped():
    async with connected(replying(RESPONSE_101 + server_frame(wire.OP_TEXT, b"a\xffb"))) as conn:
        await conn.read_handshake(2.0)
        got = await conn.collect(2.0, until=lambda r: bool(r.data))
    assert got.data == ["a\\xffb"]


async def test_until_stops_early():
    frames = b"".join(server_frame(wire.OP_TEXT, t) for t in (b"a", b"b", b"c"))
    loop = asyncio.get_running_loop()
    async with connected(replying(RESPONSE_101 + frames)) as conn:
        await conn.read_handshake(2.0)
        started = loop.time()
        first = await conn.collect(5.0, until=lambda r: len(r.data) >= 1)
        waited = loop.time() - started
        rest = await conn.collect(5.0, until=lambda r: len(r.data) >= 2)
    assert (first.data, rest.data) == (["a"], ["b", "c"])
    assert waited < 1.0


async def test_send_reaches_the_server():
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.readexactly(5))
        await _finish(writer)

    async with connected(handle) as conn:
        assert await conn.send(b"hello") is True
        assert await asyncio.wait_for(received, 2.0) == b"hello"
