"""EngineProtocol, the websockets server core as wsguard drives it, fed bytes directly (sans
I/O) on a fake clock: the ping token bucket fails a flood with 1008 before queueing its pong,
and close reasons the core would send (which name its parser rules) become fixed phrases. Its
101 is websockets' own but for a ``Date`` formatted once per second; its refusals are
websockets' own."""

from __future__ import annotations

import email.utils
import struct
import sys

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from wsguard.server import responses
from wsguard.server.protocol import GENERIC_REASONS, EngineProtocol
from wsguard.server.responses import http_date

REQUEST = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8765\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Origin: http://127.0.0.1:8765\r\n\r\n"
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.times = [100.0]

    def __call__(self) -> float:
        return self.times[-1]

    def advance(self, seconds: float) -> None:
        self.times.append(self.times[-1] + seconds)


def opened(**kwargs: object) -> EngineProtocol:
    """A protocol past a successful opening handshake, its 101 already taken."""
    proto = EngineProtocol(**kwargs)  # type: ignore[arg-type]
    proto.receive_data(REQUEST)
    [request] = proto.events_received()
    assert isinstance(request, Request)
    response = proto.accept(request)
    assert response.status_code == 101
    proto.send_response(response)
    assert proto.data_to_send()[0].startswith(b"HTTP/1.1 101 ")
    assert proto.state is State.OPEN
    return proto


def sent_frames(proto: EngineProtocol) -> list[Frame]:
    """Parse everything the protocol queued for the client (server frames are unmasked)."""
    reader = StreamReader()
    reader.feed_data(b"".join(proto.data_to_send()))
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("truncated frame")
    return frames


def summary(frames: list[Frame]) -> list[object]:
    """Each frame as its opcode name, or (code, reason) for a close frame."""
    out: list[object] = []
    for frame in frames:
        if frame.opcode is Opcode.CLOSE:
            close = Close.parse(frame.data)
            out.append((close.code, close.reason))
        else:
            out.append(frame.opcode.name)
    return out


def ping(payload: bytes = b"p") -> bytes:
    return Frame(Opcode.PING, payload).serialize(mask=True)


def raw_frame(first: int, payload: bytes, *, masked: bool = True) -> bytes:
    head = bytes([first, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# ---------------------------------------------------------------- ping bucket


def test_ping_flood_past_the_burst_fails_with_1008():
    proto = opened(ping_rate=2, ping_burst=3, clock=FakeClock())
    proto.receive_data(ping() * 5)
    assert summary(sent_frames(proto)) == ["PONG", "PONG", "PONG", (1008, "policy violation")]
    assert proto.state is State.CLOSING


def test_pongs_echo_the_ping_payload():
    proto = opened(ping_rate=2, ping_burst=3, clock=FakeClock())
    proto.receive_data(ping(b"abc"))
    assert [(f.opcode, f.data) for f in sent_frames(proto)] == [(Opcode.PONG, b"abc")]


def test_ping_bucket_refills_at_the_rate():
    clock = FakeClock()
    proto = opened(ping_rate=2, ping_burst=3, clock=clock)
    proto.receive_data(ping() * 3)
    clock.advance(1.0)
    proto.receive_data(ping() * 2)
    assert summary(sent_frames(proto)) == ["PONG"] * 5
    assert proto.state is State.OPEN


def test_refill_is_only_what_elapsed():
    clock = FakeClock()
    proto = opened(ping_rate=2, ping_burst=3, clock=clock)
    proto.receive_data(ping() * 3)
    clock.advance(1.0)  # two tokens
    proto.receive_data(ping() * 3)
    assert summary(sent_frames(proto)) == ["PONG"] * 5 + [(1008, "policy violation")]


def test_pings_after_the_failure_are_not_answered():
    proto = opened(ping_rate=1, ping_burst=1, clock=FakeClock())
    proto.receive_data(ping() * 2)
    proto.receive_data(ping())
    assert summary(sent_frames(proto)) == ["PONG", (1008, "policy violation")]


def test_without_ping_rate_every_ping_is_answered():
    proto = opened(clock=FakeClock())
    proto.receive_data(ping() * 50)
    assert summary(sent_frames(proto)) == ["PONG"] * 50


def test_without_a_clock_there_is_no_bucket():
    proto = opened(ping_rate=1, ping_burst=1)
    proto.receive_data(ping() * 5)
    assert summary(sent_frames(proto)) == ["PONG"] * 5


def test_pongs_from_the_client_do_not_spend_the_bucket():
    proto = opened(ping_rate=1, ping_burst=1, clock=FakeClock())
    proto.receive_data(Frame(Opcode.PONG, b"x").serialize(mask=True) * 5 + ping())
    assert summary(sent_frames(proto)) == ["PONG"]


def test_data_frames_do_not_spend_the_bucket():
    proto = opened(ping_rate=1, ping_burst=1, clock=FakeClock())
    proto.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True) * 5 + ping())
    assert summary(sent_frames(proto)) == ["PONG"]
    assert [f.data for f in proto.events_received() if f.opcode is Opcode.TEXT] == [b"hi"] * 5


