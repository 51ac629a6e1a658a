"""FRM: framing and resource exhaustion (security-references.md §4, group FRM).

The server runs websockets' RFC 6455 core under its own I/O layer: malformed frames fail the
connection with 1002 (RFC 6455 §5), oversized or over-fragmented messages with 1009 before
anything is buffered (§10.4), invalid close payloads with 1002/1007 (§7.4, §8.1); floods of
messages, bytes and pings are bounded by the connection's buckets (429 ``rate_limited``, 4408,
1008); a peer that does not read is closed with 4509; a peer that never finishes a close is
dropped within ``close_timeout``. Every DoS case runs inside ``canary``: a bystander that must
stay connected and fast, with the server's RSS bounded.

Cases (close codes from docs/reference/codes.md):

- FRM-01 unmasked client frame → 1002
- FRM-02 reserved bits RSV2, RSV3 and every combination with them → 1002
- FRM-03 reserved data opcodes 3-7 → 1002
- FRM-04 reserved control opcodes 0xB-0xF → 1002
- FRM-05 a fragmented ping (FIN=0) → 1002
- FRM-06 a control frame with a 126-byte payload → 1002
- FRM-07 a continuation with no first fragment → 1002
- FRM-08 a new text frame inside an unfinished fragmented message → 1002
- FRM-09 a ping's payload is echoed exactly in the pong
- FRM-10 a non-minimal length encoding → read as its value (tolerated, documented)
- FRM-11 a 64-bit length with the most significant bit set → 1009 before any allocation
- FRM-12 a declared 2^62 / 2^32-byte frame → 1009 before any allocation
- FRM-13 an unknown opcode with a huge declared length → 1002 before any allocation
- FRM-14 the gorilla sequence (fragment, then a 2^63-1 continuation) → 1009
- FRM-15 a 64 KiB + 1 message in one frame → 1009 (64 KiB exactly passes)
- FRM-16 fragments summing past 64 KiB → 1009
- FRM-17 129 one-byte fragments → 1009 ``too many fragments`` (128 pass)
- FRM-18 unfinished fragmented messages left hanging on 20 sockets → bounded
- FRM-19 invalid close codes → 1002
- FRM-20 a close frame with a 1-byte payload → 1002
- FRM-21 a close reason that is not UTF-8 → 1007
- FRM-22 a permessage-deflate bomb (16 MiB inflated) → 1009, bounded
- FRM-23 RSV1 without negotiated compression → 1002
- FRM-24 a ping flood → 1008 before every ping is answered
- FRM-25 a flood of unsolicited pongs → ignored, bounded
- FRM-26 a frame dribbled one byte per 100 ms → completed, bounded
- FRM-27 message flood → 429 ``rate_limited`` x5 then 4408; byte flood → 429 past 2 MiB
- FRM-28 500 connections reset mid-handshake → RSS and descriptors back, canary healthy
- FRM-29 500 connections reset mid-frame → same
- FRM-30 client close 1000 → echoed 1000, TCP closed
- FRM-31 slow reader → 4509, the other subscriber gets everything
- FRM-32 client sends close and never reads → dropped within close_timeout (FINDING with
  queued data: never dropped)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.attack import (
    AttackTarget,
    RawClient,
    Session,
    audit_event,
    canary,
    connect,
    next_ip,
    open_session,
    query_ticket,
    request,
    serve,
)
from support.rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame

pytestmark = pytest.mark.integration

KIB = 1024
MAX_MESSAGE = 64 * KIB
PING = b'{"op":"ping"}'
AFTER = 0.5  # seconds the canary keeps measuring after an attack


def header(first: int, length: int, *, form: int | None = None) -> bytes:
    """A masked frame header declaring ``length`` in the 7-, 16- or 64-bit form, with the
    all-zero mask key (the payload then goes in clear): for lengths no payload follows."""
    form = form or (7 if length < 126 else 16 if length < 65536 else 64)
    if form == 7:
        head = bytes([first, 0x80 | length])
    elif form == 16:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", length)
    return head + b"\0\0\0\0"


async def close_of(raw: RawClient, timeout: float = 3.0) -> tuple[int | None, bytes, list[Any]]:
    """Read until the close frame: (code, reason bytes, the (opcode, payload) frames before)."""
    before: list[Any] = []
    while True:
        opcode, payload = await raw.read_frame(timeout)
        if opcode == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return code, payload[2:], before
        before.append((opcode, payload))


async def fails_with(
    target: AttackTarget, attack: bytes, user: str = "alice", timeout: float = 3.0
) -> int | None:
    """Send ``attack`` on a fresh session; the close code, after checking nothing answered it
    and the server closed TCP too."""
    session = await open_session(target, user)
    await session.raw.send(attack)
    code, _, before = await close_of(session.raw, timeout)
    assert before == [], before
    assert await session.raw.at_eof(4.0)
    return code


def fd_count(target: AttackTarget) -> int:
    return len(os.listdir(f"/proc/{target.proc.pid}/fd"))


def _hex(ip: str, port: int) -> str:
    return f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"


def server_send_queue(target: AttackTarget, raw: RawClient) -> int:
    """Bytes the server's kernel holds unacknowledged for this client (/proc/net/tcp)."""
    ip, port = raw.writer.get_extra_info("sockname")
    local, remote = _hex("127.0.0.1", target.port), _hex(ip, port)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[4].split(":")[0], 16)
    raise AssertionError("no server socket for this client")


