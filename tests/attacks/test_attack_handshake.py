"""Group HSK: handshake abuse and request smuggling.

The opening handshake is an HTTP/1.1 ``GET`` of ``/ws`` with ``Upgrade: websocket``,
``Connection: Upgrade``, one ``Sec-WebSocket-Key`` that is base64 of 16 bytes and one
``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.1); the server refuses everything else with the
status and audit reason of docs/reference/codes.md, never a 101, and closes the connection right
after its one response (``Connection: close``): a refused upgrade never becomes a tunnel, and bytes
pipelined behind a request are never read as a second HTTP request. The request head is bounded
(8 KiB per line, 128 fields, ``limits.max_header_bytes`` in all, ``limits.handshake_timeout`` to
arrive); per-IP limits (``handshake_rate`` 10/s burst 20, ``max_connections_per_ip`` 50) hold
against one address while the server stays fast for everyone else (the canary).

Cases (catalog ids of ../shared/research/security-references.md §4; 27-32 are additions):

    HSK-01  POST, PUT, lowercase ``get``                    400 bad_method
    HSK-02  HTTP/1.0                                        400 bad_http_version
    HSK-03  HTTP/2 connection preface ``PRI * HTTP/2.0``    400 malformed_request
    HSK-04  ``Upgrade: websocketa`` / ``h2c`` / missing     400 not_upgrade
    HSK-05  ``Connection`` without ``upgrade``              400 bad_connection_header
    HSK-06  key not base64, 15 / 17 bytes, missing          400 bad_key
    HSK-07  two keys, two ``Upgrade`` fields                400 duplicate_header
    HSK-08  Upgrade on another path (CVE-2020-7693, Hono GHSA-8wcc-wqxr-28qp)
                                                            404 unknown_path / 200, closed
    HSK-09  version 7, 8, ``13;``, ``13,14``, ``13-``, missing
                                                            426 bad_version + version 13
    HSK-10  two ``Sec-WebSocket-Version`` fields (§11.3.5)  400 duplicate_header
    HSK-11  Hixie-76 ``Sec-WebSocket-Key1/Key2`` handshake  400 bad_key
    HSK-12  the client sends a ``101`` response             400 malformed_request
    HSK-13  path look-alikes ``/ws/../ws``, ``/WS``, ``//ws``, ``/ws%00``, ``/ws/``
                                                            404 unknown_path
    HSK-14  request line / header line over 8 KiB           414 / 431 request_too_large
    HSK-15  header flood, 129 and 500 fields (CVE-2024-37890)
                                                            431 request_too_large, canary
    HSK-16  ``Sec-WebSocket-Protocol`` ReDoS shapes (CVE-2021-32640): answered promptly;
            a malformed value is refused with a documented reason   [FINDING]
    HSK-17  ``Sec-WebSocket-Extensions`` ReDoS and prototype names (CVE-2020-7662/7663,
            GHSA-5v72-xg48-5rpm): 101 without an extension (compression is off)
    HSK-18  permessage-deflate with window bits 7 / 16 / 08 (CVE-2026-2229 class)
                                                            101 without an extension
    HSK-19  request head over ``limits.max_header_bytes``   431 header_too_large
    HSK-20  upgrade with a body (Content-Length, chunked) (CVE-2026-69243)
                                                            400 malformed_request, body unread
    HSK-21  obs-fold continuation line, LF-only line ends   400 malformed_request
    HSK-22  bare CR, NUL in a header value (CVE-2023-37276) 400 malformed_request
    HSK-23  a request + a pipelined request in the same packet (CVE-2019-17567): the
            smuggling shape                                 400 malformed_request, one response
    HSK-24  refused upgrade: the connection closes at once (CVE-2018-1002105)
    HSK-25  bytes after an accepted upgrade in the same packet (CVE-2026-2833): a frame is a
            frame; an HTTP request is never answered as HTTP  400 malformed_request, no 101
    HSK-26  absolute-form target naming the ws path (proxy confusion, GHSA-mx8g-39q3-5c79)
                                                            404 unknown_path
    HSK-27  query with 21 parameters / two ``ticket``       400 too_many_params / duplicate_param
    HSK-28  slowloris: a dribbled request head              dropped after handshake_timeout
    HSK-29  30 pending half handshakes from one IP          all dropped, canary healthy
    HSK-30  handshake flood from one IP                     429 handshake_rate, Retry-After: 1
    HSK-31  51st connection from one IP                     429 ip_connection_cap
    HSK-32  reconnect storm, 100 addresses in a second (RFC 6455 §7.2.3): canary healthy

Harness notes: ``_refused()`` reads the handshake audit event of the connection's own source
address (``peer``), a stricter form of ``target.audit_reasons``. HSK-23 runs against a server
of its own (same configuration): before the listener's fix for pipelined bytes (commit 448df6e)
the case left a traceback in the log, which the shared ``target``'s end-of-run check would
report against every group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from support.attack import (
    AttackTarget,
    audit_event,
    canary,
    connect,
    drain,
    next_ip,
    open_session,
    query_ticket,
    request,
    serve,
)
from support.rawws import OP_TEXT, frame

pytestmark = pytest.mark.integration

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: app.example.test\r\n\r\n"
SMUGGLED_BODY = b'{"status":"ok"}'  # what /healthz answers: must never appear


# -- helpers ---------------------------------------------------------------------------------


async def _reasons(target: AttackTarget, since: int, reason: str, count: int = 1) -> list[str]:
    """Audit reasons after ``since``, polled until ``reason`` appears ``count`` times (2 s)."""
    deadline = time.monotonic() + 2.0
    while True:
        reasons = target.audit_reasons(since)
        if reasons.count(reason) >= count or time.monotonic() > deadline:
            return reasons
        await asyncio.sleep(0.05)


def _status_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")]


async def _refused(
    target: AttackTarget, raw: bytes, status: int, reason: str, *, timeout: float = 3.0
) -> dict[str, list[str]]:
    """Send ``raw`` on a fresh connection: exactly one response, ``status``, never 101, the
    connection closed after it, and the audit event of this peer carries ``reason``."""
    ip = next_ip()
    since = target.log_size()
    client = await connect(target, ip)
    await client.send(raw)
    data, closed = await drain(client.reader, timeout)
    lines = _status_lines(data)
    assert len(lines) == 1, data[:2000]
    assert int(lines[0].split(b" ")[1]) == status, data[:2000]
    assert b" 101 " not in data
    assert SMUGGLED_BODY not in data  # a pipelined GET /healthz was never answered
    assert closed, "the connection stayed open after the refusal"
    record = await audit_event(target, since, ip, "handshake_rejected")
    assert record is not None, f"no handshake_rejected event for {ip}"
    assert record["reason"] == reason, record
    assert record["status"] == status, record
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    headers: dict[str, list[str]] = {}
    for line in head:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def _replace(name: str, value: str, **kwargs: Any) -> bytes:
    """BASE with field ``name`` replaced by ``value``."""
    return request(drop=[name], headers=[(name, value)], **kwargs)


def _key(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


# -- HSK-01..13: the request line and the upgrade fields -------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "get"], ids=["POST", "PUT", "lowercase-get"])
async def test_hsk_01_method_other_than_get(target: AttackTarget, method: str) -> None:
    """HSK-01: RFC 6455 §4.2.1 item 1 asks for a GET (methods are case-sensitive)."""
    await _refused(target, request(method=method), 400, "bad_method")


async def test_hsk_02_http_1_0(target: AttackTarget) -> None:
    """HSK-02: an HTTP/1.0 upgrade (no Upgrade mechanism in 1.0)."""
    await _refused(target, request(version="HTTP/1.0"), 400, "bad_http_version")


async def test_hsk_03_http2_preface(target: AttackTarget) -> None:
    """HSK-03: the HTTP/2 prior-knowledge preface on the HTTP/1.1 listener (h2c smuggling)."""
    await _refused(target, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "malformed_request")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_replace("Upgrade", "websocketa"), id="websocketa"),
        pytest.param(_replace("Upgrade", "h2c"), id="h2c"),
        pytest.param(request(drop=["Upgrade"]), id="missing"),
    ],
)
async def test_hsk_04_not_an_upgrade(target: AttackTarget, raw: bytes) -> None:
    """HSK-04: STEWS 700 series ``Upgrade: websocketa``; h2c upgrade smuggling; no Upgrade."""
    await _refused(target, raw, 400, "not_upgrade")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(request(drop=["Connection"]), id="missing"),
        pytest.param(_replace("Connection", "keep-alive"), id="keep-alive"),
        pytest.param(_replace("Connection", "upgrades"), id="upgrades"),
    ],
)
async def test_hsk_05_connection_without_upgrade(target: AttackTarget, raw: bytes) -> None:
    """HSK-05: RFC 6455 §4.2.1 item 4, ``Connection`` must contain the token ``Upgrade``."""
    await _refused(target, raw, 400, "bad_connection_header")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(request(key="not base64 at all!!"), id="not-base64"),
        pytest.param(request(key=_key(15)), id="15-bytes"),
        pytest.param(request(key=_key(17)), id="17-bytes"),
        pytest.param(request(key=_key(16).rstrip("=")), id="unpadded"),
        pytest.param(request(drop=["Sec-WebSocket-Key"]), id="missing"),
    ],
)
async def test_hsk_06_bad_key(target: AttackTarget, raw: bytes) -> None:
    """HSK-06: RFC 6455 §4.2.1 item 5, the key must be base64 of exactly 16 bytes."""
    await _refused(target, raw, 400, "bad_key")


@pytest.mark.parametrize(
    "field",
    [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Upgrade", "websocket")],
    ids=["two-keys", "two-upgrades"],
)
async def test_hsk_07_duplicate_single_fields(target: AttackTarget, field: tuple[str, str]) -> None:
    """HSK-07: RFC 6455 §11.3.1, the key appears at most once (proxy/server disagreement)."""
    await _refused(target, request(headers=[field]), 400, "duplicate_header")


async def test_hsk_08_upgrade_on_unknown_path(target: AttackTarget) -> None:
    """HSK-08: Upgrade to a non-WebSocket route (CVE-2020-7693, Hono GHSA-8wcc-wqxr-28qp):
    404 and the socket is closed, not left open."""
    await _refused(target, request(path="/api"), 404, "unknown_path")


async def test_hsk_08_upgrade_on_healthz_is_plain_http(target: AttackTarget) -> None:
    """HSK-08: Upgrade on ``/healthz`` (a served page) is answered as plain HTTP, never 101,
    and the socket is closed after the one response."""
    client = await connect(target)
    await client.send(request(path="/healthz"))
    data, closed = await drain(client.reader)
    assert _status_lines(data) == [b"HTTP/1.1 200 OK"], data
    assert b"Upgrade: websocket" not in data
    assert b"Connection: close" in data
    assert closed


@pytest.mark.parametrize(
    "version",
    ["7", "8", "13;", "13,14", "13, 14", "13-", "14", "0", None],
    ids=["7", "8", "13;", "13,14", "13, 14", "13-", "14", "0", "missing"],
)
async def test_hsk_09_bad_version(target: AttackTarget, version: str | None) -> None:
    """HSK-09: STEWS 300 series; RFC 6455 §4.4, 426 names the version the server speaks."""
    raw = (
        request(drop=["Sec-WebSocket-Version"])
        if version is None
        else _replace("Sec-WebSocket-Version", version)
    )
    headers = await _refused(target, raw, 426, "bad_version")
    assert headers.get("sec-websocket-version") == ["13"]


async def test_hsk_10_two_version_fields(target: AttackTarget) -> None:
    """HSK-10: RFC 6455 §11.3.5, ``Sec-WebSocket-Version`` appears at most once."""
    raw = request(headers=[("Sec-WebSocket-Version", "13")])
    await _refused(target, raw, 400, "duplicate_header")


async def test_hsk_11_hixie_76_handshake(target: AttackTarget) -> None:
    """HSK-11: a pre-RFC 6455 Hixie-76 handshake (Key1/Key2, no Sec-WebSocket-Key) is not
    spoken (OWASP: drop hybi-00); headers only, see HSK-23 for its 8-byte key3 body."""
    raw = (
        b"GET /ws HTTP/1.1\r\nHost: app.example.test\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nOrigin: https://app.example.test\r\n"
        b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
        b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n"
    )
    await _refused(target, raw, 400, "bad_key")


async def test_hsk_12_client_sends_101_response(target: AttackTarget) -> None:
    """HSK-12: STEWS 700 series, the client answers with a 101 response instead of a request."""
    raw = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    await _refused(target, raw, 400, "malformed_request")


@pytest.mark.parametrize("path", ["/ws/../ws", "/WS", "//ws", "/ws%00", "/ws/", "/%77s", "/ws;x"])
async def test_hsk_13_path_lookalikes(target: AttackTarget, path: str) -> None:
    """HSK-13: the ws path matches exactly, never after normalisation (traversal, case,
    percent-encoding, NUL, trailing slash, matrix parameter)."""
    await _refused(target, request(path=path, query=query_ticket(target)), 404, "unknown_path")


# -- HSK-14..22: parser limits and smuggling shapes ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(request(query="a=" + "x" * 9000), 414, id="request-line-9k"),
        pytest.param(request(headers=[("X-Long", "x" * 9000)]), 431, id="header-line-9k"),
    ],
)
async def test_hsk_14_line_over_8k(target: AttackTarget, raw: bytes, status: int) -> None:
    """HSK-14: unbounded line reads (websockets 10.0 "prevent unlimited reads", tungstenite
    CVE-2023-43669): a line over 8 KiB is refused before it is parsed."""
    await _refused(target, raw, status, "request_too_large")


@pytest.mark.parametrize("count", [129, 500], ids=["129-fields", "500-fields"])
async def test_hsk_15_header_flood(target: AttackTarget, count: int) -> None:
    """HSK-15: more header fields than the parser allows (ws CVE-2024-37890 crashed on this);
    eight floods at once while the canary keeps its round trips."""
    raw = request(headers=[(f"X-F{i}", "v") for i in range(count)])
    async with canary(target):
        await asyncio.gather(*(_refused(target, raw, 431, "request_too_large") for _ in range(8)))


@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param("b" + " " * 7000 + "x", 400, id="spaces"),
        pytest.param("b" + ", " * 3500 + "x", 101, id="commas"),
        pytest.param("b" + " ," * 3500 + "x", 101, id="space-commas"),
    ],
)
async def test_hsk_16_protocol_header_redos(target: AttackTarget, value: str, status: int) -> None:
    """HSK-16: ``Sec-WebSocket-Protocol`` shapes of the ws ReDoS (CVE-2021-32640) are
    answered within 0.5 s; a value that is not a token list is refused, never a 101."""
    client = await connect(target)
    began = time.perf_counter()
    raw = request(query=query_ticket(target), headers=[("Sec-WebSocket-Protocol", value)])
    await client.send(raw)
    response = await client.read_response(3.0)
    assert time.perf_counter() - began < 0.5
    assert response.status == status, response.raw
    assert response.header("sec-websocket-protocol") is None  # none configured, none chosen


async def test_hsk_16_malformed_protocol_is_refused_before_the_ticket_is_spent(
    target: AttackTarget,
) -> None:
    """HSK-16: a ``Sec-WebSocket-Protocol`` that is not a token list is refused with 400
    ``engine_refused`` (the RFC 6455 core parses that header) before the credential is
    consumed: the same ticket then opens a clean handshake."""
    ticket = f"ticket={target.ticket('alice')}"
    value = "b" + " " * 7000 + "x"
    raw = request(query=ticket, headers=[("Sec-WebSocket-Protocol", value)])
    await _refused(target, raw, 400, "engine_refused")
    session = await open_session(target, "alice", query=ticket)
    assert (await session.call("ping"))["ok"] is True


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('a;b="' + "\\c" * 3500, id="backslash-c"),
        pytest.param('a; b="' + "\\" * 7000 + '"', id="backslashes"),
        pytest.param("constructor, __proto__; prototype=1, hasOwnProperty", id="proto-names"),
        pytest.param("permessage-deflate; " + "x=1; " * 1300, id="many-params"),
    ],
)
async def test_hsk_17_extensions_header_abuse(target: AttackTarget, value: str) -> None:
    """HSK-17: ``Sec-WebSocket-Extensions`` ReDoS (CVE-2020-7662/7663) and Object.prototype
    names (ws GHSA-5v72-xg48-5rpm): 101 within 0.5 s and no extension negotiated."""
    session_began = time.perf_counter()
    session = await open_session(target, "alice", headers=[("Sec-WebSocket-Extensions", value)])
    assert time.perf_counter() - session_began < 0.5
    assert session.response.header("sec-websocket-extensions") is None
    reply = await session.call("ping")
    assert reply["ok"] is True, reply


@pytest.mark.parametrize("bits", ["7", "16", "08", "-1", "99999999999999999999"])
async def test_hsk_18_deflate_window_bits(target: AttackTarget, bits: str) -> None:
    """HSK-18: invalid ``server_max_window_bits`` (STEWS 400 series; undici CVE-2026-2229
    threw on it): compression is off, so 101 without any extension, and the socket works."""
    value = f"permessage-deflate; client_max_window_bits; server_max_window_bits={bits}"
    session = await open_session(target, "alice", headers=[("Sec-WebSocket-Extensions", value)])
    assert session.response.header("sec-websocket-extensions") is None
    reply = await session.call("ping")
    assert reply["ok"] is True, reply


async def test_hsk_19_request_head_over_max_header_bytes(target: AttackTarget) -> None:
    """HSK-19: many medium fields, each line legal, the head over 16 KiB in all (a slow
    header stream as a memory DoS)."""
    raw = request(headers=[(f"X-M{i}", "v" * 1000) for i in range(20)])
    await _refused(target, raw, 431, "header_too_large")


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param([("Content-Length", str(len(HEALTHZ)))], id="content-length"),
        pytest.param(
            [("Content-Length", str(len(HEALTHZ))), ("Content-Length", "0")],
            id="two-content-lengths",
        ),
        pytest.param([("Transfer-Encoding", "chunked")], id="chunked"),
        pytest.param([("Transfer-Encoding", " chunked")], id="chunked-ows"),
    ],
)
async def test_hsk_20_upgrade_with_body(
    target: AttackTarget, framing: list[tuple[str, str]]
) -> None:
    """HSK-20: GET + Upgrade + a body (aiohttp CVE-2026-69243): refused, and the body, a
    complete second request, is never parsed (one response only, no healthz answer).
    codes.md: a body on the upgrade is ``malformed_request`` at the request head."""
    body = HEALTHZ
    if ("Transfer-Encoding", "chunked") in framing:
        body = f"{len(HEALTHZ):x}\r\n".encode() + HEALTHZ + b"\r\n0\r\n\r\n"
    raw = request(headers=framing, body=body)
    await _refused(target, raw, 400, "malformed_request")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            request(headers=[("X-Folded", "a\r\n Transfer-Encoding: chunked")]), id="obs-fold"
        ),
        pytest.param(request().replace(b"\r\n", b"\n"), id="lf-only"),
        pytest.param(request().replace(b"\r\nOrigin", b"\nOrigin"), id="one-bare-lf"),
        pytest.param(request(headers=[("X-Sp ace", "1")]), id="space-in-name"),
        pytest.param(request(headers=[("Host ", "app.example.test")]), id="space-before-colon"),
    ],
)
async def test_hsk_21_line_folding_and_line_endings(target: AttackTarget, raw: bytes) -> None:
    """HSK-21: obs-fold, bare LF line ends and malformed field names (aiohttp
    CVE-2023-47627, CVE-2024-52304 class): a parser disagreement is refused, not guessed."""
    await _refused(target, raw, 400, "malformed_request")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\rxTransfer-Encoding: chunked", id="bare-cr"),
        pytest.param("a\0b", id="nul"),
        pytest.param("a\x0bb", id="vertical-tab"),
        pytest.param("a\x7fb", id="del"),
    ],
)
async def test_hsk_22_control_characters_in_value(target: AttackTarget, value: str) -> None:
    """HSK-22: a bare CR inside a header value (llhttp CVE-2023-37276), NUL and other
    controls: 400 at the request head."""
    await _refused(target, request(headers=[("X-Abc", value)]), 400, "malformed_request")


# -- HSK-23..26: failed-upgrade tunnels and pipelining ---------------------------------------


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """The suite's configuration unchanged, on a server of its own: should HSK-23 regress, its
    traceback must not fail the shared target's end-of-run check for every other group."""
    with serve(tmp_path_factory.mktemp("attack-hsk-isolated")) as server:
        yield server


