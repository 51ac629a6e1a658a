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
    timer = conn._timer
    assert timer is not None
    assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(
        settings.limits.close_timeout, abs=0.5
    )
    timer.cancel()
    conn._on_timer()
    assert transport.aborted
    conn.connection_lost(None)