def deflate(data: bytes) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1: raw deflate, the 00 00 ff ff tail removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# -- malformed frames (RFC 6455 §5) ------------------------------------------------------------


async def test_frm_01_unmasked_client_frame_closes_1002(target: AttackTarget) -> None:
    """FRM-01: an unmasked client frame → 1002 (RFC 6455 §5.1 "MUST close"; §10.3)."""
    assert await fails_with(target, frame(OP_TEXT, PING, mask=False)) == 1002


@pytest.mark.parametrize(
    "rsv",
    [2, 1, 6, 5, 3, 7],
    ids=[
        "FRM-02-rsv2",
        "FRM-02-rsv3",
        "FRM-02-rsv12",
        "FRM-02-rsv13",
        "FRM-02-rsv23",
        "FRM-02-rsv123",
    ],
)
async def test_frm_02_reserved_bits_close_1002(target: AttackTarget, rsv: int) -> None:
    """FRM-02: reserved bits no extension defines → 1002 (RFC 6455 §5.2; STEWS series 200)."""
    assert await fails_with(target, frame(OP_TEXT, PING, rsv=rsv)) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7], ids=[f"FRM-03-op{n}" for n in range(3, 8)])
async def test_frm_03_reserved_data_opcodes_close_1002(target: AttackTarget, opcode: int) -> None:
    """FRM-03: reserved non-control opcodes → 1002 (RFC 6455 §5.2; STEWS series 100)."""
    assert await fails_with(target, frame(opcode, PING)) == 1002


@pytest.mark.parametrize(
    "opcode", [0xB, 0xC, 0xD, 0xE, 0xF], ids=[f"FRM-04-op{n:X}" for n in range(0xB, 0x10)]
)
async def test_frm_04_reserved_control_opcodes_close_1002(
    target: AttackTarget, opcode: int
) -> None:
    """FRM-04: reserved control opcodes → 1002 (RFC 6455 §5.2)."""
    assert await fails_with(target, frame(opcode, b"x")) == 1002


async def test_frm_05_fragmented_ping_closes_1002(target: AttackTarget) -> None:
    """FRM-05: a control frame with FIN=0 → 1002 (RFC 6455 §5.5 "MUST NOT be fragmented")."""
    assert await fails_with(target, frame(OP_PING, b"x", fin=False)) == 1002


async def test_frm_06_control_payload_over_125_closes_1002(target: AttackTarget) -> None:
    """FRM-06: a 126-byte ping payload → 1002 (RFC 6455 §5.5 "125 bytes or less")."""
    assert await fails_with(target, frame(OP_PING, b"x" * 126)) == 1002


async def test_frm_07_continuation_without_start_closes_1002(target: AttackTarget) -> None:
    """FRM-07: a continuation frame with no message to continue → 1002 (RFC 6455 §5.4)."""
    assert await fails_with(target, frame(OP_CONT, PING)) == 1002