HIXIE_76 = (
    b"GET /ws HTTP/1.1\r\nHost: app.example.test\r\nUpgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\nOrigin: https://app.example.test\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"\r\n^n:ds[4U"
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(request(origin="https://evil.example") + HEALTHZ, id="403-origin"),
        pytest.param(request(path="/api") + HEALTHZ, id="404-path"),
        pytest.param(request(key="short") + HEALTHZ, id="400-key"),
        pytest.param(request(path="/healthz") + HEALTHZ, id="healthz"),
        pytest.param(HIXIE_76, id="hixie76-key3"),
    ],
)
async def test_hsk_23_refused_upgrade_with_pipelined_request(
    isolated: AttackTarget, raw: bytes
) -> None:
    """HSK-23: a request with a second one pipelined in the same packet (mod_proxy_wstunnel
    CVE-2019-17567, websocket-smuggle): codes.md's smuggling shape, 400 ``malformed_request``,
    exactly one response, audited; the pipelined request is never answered (no healthz
    JSON), the connection closes, and nothing raises."""
    since = isolated.log_size()
    await _refused(isolated, raw, 400, "malformed_request")
    log = isolated.log_path.read_bytes()[since:]
    assert b"Traceback" not in log, log.decode(errors="replace")[-3000:]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(request(origin="https://evil.example"), 403, id="403-origin"),
        pytest.param(request(query="ticket=forged"), 401, id="401-ticket"),
        pytest.param(_replace("Sec-WebSocket-Version", "8"), 426, id="426-version"),
        pytest.param(request(path="/internal"), 404, id="404-path"),
    ],
)
async def test_hsk_24_refused_upgrade_closes_the_connection(
    target: AttackTarget, raw: bytes, status: int
) -> None:
    """HSK-24: after a refused upgrade the connection closes at once (Kubernetes
    CVE-2018-1002105 kept it open); a request sent afterwards gets no second response."""
    client = await connect(target)
    await client.send(raw)
    response = await client.read_response(3.0)
    assert response.status == status, response.raw
    assert response.header("connection") == "close"
    with contextlib.suppress(ConnectionError):
        await client.send(HEALTHZ)
    data, closed = await drain(client.reader, 2.0)
    assert data == b"", data
    assert closed


