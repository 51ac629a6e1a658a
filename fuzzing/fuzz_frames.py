"""Fuzz the frames a client sends after a successful opening handshake, through the listener's
own code: ``WsConnection`` (our ``asyncio.Protocol``) over ``EngineProtocol`` (the websockets
sans-I/O core), on a fake transport, with and without permessage-deflate. Complete text
messages then go through ``MessageGate`` (rate, codec, envelope) as a session's do.

Invariant: nothing raises and nothing is logged at ERROR (the listener turns an exception in
its frame handling into a 1011 close and a log line, which would hide a bug); every message
handed to the session is within ``limits.max_message_bytes``, text is valid UTF-8, and the
gate's answer is an envelope or a documented ``Violation``; at most ``limits.burst`` pongs are
sent (a ping flood fails with 1008); every close frame the server starts carries a documented
code and one of the fixed generic reasons (never the parser's own wording, which fingerprints
the library and discloses limits); a close it echoes is the client's own.

Run: ``python fuzzing/fuzz_frames.py fuzzing/corpus/frames``.
"""

# A harness reports a broken invariant to libFuzzer by raising: assert is the tool here (never
# run a harness under python -O).
# ruff: noqa: S101, PT018

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import struct
import sys
from typing import Any, Final

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from wsguard.audit import AuditLog
from wsguard.codes import CloseCode
from wsguard.core import codec, envelope
from wsguard.core.codec import Violation
from wsguard.core.pipeline import MessageGate, UserRates
from wsguard.server.engine import Connection
from wsguard.server.lifecycle import Server
from wsguard.server.listener import WsConnection
from wsguard.server.protocol import GENERIC_REASONS
from wsguard.settings import AuthConfig, LimitsConfig, ServerConfig, Settings

KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="
REQUEST: Final = (
    "GET /ws HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://127.0.0.1:8080\r\n"
    "{extensions}\r\n"
)
DEFLATE_OFFER: Final = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
# Small enough that the fuzzer reaches the size and fragment limits with short inputs.
LIMITS: Final = LimitsConfig(max_message_bytes=2048, max_fragments=8, burst=8)
# Codes the server may start a close with (docs/reference/codes.md).
SERVER_CODES: Final = {
    CloseCode.PROTOCOL_ERROR,
    CloseCode.INVALID_DATA,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
}
OWN_REASONS: Final = {*GENERIC_REASONS.values(), "too many fragments"}
REPLY_REASONS: Final = codec.REASONS | envelope.REASONS | {"rate_limited"}