async def test_frm_08_interleaved_data_frame_closes_1002(target: AttackTarget) -> None:
    """FRM-08: a new text frame inside an unfinished message → 1002 (RFC 6455 §5.4)."""
    attack = frame(OP_TEXT, b'{"op":', fin=False) + frame(OP_TEXT, PING)
    assert await fails_with(target, attack) == 1002


async def test_frm_09_pong_echoes_the_ping_payload(target: AttackTarget) -> None:
    """FRM-09: the pong carries exactly the ping's payload (RFC 6455 §5.5.3; CVE-2016-10518)."""
    session = await open_session(target, "alice")
    for payload in (b"", b"\x00\xff" * 10, os.urandom(125)):
        await session.raw.send(frame(OP_PING, payload))
        assert await session.raw.read_frame(3.0) == (OP_PONG, payload)


@pytest.mark.parametrize("form", [16, 64], ids=["FRM-10-16bit", "FRM-10-64bit"])
async def test_frm_10_non_minimal_length_is_read_as_its_value(
    target: AttackTarget, form: int
) -> None:
    """FRM-10: a 13-byte payload declared in the 16/64-bit form is read as 13 bytes, no more
    and no less: the next frame is parsed where it starts (no desynchronised parser).

    RFC 6455 §5.2 asks for the minimal form; websockets' core, which wsguard uses, tolerates
    the longer ones, and wsguard documents that (docs/conformance.md). What matters for
    smuggling is that the declared value is honoured exactly, which this pins down.
    """
    session = await open_session(target, "alice")
    attack = header(0x81, len(PING), form=form) + PING + frame(OP_TEXT, PING)
    await session.raw.send(attack)
    assert [m.get("ok") for m in (await session.receive(), await session.receive())] == [
        True,
        True,
    ]


async def test_frm_11_length_with_top_bit_closes_1009_unallocated(target: AttackTarget) -> None:
    """FRM-11: a 64-bit length with the MSB set (CVE-2020-27813, CVE-2026-50161) fails the
    connection at the header, before any allocation: 1009, since websockets' core compares the
    length with the message limit before anything else (RFC 6455 §5.2 names no code; see
    docs/conformance.md)."""
    rss = target.rss()
    attack = header(0x82, 2**63 + 5, form=64) + b"hello"
    assert await fails_with(target, attack) == 1009
    assert target.rss() < rss + 8 * 2**20


@pytest.mark.parametrize(
    "length",
    [2**62, 2**32, MAX_MESSAGE + 1],
    ids=["FRM-12-2pow62", "FRM-12-2pow32", "FRM-12-limit+1"],
)
async def test_frm_12_huge_declared_length_closes_1009_unallocated(
    target: AttackTarget, length: int
) -> None:
    """FRM-12: a huge declared length → 1009 at the header (RFC 6455 §10.4; CVE-2026-50161)."""
    async with canary(target, after=AFTER, rss_budget=16 * 2**20):
        # Only the header and the mask key are sent: a server that waited for the payload, or
        # allocated it, would not answer at once.
        assert await fails_with(target, header(0x82, length)) == 1009


async def test_frm_13_unknown_opcode_with_huge_length_closes_1002(target: AttackTarget) -> None:
    """FRM-13: opcode 0x3 declaring 2^62 bytes → 1002, nothing allocated (CVE-2026-19204)."""
    async with canary(target, after=AFTER, rss_budget=16 * 2**20):
        assert await fails_with(target, header(0x83, 2**62)) == 1002


async def test_frm_14_gorilla_continuation_overflow_closes_1009(target: AttackTarget) -> None:
    """FRM-14: a fragment then a 2^63-1 continuation (counter overflow, CVE-2020-27813) → 1009."""
    async with canary(target, after=AFTER, rss_budget=16 * 2**20):
        attack = (
            frame(OP_BINARY, b"a", fin=False) + header(0x80, 2**63 - 1) + header(0x80, 2**63 - 1)
        )
        assert await fails_with(target, attack) == 1009