# ---------------------------------------------------------------- close reasons


def test_unmasked_frame_closes_with_a_generic_protocol_error():
    proto = opened()
    proto.receive_data(raw_frame(0x81, b"hi", masked=False))
    assert summary(sent_frames(proto)) == [(1002, "protocol error")]


def test_reserved_bit_closes_with_a_generic_protocol_error():
    proto = opened()
    proto.receive_data(raw_frame(0xA1, b"hi"))  # FIN + RSV2 + text
    assert summary(sent_frames(proto)) == [(1002, "protocol error")]


def test_reserved_opcode_closes_with_a_generic_protocol_error():
    proto = opened()
    proto.receive_data(raw_frame(0x83, b"x"))
    assert summary(sent_frames(proto)) == [(1002, "protocol error")]


def test_frame_over_max_size_closes_with_message_too_big():
    proto = opened(max_size=100)
    proto.receive_data(Frame(Opcode.BINARY, b"x" * 200).serialize(mask=True))
    assert summary(sent_frames(proto)) == [(1009, "message too big")]


def test_wsguards_own_reason_is_kept():
    proto = opened()
    proto.fail(1009, "too many fragments")
    assert summary(sent_frames(proto)) == [(1009, "too many fragments")]


@pytest.mark.parametrize(("code", "reason"), sorted(GENERIC_REASONS.items()))
def test_generic_reasons_pass_unchanged(code: int, reason: str):
    proto = opened()
    proto.fail(code, reason)
    assert summary(sent_frames(proto)) == [(code, reason)]


def test_a_foreign_reason_becomes_the_codes_generic_phrase():
    proto = opened()
    proto.fail(1011, "KeyError: 'user' in handler.py line 42")
    assert summary(sent_frames(proto)) == [(1011, "internal error")]


def test_a_foreign_reason_on_a_code_without_a_phrase_is_dropped():
    proto = opened()
    proto.fail(1001, "server restarting at 03:00")
    assert summary(sent_frames(proto)) == [(1001, "")]


def test_generic_reasons_table():
    assert GENERIC_REASONS == {
        1002: "protocol error",
        1007: "invalid UTF-8",
        1008: "policy violation",
        1009: "message too big",
        1011: "internal error",
    }


# ---------------------------------------------------------------- close between fragments


def test_close_between_fragments_is_an_ordinary_close():
    proto = opened()
    proto.receive_data(
        Frame(Opcode.TEXT, b"part", fin=False).serialize(mask=True)
        + Frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"bye").serialize(mask=True)
    )
    assert summary(sent_frames(proto)) == [(1000, "bye")]


# ---------------------------------------------------------------- the 101


def parsed(request: bytes, **kwargs: object) -> tuple[EngineProtocol, ServerProtocol, Request]:
    """The same request parsed by EngineProtocol and by websockets' own ServerProtocol."""
    ours, theirs = EngineProtocol(**kwargs), ServerProtocol(**kwargs)  # type: ignore[arg-type]
    for proto in (ours, theirs):
        proto.receive_data(request)
    [request_ours] = ours.events_received()
    [request_theirs] = theirs.events_received()
    assert isinstance(request_ours, Request)
    assert isinstance(request_theirs, Request)
    return ours, theirs, request_ours