async def test_hsk_25_frame_pipelined_after_upgrade_is_a_frame(target: AttackTarget) -> None:
    """HSK-25: WebSocket frames in the same packet as the upgrade (Pingora CVE-2026-2833)
    are processed as frames once the handshake completed: the 101, the welcome, the replies
    (a ping, answered at once, and an rpc, which the session runs when that read ends)."""
    client = await connect(target)
    ping = frame(OP_TEXT, orjson.dumps({"id": 1, "op": "ping"}))
    rpc = frame(OP_TEXT, orjson.dumps({"id": 2, "op": "rpc", "method": "hsk25.none"}))
    await client.send(request(query=query_ticket(target)) + ping + rpc)
    response = await client.read_response(3.0)
    assert response.status == 101, response.raw
    _, welcome = await client.read_frame(3.0)
    assert orjson.loads(welcome)["push"] == "welcome"
    opcode, payload = await client.read_frame(3.0)
    assert opcode == OP_TEXT
    assert orjson.loads(payload) == {"id": 1, "ok": True, "result": {}}
    opcode, payload = await client.read_frame(3.0)
    assert opcode == OP_TEXT
    assert orjson.loads(payload) == {
        "id": 2,
        "ok": False,
        "error": {"code": 404, "reason": "unknown_method", "message": "unknown method"},
    }