async def test_frm_15_message_one_byte_over_limit_closes_1009(target: AttackTarget) -> None:
    """FRM-15: 64 KiB + 1 in one frame → 1009; 64 KiB exactly passes (CVE-2016-10542 class)."""
    session = await open_session(target, "frm15")
    await session.send_text(PING + b" " * (MAX_MESSAGE - len(PING)))
    assert (await session.receive(3.0))["ok"] is True
    # The header alone (masked, 64-bit form): refused at the length, before the payload.
    await session.raw.send(header(0x81, MAX_MESSAGE + 1))
    code, reason, before = await close_of(session.raw)
    assert (code, reason, before) == (1009, b"message too big", [])


async def test_frm_16_fragments_past_the_limit_close_1009(target: AttackTarget) -> None:
    """FRM-16: 30 000-byte fragments, the third past 65 536 in all → 1009 (CVE-2020-36049)."""
    async with canary(target, after=AFTER, rss_budget=16 * 2**20):
        chunk = b" " * 30_000
        session = await open_session(target, "alice")
        await session.raw.send(
            frame(OP_TEXT, PING + chunk, fin=False) + frame(OP_CONT, chunk, fin=False)
        )
        await asyncio.sleep(0.1)
        # Only the third header: the server refuses at the length, before any payload, and no
        # unread bytes make its close a reset.
        await session.raw.send(bytes([0x80, 0x80 | 126]) + struct.pack("!H", len(chunk)))
        code, reason, before = await close_of(session.raw)
        assert (code, reason, before) == (1009, b"message too big", [])


async def test_frm_17_fragment_count_limit(target: AttackTarget) -> None:
    """FRM-17: 128 one-byte fragments pass; 129 → 1009 'too many fragments' (CVE-2026-48779)."""

    def one_byte_fragments(count: int) -> bytes:
        text = PING + b" " * (count - len(PING))
        parts = [frame(OP_TEXT, text[:1], fin=False)]
        parts += [frame(OP_CONT, text[i : i + 1], fin=i == count - 1) for i in range(1, count)]
        return b"".join(parts)

    session = await open_session(target, "alice")
    await session.raw.send(one_byte_fragments(128))
    assert (await session.receive(3.0))["ok"] is True
    await session.raw.send(one_byte_fragments(129))
    code, reason, before = await close_of(session.raw)
    assert (code, reason, before) == (1009, b"too many fragments", [])


async def test_frm_18_hanging_fragmented_messages_stay_bounded(target: AttackTarget) -> None:
    """FRM-18: 20 sockets of 100 fragments, then silence → bounded (CVE-2026-62389)."""
    rss = target.rss()
    async with canary(target, after=AFTER, rss_budget=32 * 2**20):
        sessions = [await open_session(target, f"frm18-{i}") for i in range(20)]
        fragment = b" " * 500
        body = frame(OP_TEXT, PING, fin=False) + frame(OP_CONT, fragment, fin=False) * 99
        await asyncio.gather(*(s.raw.send(body) for s in sessions))
        await asyncio.sleep(0.5)
        # Each holds one unfinished 50 KB message: nothing answered, nothing closed.
        for session in sessions:
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await session.raw.read_frame(0.05)
        assert target.rss() < rss + 16 * 2**20
        for session in sessions:
            session.raw.close()


# -- the close handshake (RFC 6455 §5.5.1, §7.4) -----------------------------------------------


@pytest.mark.parametrize(
    "code",
    [0, 999, 1004, 1005, 1006, 1015, 2999, 5000],
    ids=[f"FRM-19-{c}" for c in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)],
)
async def test_frm_19_invalid_close_code_closes_1002(target: AttackTarget, code: int) -> None:
    """FRM-19: close codes that are reserved or never sent on the wire → 1002 (RFC 6455 §7.4)."""
    assert await fails_with(target, frame(OP_CLOSE, struct.pack("!H", code))) == 1002


async def test_frm_20_one_byte_close_payload_closes_1002(target: AttackTarget) -> None:
    """FRM-20: a close payload of 1 byte (half a code) → 1002 (RFC 6455 §5.5.1)."""
    assert await fails_with(target, frame(OP_CLOSE, b"\x03")) == 1002


