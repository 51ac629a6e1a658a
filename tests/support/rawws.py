"""A raw-socket WebSocket client for malformed and hostile traffic.

Independent of the server's engine on purpose: frames are built byte by byte, so a test can
send what no library would (unmasked frames, reserved bits, bad lengths, floods). ``frame`` is
the scanner's frame builder (``wsguard.scanner.wire.build_frame``), which ``wsguard scan``
uses for the same purpose; it shares no code with the websockets core the server runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from wsguard.scanner.wire import build_frame

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# One frame exactly as told, masked like a client by default (RFC 6455 §5.2).
frame = build_frame


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class RawClient:
    """One TCP connection speaking bytes. Every instance is closed by ``close_all()``."""

    opened: ClassVar[list[RawClient]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        RawClient.opened.append(self)

    @classmethod
    async def close_all(cls) -> None:
        clients, cls.opened = cls.opened, []
        for client in clients:
            client.writer.close()
            with contextlib.suppress(Exception):
                await client.writer.wait_closed()

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, rcvbuf: int | None = None
    ) -> RawClient:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_response(self, timeout: float = 5.0) -> HttpResponse:
        """Read an HTTP response head (and a Content-Length body)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        body = b""
        length = headers.get("content-length")
        if length:
            body = await asyncio.wait_for(self.reader.readexactly(int(length[0])), timeout)
        return HttpResponse(status, headers, head + body)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """Read one server frame (servers never mask, RFC 6455 §5.1)."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        return b0 & 0x0F, payload

    async def read_until_close(self, timeout: float = 5.0) -> int | None:
        """Read frames until a close frame; return its code (None for an empty close)."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the server closed the TCP connection (reads return nothing)."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionResetError:
            return True
        while data:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        return True

    def close(self) -> None:
        self.writer.close()


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def handshake_bytes(
    port: int,
    *,
    path: str = "/ws",
    host: str | None = None,
    origin: str | None = "same",
    extra: list[tuple[str, str]] | None = None,
    drop: tuple[str, ...] = (),
    method: str = "GET",
    version: str = "HTTP/1.1",
) -> bytes:
    """A valid opening handshake for 127.0.0.1:port, then varied by the arguments."""
    host = host or f"127.0.0.1:{port}"
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", ws_key()),
        ("Sec-WebSocket-Version", "13"),
    ]
    if origin == "same":
        fields.append(("Origin", f"http://127.0.0.1:{port}"))
    elif origin is not None:
        fields.append(("Origin", origin))
    fields = [f for f in fields if f[0] not in drop]
    fields += extra or []
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return (head + "\r\n").encode()