@pytest.mark.parametrize("credential", ["ticket", "jwt", "none"])
async def test_hsk_25_http_pipelined_after_upgrade(target: AttackTarget, credential: str) -> None:
    """HSK-25: an HTTP request in the same packet as a valid upgrade (Pingora CVE-2026-2833)
    is never answered as HTTP: as frame bytes it is no valid frame, so the handshake ends in
    400 ``malformed_request`` (codes.md's smuggling shape), no 101, whatever the credential
    (a ticket checked in the background, a JWT checked at once, none: pending)."""
    if credential == "ticket":
        raw = request(query=query_ticket(target, "hsk25"))
    elif credential == "jwt":
        raw = request(headers=[("Authorization", "Bearer " + target.jwt("hsk25"))])
    else:
        raw = request()
    since = target.log_size()
    await _refused(target, raw + HEALTHZ, 400, "malformed_request")
    assert "handshake_accepted" not in {e.get("event") for e in target.events(since)}


@pytest.mark.parametrize(
    "target_form",
    [
        "http://app.example.test/ws",
        "https://app.example.test/ws",
        "http://127.0.0.1/ws",
        "*",
    ],
)
async def test_hsk_26_absolute_form_target(target: AttackTarget, target_form: str) -> None:
    """HSK-26: a request target in absolute (or asterisk) form, as a forward proxy would get
    it (webpack-dev-server GHSA-mx8g-39q3-5c79 class): not the ws path, no proxying, 404."""
    await _refused(target, request(path=target_form), 404, "unknown_path")