async def test_frm_21_close_reason_not_utf8_closes_1007(target: AttackTarget) -> None:
    """FRM-21: a close reason that is not UTF-8 → 1007 (RFC 6455 §5.5.1, §8.1)."""
    attack = frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xc0\xaf\xff")
    assert await fails_with(target, attack) == 1007


# -- compression (RFC 7692) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def deflate_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    # FRM-22 only: permessage-deflate is off by default (CRIME/BREACH); the bomb case needs it
    # on to show that the decompressed size is what max_message_bytes bounds.
    with serve(
        tmp_path_factory.mktemp("attack-deflate"), overrides=["limits.compression=true"]
    ) as server:
        yield server
        assert server.alive()
        assert "Traceback" not in server.log()


async def test_frm_22_compression_bomb_closes_1009(deflate_target: AttackTarget) -> None:
    """FRM-22: 16 KB inflating to 16 MiB → 1009, RSS bounded (CVE-2018-1000518, CVE-2016-10544)."""
    target = deflate_target
    raw = await connect(target)
    extensions = [("Sec-WebSocket-Extensions", "permessage-deflate")]
    await raw.send(request(query=query_ticket(target, "alice"), headers=extensions))
    response = await raw.read_response()
    assert response.status == 101
    assert (response.header("sec-websocket-extensions") or "").startswith("permessage-deflate")
    session = Session(raw, response)
    await raw.read_frame(3.0)  # the (compressed) welcome push
    # A compressed message is understood: the bomb below is refused for its size alone.
    await raw.send(frame(OP_TEXT, deflate(b'{"id":1,"op":"ping"}'), rsv=4))
    _, payload = await raw.read_frame(3.0)
    inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    assert inflated == b'{"id":1,"ok":true,"result":{}}'
    bomb = deflate(PING + b" " * (16 * 2**20))
    assert len(bomb) < MAX_MESSAGE
    async with canary(target, after=AFTER, rss_budget=16 * 2**20):
        await raw.send(frame(OP_TEXT, bomb, rsv=4))
        code, reason, before = await close_of(session.raw)
        assert (code, reason, before) == (1009, b"message too big", [])


async def test_frm_23_rsv1_without_compression_closes_1002(target: AttackTarget) -> None:
    """FRM-23: RSV1 when permessage-deflate was not negotiated → 1002 (CVE-2026-59881)."""
    attack = frame(OP_TEXT, deflate(b'{"op":"ping"}'), rsv=4)
    assert await fails_with(target, attack) == 1002


# -- floods ------------------------------------------------------------------------------------


async def test_frm_24_ping_flood_closes_1008_before_answering_all(target: AttackTarget) -> None:
    """FRM-24: 200 pings in one burst → 1008 after at most the burst's pongs (CVE-2026-11586)."""
    async with canary(target, after=AFTER):
        session = await open_session(target, "frm24")
        await session.raw.send(b"".join(frame(OP_PING, b"%d" % i) for i in range(200)))
        code, reason, before = await close_of(session.raw)
        assert (code, reason) == (1008, b"policy violation")
        assert all(opcode == OP_PONG for opcode, _ in before)
        assert 40 <= len(before) <= 42  # limits.burst, plus what refilled meanwhile
        assert [payload for _, payload in before] == [b"%d" % i for i in range(len(before))]


async def test_frm_25_pong_flood_is_ignored(target: AttackTarget) -> None:
    """FRM-25: 200 unsolicited pongs → ignored, no answer, bounded (CVE-2021-3690)."""
    async with canary(target, after=AFTER):
        session = await open_session(target, "frm25")
        await session.raw.send(b"".join(frame(OP_PONG, os.urandom(64)) for _ in range(200)))
        reply = await session.call("ping", timeout=3.0)
        assert reply == {"id": 1, "ok": True, "result": {}}


