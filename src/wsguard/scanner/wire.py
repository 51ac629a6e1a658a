"""Raw WebSocket traffic for the probes: handshakes and frames exactly as a probe asks.

A scanner must send what no client library will (two Origin headers, unmasked frames, reserved
bits, a 64-bit length with its top bit set), so requests and frames are built byte by byte here.
Responses and server frames are parsed with the websockets library's sans-I/O parsers, with
bounds: a hostile server cannot make the scanner buffer more than :data:`MAX_READ` bytes or wait
longer than the caller's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import struct
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.base import Extension
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.streams import StreamReader

__all__ = [
    "MAX_READ",
    "Connection",
    "Handshake",
    "Received",
    "build_frame",
    "build_request",
    "open_connection",
]

MAX_READ: Final = 4 * 1024 * 1024  # what the scanner buffers from one server, at most
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_T = TypeVar("_T")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """Encode one frame exactly as told (RFC 6455 §5.2), masked like a client by default.

    ``length`` overrides the declared payload length (for frames that lie about their size).
    """
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload) if length is None else length
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    # XOR through int arithmetic: fast enough for the megabyte payloads of the size probes.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )
    return head + key + masked


def build_request(
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    method: str = "GET",
) -> bytes:
    """An HTTP/1.1 request head with ``headers`` in order, duplicates kept."""
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def upgrade_headers(host: str, key: str | None = None) -> list[tuple[str, str]]:
    """The headers every opening handshake needs (RFC 6455 §4.1), Origin left to the caller."""
    return [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key or base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]


@dataclass(slots=True)
class Handshake:
    """The server's answer to an opening handshake; ``status`` is None when there was none."""

    status: int | None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    error: str = ""  # why there is no answer: "timeout", "connection closed", "TLS: ..."

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def accepted(self) -> bool:
        return self.status == 101

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no response"
        return f"HTTP {self.status} {self.reason}".rstrip()


@dataclass(slots=True)
class Received:
    """What came back on an open connection within a time window."""

    data: list[str] = field(default_factory=list)  # text (or repr of binary) data messages
    pongs: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed: bool = False  # a close frame arrived or the TCP connection ended
    error: str = ""  # a frame the parser refused, or a reset

    def describe(self) -> str:
        if self.close_code is not None:
            text = f"close {self.close_code}"
            return f"{text} {self.close_reason!r}" if self.close_reason else text
        if self.closed:
            return f"connection closed ({self.error})" if self.error else "connection closed"
        if self.data:
            return f"{len(self.data)} message(s), connection still open"
        return "no reply, connection still open"


class Connection:
    """One TCP (or TLS) connection to the target, with a bounded parse buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = StreamReader()
        self._eof = False
        self._read_total = 0
        self.extensions: list[Extension] = []

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False when the server has already closed the connection."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    async def _fill(self, deadline: float) -> None:
        """Read more bytes into the parse buffer, or mark the end of the stream."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        try:
            chunk = await asyncio.wait_for(self._reader.read(65536), remaining)
        except TimeoutError:  # a subclass of OSError: not the end of the stream
            raise
        except (ConnectionError, OSError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self._eof = True
            self._buffer.feed_eof()
            return
        self._read_total += len(chunk)
        if self._read_total > MAX_READ:
            raise OverflowError(f"the server sent more than {MAX_READ} bytes")
        self._buffer.feed_data(chunk)

    async def _drive(self, parser: Generator[None, None, _T], deadline: float) -> _T:
        """Run a websockets generator parser, reading from the socket whenever it needs more."""
        try:
            while True:
                next(parser)
                if self._eof:
                    # The parser wants more but the stream ended: let it raise EOFError.
                    continue
                await self._fill(deadline)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def read_handshake(self, within: float) -> Handshake:
        """Read the response to an opening handshake, waiting ``within`` seconds at most."""
        deadline = asyncio.get_running_loop().time() + within
        parser = Response.parse(
            self._buffer.read_line, self._buffer.read_exact, self._buffer.read_to_eof
        )
        try:
            response = await self._drive(parser, deadline)
        except TimeoutError:
            return Handshake(None, error="timeout")
        except EOFError:
            return Handshake(None, error="connection closed")
        except (ValueError, LookupError, NotImplementedError, OverflowError) as exc:
            return Handshake(None, error=f"malformed response: {exc}")
        except Exception as exc:  # SecurityError and friends from the parser's limits
            return Handshake(None, error=f"malformed response: {type(exc).__name__}")
        body = bytes(response.body or b"")[:2048].decode("utf-8", "backslashreplace")
        return Handshake(
            response.status_code,
            response.reason_phrase,
            list(response.headers.raw_items()),
            body,
        )

    async def _read_frame(self, deadline: float) -> Frame:
        parser = Frame.parse(
            self._buffer.read_exact, mask=False, max_size=MAX_READ, extensions=self.extensions
        )
        return await self._drive(parser, deadline)

    async def collect(
        self, window: float, *, until: Callable[[Received], bool] | None = None
    ) -> Received:
        """Read frames for up to ``window`` seconds, or until the server closes or ``until``."""
        got = Received()
        deadline = asyncio.get_running_loop().time() + window
        while not got.closed and not (until is not None and until(got)):
            try:
                frame = await self._read_frame(deadline)
            except TimeoutError:
                break
            except EOFError:
                got.closed = True
            except (ProtocolError, PayloadTooBig, OverflowError, ValueError) as exc:
                got.closed, got.error = True, f"unparsable frame: {exc}"
            else:
                self._record(frame, got)
        return got

    @staticmethod
    def _record(frame: Frame, got: Received) -> None:
        if frame.opcode is Opcode.CLOSE:
            got.closed = True
            if len(frame.data) >= 2:
                got.close_code = struct.unpack("!H", frame.data[:2])[0]
                got.close_reason = bytes(frame.data[2:]).decode("utf-8", "backslashreplace")
        elif frame.opcode is Opcode.PONG:
            got.pongs += 1
        elif frame.opcode is Opcode.TEXT:
            got.data.append(bytes(frame.data).decode("utf-8", "backslashreplace"))
        elif frame.opcode is Opcode.BINARY:
            got.data.append(repr(bytes(frame.data[:512])))
        # Fragmented replies arrive as CONT frames; their text is kept too.
        elif frame.opcode is Opcode.CONT:
            got.data.append(bytes(frame.data).decode("utf-8", "backslashreplace"))


async def open_connection(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    within: float,
) -> Connection:
    """Connect (and run the TLS handshake) within ``within`` seconds.

    Raises:
        TimeoutError, OSError, ssl.SSLError: as the connection fails.
    """
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            host,
            port,
            ssl=tls,
            server_hostname=server_hostname if tls is not None else None,
            limit=65536,
        ),
        within,
    )
    return Connection(reader, writer)