# -- HSK-27..32: query abuse and handshake-level DoS ----------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        pytest.param("&".join(f"p{i}=1" for i in range(21)), "too_many_params", id="21-params"),
        pytest.param("two-tickets", "duplicate_param", id="two-tickets"),
    ],
)
async def test_hsk_27_query_abuse(target: AttackTarget, query: str, reason: str) -> None:
    """HSK-27: a query-string flood and a repeated ``ticket`` (parameter pollution: a proxy
    and this server could disagree on which one counts)."""
    if query == "two-tickets":
        query = f"{query_ticket(target, 'alice')}&{query_ticket(target, 'bob')}"
    await _refused(target, request(query=query), 400, reason)


async def test_hsk_28_slowloris(target: AttackTarget) -> None:
    """HSK-28: a request head dribbled a byte at a time never completes: the connection is
    dropped after ``limits.handshake_timeout`` (2 s) with no response, audited."""
    ip = next_ip()
    since = target.log_size()
    async with canary(target):
        client = await connect(target, ip)
        began = time.monotonic()
        payload = request()[:-2]  # never the final empty line
        received = b""
        closed = False
        for byte in payload[:20]:
            with contextlib.suppress(ConnectionError):
                await client.send(bytes([byte]))
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                chunk = await asyncio.wait_for(client.reader.read(1024), 0.25)
                received += chunk
                if not chunk:
                    closed = True
                    break
        elapsed = time.monotonic() - began
    assert closed, "the dribbling connection was never dropped"
    assert 1.5 <= elapsed <= 4.0, elapsed
    assert received == b""
    record = await audit_event(target, since, ip, "handshake_rejected")
    assert record is not None
    assert (record["reason"], record["status"]) == ("handshake_timeout", 408)