async def test_frm_26_dribbled_frame_completes(target: AttackTarget) -> None:
    """FRM-26: a frame sent one byte per 100 ms → answered when complete (CVE-2023-43669 class)."""
    async with canary(target, after=AFTER):
        session = await open_session(target, "alice")
        data = frame(OP_TEXT, b'{"id":7,"op":"ping"}')
        for i in range(6):  # the 2-byte header and the 4-byte mask key
            await session.raw.send(data[i : i + 1])
            await asyncio.sleep(0.1)
        await session.raw.send(data[6:])
        assert await session.receive(3.0) == {"id": 7, "ok": True, "result": {}}


async def test_frm_27_message_flood_rate_limited_then_4408(target: AttackTarget) -> None:
    """FRM-27: 100 messages at once → the burst answered, five 429 rate_limited, then 4408."""
    since = target.log_size()
    async with canary(target, after=AFTER):
        session = await open_session(target, f"frm27-{secrets.token_hex(3)}")
        await session.raw.send(frame(OP_TEXT, PING) * 100)
        code, reason, before = await close_of(session.raw)
        assert (code, reason) == (4408, b"too many violations")
        replies = [orjson.loads(payload) for _, payload in before]
        answered = [r for r in replies if r.get("ok") is True]
        refused = [r for r in replies if r.get("ok") is False]
        assert replies == answered + refused  # the burst first, then only refusals
        assert 40 <= len(answered) <= 42
        assert [(r["error"]["code"], r["error"]["reason"]) for r in refused] == [
            (429, "rate_limited")
        ] * 5
    reasons = target.audit_reasons(since)
    assert reasons.count("rate_limited") >= 5


async def test_frm_27_byte_flood_rate_limited(target: AttackTarget) -> None:
    """FRM-27: 36 messages of 64 000 bytes at once → 429 rate_limited past the 2 MiB bucket."""
    async with canary(target, after=AFTER):
        session = await open_session(target, f"frm27b-{secrets.token_hex(3)}")
        message = frame(OP_TEXT, PING + b" " * (64_000 - len(PING)))
        await session.raw.send(message * 36)
        replies = [orjson.loads((await session.raw.read_frame(3.0))[1]) for _ in range(36)]
        answered = [r for r in replies if r.get("ok") is True]
        refused = [r for r in replies if r.get("ok") is False]
        assert replies == answered + refused
        assert 32 <= len(answered) <= 34  # 2 MiB / 64 000 bytes, plus the refill meanwhile
        assert {(r["error"]["code"], r["error"]["reason"]) for r in refused} == {
            (429, "rate_limited")
        }


# -- connection churn (CVE-2021-42340 class) ---------------------------------------------------


async def _reset(raw: RawClient) -> None:
    sock = raw.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.writer.transport.abort()  # SO_LINGER 0: the kernel sends RST


async def _churn(target: AttackTarget, one: Any) -> None:
    rss, fds = target.rss(), fd_count(target)
    async with canary(target, after=AFTER):
        for batch in range(10):
            await asyncio.gather(*(one() for _ in range(50)))
            assert batch < 10
    await asyncio.sleep(0.5)
    assert target.alive()
    assert target.rss() < rss + 16 * 2**20
    assert fd_count(target) <= fds + 5  # the canary's own socket may still be closing


async def test_frm_28_connections_reset_mid_handshake(target: AttackTarget) -> None:
    """FRM-28: 500 connections reset halfway through the request head → nothing leaks."""

    async def one() -> None:
        raw = await connect(target)
        await raw.send(request(query=query_ticket(target, "alice"))[:60])
        await _reset(raw)

    await _churn(target, one)


async def test_frm_29_connections_reset_mid_frame(target: AttackTarget) -> None:
    """FRM-29: 500 open connections reset halfway through a frame → nothing leaks."""

    async def one() -> None:
        raw = await connect(target)
        await raw.send(request(query=query_ticket(target, f"frm29-{next_ip()}")))
        assert (await raw.read_response()).status == 101
        await raw.send(frame(OP_TEXT, b'{"op":"ping","x":"' + b"a" * 1000)[:300])
        await _reset(raw)

    await _churn(target, one)