class _Errors(logging.Handler):
    """Collects what wsguard logs at ERROR: the listener's fail-closed paths log there."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS: Final = _Errors()
# Only a handler at import: the test suite imports this module, and a level or propagate
# change here would silence wsguard's warnings for every test after it.
logging.getLogger("wsguard").addHandler(ERRORS)


class FakeTransport(asyncio.Transport):
    """Collects what the listener writes; a TCP peer on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "written after close"
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class GateSession:
    """A session that runs each message through the gate a ``ProtocolSession`` runs, and
    echoes text (so the write path runs too)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.gate = MessageGate(LIMITS, UserRates(LIMITS))

    def on_open(self) -> None:
        pass

    def on_text(self, text: str) -> None:
        size = len(text.encode("utf-8"))  # raises on a lone surrogate: the listener's job
        assert size <= LIMITS.max_message_bytes, size
        result = self.gate.admit(text, size, "ip:127.0.0.1", 0.0)
        if isinstance(result, Violation):
            assert result.reason in REPLY_REASONS, result
        self.conn.send_text(text.encode("utf-8"))

    def on_binary(self, data: bytes) -> None:
        assert len(data) <= LIMITS.max_message_bytes, len(data)
        self.gate.charge(len(data), "ip:127.0.0.1", 0.0)

    def on_read_end(self) -> None:
        pass

    def on_close(self, code: int | None) -> None:
        pass

    def keeps_alive(self) -> bool:
        return True


def _settings(compression: bool) -> Settings:
    return Settings(
        server=ServerConfig(port=8080),
        auth=AuthConfig(required=False, methods=()),
        limits=dataclasses.replace(LIMITS, compression=compression),
    )


LOOP: Final = asyncio.new_event_loop()
# An hour passes between handshakes: the handshake rate limit refills, so no input depends on
# the ones before it (libFuzzer needs every input to take the same path each time).
_hours = itertools.count(1_700_000_000.0, 3600.0)


def _clock() -> float:
    return next(_hours)


async def _states() -> tuple[Any, Any]:
    return tuple(  # type: ignore[return-value]
        Server(
            _settings(c), session_factory=GateSession, clock=_clock, audit=AuditLog(enabled=False)
        )._state
        for c in (False, True)
    )


STATES: Final = LOOP.run_until_complete(_states())


def server_frames(written: bytes, extensions: list[Any]) -> list[Frame]:
    """Parse what the server sent after its 101 (server frames are unmasked)."""
    head, _, rest = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head[:40]
    reader = StreamReader()
    reader.feed_data(rest)
    reader.feed_eof()
    frames = []
    while True:
        parser = Frame.parse(reader.read_exact, mask=False, extensions=extensions)
        try:
            next(parser)
            raise AssertionError("incomplete frame")  # pragma: no cover
        except StopIteration as done:
            frames.append(done.value)
        except EOFError:
            return frames
        except (ProtocolError, PayloadTooBig) as exc:
            raise AssertionError(f"the server sent an invalid frame: {exc}") from None


async def run(data: bytes, compression: bool) -> None:
    state = STATES[compression]
    conn = WsConnection(state)
    transport = FakeTransport()
    conn.connection_made(transport)
    offer = DEFLATE_OFFER if compression else ""
    conn.data_received(REQUEST.format(extensions=offer).encode())
    proto = conn._proto
    assert conn.is_open, transport.written[:1]
    extensions = list(proto.extensions)
    assert bool(extensions) == compression
    # Half now, half later: the core must not care where reads split a frame.
    half = len(data) // 2
    for chunk in (data[:half], data[half:]):
        if chunk and not transport.closing:
            conn.data_received(chunk)
    if not transport.closing:
        conn.eof_received()
    close_rcvd = proto.close_rcvd
    conn.connection_lost(None)
    frames = server_frames(b"".join(transport.written), extensions)
    pongs = [f for f in frames if f.opcode is Opcode.PONG]
    assert len(pongs) <= LIMITS.burst, len(pongs)
    for frame in frames:
        if frame.opcode is not Opcode.CLOSE:
            continue
        close = Close.parse(frame.data) if frame.data else None
        # The echo of the client's own close (RFC 6455 §5.5.1); an empty one (read as 1005,
        # "no status received") is echoed empty.
        echo = close_rcvd if close_rcvd is None or close_rcvd.code != 1005 else None
        if close_rcvd is not None and close == echo:
            continue
        assert close is not None and close.code in SERVER_CODES, close
        assert close.reason in OWN_REASONS, close


def TestOneInput(data: bytes) -> None:
    ERRORS.records.clear()
    for compression in (False, True):
        LOOP.run_until_complete(run(data, compression))
        assert not ERRORS.records, [r.getMessage() for r in ERRORS.records]


def mask(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One client frame (masked, as RFC 6455 §5.3 requires): for writing seeds and tests."""
    head = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    key = b"\x37\xfa\x21\x3d"
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", head, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", head, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", head, 0x80 | 127, length)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


if __name__ == "__main__":
    import atheris

    # Under the fuzzer, keep millions of inputs from printing wsguard's warnings.
    logging.getLogger("wsguard").propagate = False
    logging.getLogger("wsguard").setLevel(logging.ERROR)

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
