"""A hostile WebSocket server on 127.0.0.1:PORT: it attacks the scanner's output, not its victims.

Run: ``python hostile.py --port N``. Written on raw asyncio streams because no server library
lets an application put terminal control sequences into a header or a close reason.

What it sends back (none of it may reach a terminal, an HTML page or a SARIF viewer raw):

- a ``Server`` header with a version, HTML and rich markup;
- on every handshake, 101, then a text frame with ANSI clear-screen, a bidi override and markup
  (``<script>``, rich's ``[bold]``);
- an echo of every text message (so reflected-input evidence carries the scanner's marker
  next to the server's escapes), and a close frame 1002 whose reason carries ANSI colour codes
  and a version string in reply to any frame it cannot handle (unmasked, reserved bits...).

It checks nothing: no Origin, Host or credentials, no limits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOSTILE = "\x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c <script>alert(1)</script> [bold]rich[/bold]"
# HTTP forbids control characters in header values (the scanner's parser refuses them, which
# stops the scan safely); the banner carries markup instead.
BANNER = "evil/6.6 <script>alert(2)</script> [bold]banner[/bold]"
REASON = "\x1b[31mparser 2.7.1 exploded\x1b[0m"


def frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 65536:
        return head + bytes([126]) + struct.pack("!H", n) + payload
    return head + bytes([127]) + struct.pack("!Q", n) + payload


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324 (RFC 6455)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nServer: " + BANNER.encode() + b"\r\n\r\n"
        )
        writer.write(frame(0x1, HOSTILE.encode()))
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            if not b1 & 0x80 or b0 & 0x70 or n > 1 << 20:
                writer.write(frame(0x8, struct.pack("!H", 1002) + REASON.encode()))
                break
            mask = await reader.readexactly(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                writer.write(frame(0x8, data[:2]))
                break
            if opcode == 0x1:
                writer.write(frame(0x1, data + b" " + HOSTILE.encode()))
            elif opcode == 0x9:
                writer.write(frame(0xA, data))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
