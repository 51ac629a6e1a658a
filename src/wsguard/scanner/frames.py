"""The frame-level probes: limits, RFC 6455 framing rules, reflected input and disclosure.

Each runs on its own connection opened as a legitimate client would (trusted origin, every
credential given), so a refusal can be told apart from the handshake's. A server "refuses" by
sending a close frame or dropping the TCP connection; anything else (an echo, an answer, silence
on an open socket) means it accepted what it should not have. Payloads stay small: the size and
compression probes send about 1 MiB and 16 KiB once, never a flood.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import zlib
from typing import Final

from wsguard.scanner import wire
from wsguard.scanner.model import Evidence
from wsguard.scanner.session import ScanSession

__all__ = [
    "probe_disclosure",
    "probe_framing",
    "probe_input",
    "probe_limits",
    "probe_slow_handshake",
]

SIZE_PROBE: Final = 1024 * 1024 + 1  # one byte over 1 MiB
BOMB_SIZE: Final = 16 * 1024 * 1024 + 1  # inflated size of the compression bomb
FRAGMENTS: Final = 1000
PINGS: Final = 200


async def _refused(
    s: ScanSession, label: str, check_id: str, summary: str, payload: bytes, *, sent: str
) -> None:
    """Send ``payload`` on a fresh legitimate connection; a finding unless the server closes."""
    conn, _ = await s.open_authenticated(label)
    try:
        delivered = await conn.send(payload)
        got = await conn.collect(s.options.timeout if delivered else 1.0)
    finally:
        await conn.close()
    s.saw_close(label, got)
    if got.closed:
        s.verdicts.ok(check_id)
    else:
        reply = " | ".join(text[:120] for text in got.data[:3]) or got.describe()
        s.verdicts.fail(check_id, summary, [Evidence(label, sent, reply)])


async def probe_framing(s: ScanSession) -> None:
    """RFC 6455 MUSTs: each malformed frame must fail the connection."""
    ping = b'{"id": 1, "op": "ping"}'
    cases = [
        (
            "frame-unmasked",
            "unmasked frame",
            "The server accepted an unmasked client frame.",
            wire.build_frame(wire.OP_TEXT, ping, mask=False),
            "text frame, MASK bit 0",
        ),
        (
            "frame-reserved-bits",
            "RSV2 set",
            "The server accepted a frame with RSV2 set.",
            wire.build_frame(wire.OP_TEXT, ping, rsv=2),
            "text frame, RSV2 = 1",
        ),
        (
            "frame-opcode",
            "opcode 0x3",
            "The server accepted a frame with reserved opcode 0x3.",
            wire.build_frame(0x3, b"x"),
            "opcode 0x3",
        ),
        (
            "frame-utf8",
            "invalid UTF-8",
            "The server accepted a text message of invalid UTF-8.",
            wire.build_frame(wire.OP_TEXT, b'{"op": "\xff\xfe\xc3\x28"}'),
            "text 0xff 0xfe 0xc3 0x28",
        ),
        (
            "frame-length",
            "2^63 length",
            "The server did not refuse a frame declaring 2^63 bytes.",
            wire.build_frame(wire.OP_BINARY, b"", length=2**63) + b"\x00" * 64,
            "binary frame, 64-bit length 0x8000000000000000",
        ),
    ]
    for check_id, label, summary, payload, sent in cases:
        await _refused(s, label, check_id, summary, payload, sent=sent)


async def probe_limits(s: ScanSession) -> None:
    """Message size, fragment count, compression, ping floods and idle sockets."""
    v = s.verdicts
    await _refused(
        s,
        "1 MiB + 1 message",
        "limits-message-size",
        f"A {SIZE_PROBE:,}-byte message was not refused.",
        wire.build_frame(wire.OP_BINARY, b"\x00" * SIZE_PROBE),
        sent=f"{SIZE_PROBE:,} bytes",
    )
    fragments = [wire.build_frame(wire.OP_TEXT, b"a", fin=False)]
    fragments += [wire.build_frame(wire.OP_CONT, b"a", fin=False)] * (FRAGMENTS - 2)
    fragments.append(wire.build_frame(wire.OP_CONT, b"a"))
    await _refused(
        s,
        "1,000 fragments",
        "limits-fragments",
        f"A text message in {FRAGMENTS:,} one-byte fragments was not refused.",
        b"".join(fragments),
        sent=f"{FRAGMENTS:,} fragments of 1 byte",
    )
    await _compression(s)
    await _ping_flood(s)
    if s.options.idle_wait <= 0:
        v.skip("limits-idle", "pass --idle-wait SECONDS to check that idle sockets are closed")
    else:
        conn, _ = await s.open_authenticated("idle")
        got = await conn.collect(s.options.idle_wait)
        await conn.close()
        if got.closed:
            v.ok("limits-idle")
        else:
            v.fail(
                "limits-idle",
                f"A silent connection was still open after {s.options.idle_wait:g} s.",
                [Evidence("idle", f"nothing for {s.options.idle_wait:g} s", got.describe())],
            )


async def _compression(s: ScanSession) -> None:
    v = s.verdicts
    offer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
    response, conn = await s.handshake(
        "compression offer", token=True, ticket=True, headers=[offer]
    )
    if conn is None:
        v.skip("limits-compression", f"the handshake was refused ({response.describe()})")
        v.skip("limits-compression-bomb", "the handshake was refused")
        return
    accepted = response.header("Sec-WebSocket-Extensions") or ""
    if "permessage-deflate" not in accepted.lower():
        await conn.close()
        v.ok("limits-compression")
        v.ok("limits-compression-bomb")
        return
    v.fail(
        "limits-compression",
        "The server negotiated permessage-deflate.",
        [
            Evidence(
                "extension offer",
                f"{offer[0]}: {offer[1]}",
                f"Sec-WebSocket-Extensions: {accepted}",
            )
        ],
    )
    match = re.search(r"client_max_window_bits=(\d+)", accepted)
    bits = int(match.group(1)) if match else 15
    compressor = zlib.compressobj(9, zlib.DEFLATED, -bits)
    bomb = compressor.compress(b"\x00" * BOMB_SIZE) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb.removesuffix(b"\x00\x00\xff\xff")  # RFC 7692 §7.2.1
    try:
        await conn.collect(0.3)
        delivered = await conn.send(wire.build_frame(wire.OP_BINARY, bomb, rsv=4))
        got = await conn.collect(s.options.timeout if delivered else 1.0)
    finally:
        await conn.close()
    s.saw_close("compression bomb", got)
    if got.closed:
        v.ok("limits-compression-bomb")
    else:
        v.fail(
            "limits-compression-bomb",
            f"{len(bomb):,} compressed bytes inflating to {BOMB_SIZE:,} were not refused.",
            [
                Evidence(
                    "compression bomb", f"{len(bomb):,} bytes, RSV1", got.error or got.describe()
                )
            ],
        )


async def _ping_flood(s: ScanSession) -> None:
    conn, _ = await s.open_authenticated("ping flood")
    try:
        await conn.send(b"".join(wire.build_frame(wire.OP_PING, b"wsgs") for _ in range(PINGS)))
        got = await conn.collect(s.options.timeout, until=lambda r: r.pongs >= PINGS)
    finally:
        await conn.close()
    s.saw_close("ping flood", got)
    if got.closed or got.pongs < PINGS:
        s.verdicts.ok("limits-ping-flood")
    else:
        s.verdicts.fail(
            "limits-ping-flood",
            f"All {PINGS} pings of one burst were answered and the socket kept.",
            [
                Evidence(
                    "ping flood", f"{PINGS} pings at once", f"{got.pongs} pongs, connection open"
                )
            ],
        )


async def probe_slow_handshake(s: ScanSession) -> None:
    """Slowloris: half a handshake, then silence; the server should hang up."""
    conn = await s.connect()
    try:
        head = f"GET {s.target.resource} HTTP/1.1\r\nHost: {s.target.host_header}\r\n"
        await conn.send(head.encode("latin-1", "replace"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await conn.read_handshake(s.options.slow_wait)
        waited = loop.time() - started
    finally:
        await conn.close()
    if response.status is None and response.error == "timeout":
        s.verdicts.fail(
            "limits-handshake-timeout",
            f"Half a handshake kept the connection open for {waited:.0f} s.",
            [
                Evidence(
                    "slowloris",
                    "request line and Host, then nothing",
                    f"still open after {waited:.0f} s",
                )
            ],
        )
    else:
        s.verdicts.ok("limits-handshake-timeout")


async def probe_input(s: ScanSession) -> None:
    """Reflected input: markup sent in a message must not come back raw."""
    marker = f"<wsgscan{secrets.token_hex(4)}>"
    raw = f"{marker}\"'"
    as_json = (
        '{"id": 2, "op": "publish", "type": "message", "channel": "wsgscan", '
        f'"data": "{marker}", "text": "{marker}", "message": "{marker}"}}'
    )
    conn, _ = await s.open_authenticated("reflection")
    try:
        await conn.send(wire.build_frame(wire.OP_TEXT, raw.encode()))
        await conn.send(wire.build_frame(wire.OP_TEXT, as_json.encode()))
        got = await conn.collect(1.5)
    finally:
        await conn.close()
    s.saw_close("reflection", got)
    reflected = [text for text in got.data if marker in text]
    if reflected:
        s.verdicts.fail(
            "input-reflected",
            "Markup sent in a message came back unencoded.",
            [Evidence("reflection", raw, reflected[0][:300])],
        )
    else:
        s.verdicts.ok("input-reflected")


_VERSION: Final = re.compile(r"\d+\.\d+")
_BANNERS: Final = ("server", "x-powered-by", "x-aspnet-version", "x-runtime", "via")
# Library error strings and exception text (the STEWS fingerprints) rather than fixed phrases.
_VERBOSE: Final = re.compile(
    r"(traceback|exception|error:|\w+Error\b|\.py\b|line \d+|\d+\.\d+|must be|expected|"
    r"incorrect|reserved bits|rsv\d|opcode\s*[:=]?\s*\d|0x[0-9a-f]+|position \d+|byte at|"
    r"\d+\s*bytes|exceeds limit|size limit|invalid opcode|control frame|fragmented|too short|"
    r"status code)",
    re.IGNORECASE,
)


def _software(name: str, value: str) -> str:
    """The part of a banner that names software: ``Via`` entries start with the HTTP version
    (``1.1 proxy``), which discloses nothing."""
    if name.lower() != "via":
        return value
    return ",".join(
        re.sub(r"^\s*(?:[A-Za-z]+/)?\d+(?:\.\d+)?\s+", "", part) for part in value.split(",")
    )


def probe_disclosure(s: ScanSession) -> None:
    """Version banners in any response header; verbose close reasons in any close frame."""
    if not s.handshakes:
        s.verdicts.skip("disclosure-server-header", "no handshake was sent (select another group)")
        s.verdicts.skip("disclosure-close-reason", "no handshake was sent (select another group)")
        return
    banners: dict[str, Evidence] = {}
    for label, response in s.handshakes:
        for name, value in response.headers:
            if name.lower() in _BANNERS and _VERSION.search(_software(name, value)):
                banners.setdefault(f"{name}: {value}", Evidence(label, "", f"{name}: {value}"))
    if banners:
        s.verdicts.fail(
            "disclosure-server-header",
            "Response headers name software versions: " + "; ".join(banners) + ".",
            list(banners.values())[:3],
        )
    else:
        s.verdicts.ok("disclosure-server-header")
    verbose = [(label, got) for label, got in s.closes if _VERBOSE.search(got.close_reason)]
    if verbose:
        s.verdicts.fail(
            "disclosure-close-reason",
            f"{len(verbose)} close reason(s) carry implementation details.",
            [
                Evidence(label, "", f"close {got.close_code} {got.close_reason!r}")
                for label, got in verbose[:4]
            ],
        )
    elif s.closes:
        s.verdicts.ok("disclosure-close-reason")
    else:
        s.verdicts.skip("disclosure-close-reason", "the server sent no close frame to judge")