async def test_hsk_29_pending_handshake_flood(target: AttackTarget) -> None:
    """HSK-29: 30 half-sent handshakes from one address hold nothing past the handshake
    timeout: every one dropped within 4 s, each audited, the canary unaffected."""
    ip = next_ip()
    since = target.log_size()
    partial = request()[:40]
    async with canary(target):
        clients = await asyncio.gather(*(connect(target, ip) for _ in range(30)))
        for client in clients:
            await client.send(partial)
        results = await asyncio.gather(*(drain(client.reader, 4.0) for client in clients))
    assert all(closed and data == b"" for data, closed in results), results
    reasons = await _reasons(target, since, "handshake_timeout", 30)
    assert reasons.count("handshake_timeout") == 30, reasons


async def test_hsk_30_handshake_flood_from_one_ip(target: AttackTarget) -> None:
    """HSK-30: 30 valid handshakes at once from one address: the burst (20) passes, the
    rest get 429 with ``Retry-After: 1``, audited ``handshake_rate``; the canary is fine."""
    ip = next_ip()
    since = target.log_size()

    async def attempt() -> tuple[int, str | None]:
        client = await connect(target, ip)
        await client.send(request())  # no credential: a pending socket, or the 429
        response = await client.read_response(3.0)
        return response.status, response.header("retry-after")

    async with canary(target):
        began = time.monotonic()
        results = await asyncio.gather(*(attempt() for _ in range(30)))
        refill = int(10 * (time.monotonic() - began)) + 1  # tokens refilled meanwhile, at most
    statuses = [status for status, _ in results]
    assert 20 <= statuses.count(101) <= 20 + refill, statuses
    assert statuses.count(429) >= 1, statuses
    assert statuses.count(429) == 30 - statuses.count(101), statuses
    assert all(retry == "1" for status, retry in results if status == 429), results
    reasons = await _reasons(target, since, "handshake_rate", statuses.count(429))
    assert reasons.count("handshake_rate") == statuses.count(429), reasons