async def test_frm_30_close_handshake_is_echoed(target: AttackTarget) -> None:
    """FRM-30: client close 1000 → the server echoes 1000 and closes TCP (RFC 6455 §5.5.1)."""
    session = await open_session(target, "alice")
    await session.raw.send(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
    code, _, before = await close_of(session.raw)
    assert (code, before) == (1000, [])
    assert await session.raw.at_eof(3.0)


async def test_frm_31_slow_reader_is_closed_4509(target: AttackTarget) -> None:
    """FRM-31: a subscriber that never reads → 4509, others unaffected (CVE-2026-79677)."""
    channel = f"ticker:frm31{secrets.token_hex(3)}"
    since = target.log_size()
    ip = next_ip()
    slow = await open_session(target, "alice", ip=ip, rcvbuf=4096)
    assert (await slow.call("subscribe", channel=channel))["ok"] is True
    bob = await open_session(target, "bob")
    assert (await bob.call("subscribe", channel=channel))["ok"] is True
    count = 140  # about 8.4 MB: past the kernel's buffers and max_send_queue_bytes (1 MiB)

    async def read_all() -> list[int]:
        return [(await bob.push("message", 3.0))["data"]["i"] for _ in range(count)]

    async with canary(target, after=AFTER):
        reader = asyncio.create_task(read_all())  # bob reads as a healthy client does
        for i in range(count):
            await target.publish(channel, {"i": i, "pad": "x" * 60_000})
        assert await reader == list(range(count))
        # The slow reader is dropped close_timeout (2 s) after its 4509 close frame was queued.
        closed = await audit_event(target, since, ip, "connection_closed", timeout=4.0)
    assert closed is not None
    assert closed["code"] == 4509, closed


async def _close_and_never_read(
    target: AttackTarget, *, queued: bool, timeout: float = 4.0
) -> dict[str, Any] | None:
    """The ``connection_closed`` audit event of a client that sent close and stopped reading
    (None: the server still held the connection ``timeout`` seconds later)."""
    since = target.log_size()
    ip = next_ip()
    session = await open_session(target, "alice", ip=ip, rcvbuf=4096)
    raw = session.raw
    if queued:
        channel = f"ticker:frm32{secrets.token_hex(3)}"
        assert (await session.call("subscribe", channel=channel))["ok"] is True
        # Publish until the server's kernel buffer is full (its send queue stops growing): the
        # next publication then waits in the server's own buffer, well under the 4509 bound.
        previous = -1
        for i in range(200):
            await target.publish(channel, {"i": i, "pad": "x" * 60_000})
            await asyncio.sleep(0.01)
            queue = server_send_queue(target, raw)
            if queue and queue == previous:
                break
            previous = queue
        await target.publish(channel, {"pad": "y" * 60_000})
    await raw.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
    # close_timeout is 2 s; 2 s more of margin. The client reads nothing meanwhile.
    return await audit_event(target, since, ip, "connection_closed", timeout=timeout)


async def test_frm_32_close_then_silence_is_dropped(target: AttackTarget) -> None:
    """FRM-32: a client sends close, then neither reads nor closes → dropped (CVE-2024-23672)."""
    assert await _close_and_never_read(target, queued=False) is not None


@pytest.fixture(scope="module")
def keepalive_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """The suite's server with a 1 s keepalive (ping_interval and ping_timeout; defaults 20 s),
    so that FRM-32's bound is seconds instead of the default 42."""
    overrides = ["limits.ping_interval=1", "limits.ping_timeout=1"]
    with serve(tmp_path_factory.mktemp("attack-keepalive"), overrides=overrides) as server:
        yield server
        assert server.alive()
        assert "Traceback" not in server.log()


async def test_frm_32_close_then_silence_with_queued_data_is_dropped(
    keepalive_target: AttackTarget,
) -> None:
    """FRM-32: the same with a full send buffer → dropped within a bound (CVE-2017-2670).

    With more than 64 KiB waiting for the peer the server stops reading from it (read
    backpressure), so it never sees this close frame; the keepalive ping queued behind the data
    gets no pong, and the connection goes at ping_interval + ping_timeout + close_timeout (4 s
    here). When the close frame is read, the transport's close() waits for the queue to drain
    and close_timeout later the transport is aborted.
    """
    assert await _close_and_never_read(keepalive_target, queued=True, timeout=8.0) is not None