def with_header(line: bytes) -> bytes:
    return REQUEST[:-2] + line + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "kwargs"),
    [
        pytest.param(REQUEST, {}, id="plain"),
        pytest.param(
            with_header(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
            {"extensions": [ServerPerMessageDeflateFactory()]},
            id="deflate-negotiated",
        ),
        pytest.param(
            with_header(b"Sec-WebSocket-Protocol: chat, superchat"),
            {"subprotocols": ["superchat"]},
            id="subprotocol-selected",
        ),
    ],
)
def test_the_101_is_websockets_own_but_for_the_date(request_bytes: bytes, kwargs: object):
    assert isinstance(kwargs, dict)
    ours, theirs, request = parsed(request_bytes, **kwargs)
    mine, reference = ours.accept(request), theirs.accept(request)
    assert (mine.status_code, mine.reason_phrase, mine.body) == (101, "Switching Protocols", b"")
    assert [name for name, _ in mine.headers.raw_items()] == [
        name for name, _ in reference.headers.raw_items()
    ]
    for (name, value), (_, expected) in zip(
        mine.headers.raw_items(), reference.headers.raw_items(), strict=True
    ):
        if name == "Date":
            # Formatted when each accept ran: equal, or a second apart across a tick.
            then = email.utils.parsedate_to_datetime(value).timestamp()
            assert abs(then - email.utils.parsedate_to_datetime(expected).timestamp()) <= 1
        else:
            assert value == expected, name
    assert ours.accept_called
    assert (ours.extensions and type(ours.extensions[0])) == (
        theirs.extensions and type(theirs.extensions[0])
    )
    assert ours.subprotocol == theirs.subprotocol
    ours.send_response(mine)
    assert ours.state is State.OPEN


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(REQUEST.replace(b"GET", b"PUT", 1), 405, id="not-get"),
        pytest.param(REQUEST.replace(b"Upgrade: websocket", b"Upgrade: h2c"), 426, id="upgrade"),
        pytest.param(REQUEST.replace(b"Version: 13", b"Version: 8"), 400, id="version"),
        pytest.param(REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400, id="key"),
        pytest.param(
            REQUEST.replace(b"Connection: Upgrade", b"Connection: keep-alive"), 426, id="connection"
        ),
    ],
)
def test_a_refused_request_gets_websockets_own_refusal(request_bytes: bytes, status: int):
    ours, theirs, request = parsed(request_bytes)
    mine, reference = ours.accept(request), theirs.accept(request)
    assert mine.status_code == reference.status_code == status
    assert mine.body == reference.body
    assert type(ours.handshake_exc) is type(theirs.handshake_exc)
    assert ours.handshake_exc is not None


def test_the_date_is_formatted_once_per_second(monkeypatch: pytest.MonkeyPatch):
    calls: list[float] = []
    real = email.utils.formatdate

    def counted(timeval: float, usegmt: bool) -> str:
        calls.append(timeval)
        return real(timeval, usegmt=usegmt)

    monkeypatch.setattr(responses.email.utils, "formatdate", counted)
    first = http_date(1_796_000_000.1)
    assert first == "Mon, 30 Nov 2026 00:53:20 GMT"
    assert http_date(1_796_000_000.9) is first
    assert http_date(1_796_000_001.0) == "Mon, 30 Nov 2026 00:53:21 GMT"
    assert http_date(1_796_000_001.5) == "Mon, 30 Nov 2026 00:53:21 GMT"
    # A clock stepped back is formatted again, never answered from the newer second.
    assert http_date(1_796_000_000.2) == first
    assert calls == [1_796_000_000, 1_796_000_001, 1_796_000_000]


def test_an_open_protocol_shares_its_attribute_names_with_the_others():
    """CPython keeps an instance's attribute values apart from their names (shared by every
    instance of the class) only up to about 30 names; one more and each connection's core
    holds a full dict, 1.6 KB instead of 0.3 (measured with bench idle5000: 7.2 KiB per idle
    connection instead of 6.0). websockets' core has 26: EngineProtocol adds two."""
    ours = opened(ping_rate=1, ping_burst=2, clock=FakeClock())
    theirs = ServerProtocol(max_size=2**20)
    theirs.receive_data(REQUEST)
    [request] = theirs.events_received()
    assert isinstance(request, Request)
    theirs.send_response(theirs.accept(request))
    assert len(vars(ours)) - len(vars(theirs)) == 2
    assert sys.getsizeof(vars(ours)) <= sys.getsizeof(vars(theirs)) + 16
    ours.receive_data(ping())  # the ping bucket takes the place of its rate and burst
    assert summary(sent_frames(ours)) == ["PONG"]
    assert len(vars(ours)) - len(vars(theirs)) == 2