async def test_hsk_31_connection_cap_per_ip(target: AttackTarget) -> None:
    """HSK-31: 50 open connections from one address (distinct users: the per-user cap is 20,
    paced under handshake_rate), the 51st gets 429 ``ip_connection_cap``; one closes, the
    next is accepted again."""
    ip = next_ip()
    sessions = []
    for i in range(50):
        if i >= 20:
            await asyncio.sleep(0.11)  # the bucket refills at 10/s
        sessions.append(await open_session(target, f"hsk31-u{i}", ip=ip))
    await asyncio.sleep(0.11)
    await _refused_from(target, ip, request(query=query_ticket(target, "hsk31-u50")))
    sessions[0].raw.close()
    await asyncio.sleep(0.3)  # connection_lost releases the slot
    again = await open_session(target, "hsk31-u51", ip=ip)
    reply = await again.call("ping")
    assert reply["ok"] is True


async def _refused_from(target: AttackTarget, ip: str, raw: bytes) -> None:
    since = target.log_size()
    client = await connect(target, ip)
    await client.send(raw)
    response = await client.read_response(3.0)
    assert response.status == 429, response.raw
    record = await audit_event(target, since, ip, "handshake_rejected")
    assert record is not None
    assert record["reason"] == "ip_connection_cap", record


async def test_hsk_32_reconnect_storm(target: AttackTarget) -> None:
    """HSK-32: 100 clients from 100 addresses reconnect within a second (RFC 6455 §7.2.3
    storm): every one gets its 101 and welcome while the canary stays fast."""

    async def one(i: int) -> str:
        await asyncio.sleep(i * 0.009)
        session = await open_session(target, f"hsk32-u{i}")
        reply = await session.call("ping")
        assert reply["ok"] is True
        session.raw.close()
        return "ok"

    async with canary(target):
        began = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(100)))
        elapsed = time.monotonic() - began
    assert results == ["ok"] * 100
    assert elapsed < 3.0, elapsed
