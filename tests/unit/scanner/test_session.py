"""The scan session: first-verdict-wins bookkeeping, the paced and budgeted connection gate,
ticket minting through ``--ticket-cmd``, and handshakes carrying exactly the headers asked for
(checked on the bytes a local server receives)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from wsguard.scanner.model import Evidence, Severity
from wsguard.scanner.session import ProbeError, ScanSession, Verdicts
from wsguard.scanner.target import Credentials, ScanOptions, parse_target
from wsguard.scanner.wire import Received

ORIGIN = "http://app.example.test"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: x\r\n\r\n"
)

# ---------------------------------------------------------------- Verdicts


def test_fail_after_ok_is_ignored():
    v = Verdicts()
    v.ok("origin-foreign")
    v.fail("origin-foreign", "late")
    assert (v.passed, v.findings, v.skipped) == (["origin-foreign"], [], {})


def test_ok_after_fail_is_ignored():
    v = Verdicts()
    v.fail("origin-foreign", "first")
    v.ok("origin-foreign")
    assert ([f.summary for f in v.findings], v.passed) == (["first"], [])


def test_second_fail_is_ignored():
    v = Verdicts()
    v.fail("origin-foreign", "first")
    v.fail("origin-foreign", "second", severity=Severity.CRITICAL)
    assert [(f.summary, f.level) for f in v.findings] == [("first", Severity.HIGH)]


def test_fail_after_skip_is_ignored():
    v = Verdicts()
    v.skip("origin-null", "why")
    v.fail("origin-null", "late")
    v.ok("origin-null")
    assert (v.skipped, v.findings, v.passed) == ({"origin-null": "why"}, [], [])


def test_skip_after_ok_is_ignored():
    v = Verdicts()
    v.ok("origin-null")
    v.skip("origin-null", "late")
    assert (v.passed, v.skipped) == (["origin-null"], {})


def test_second_skip_keeps_the_first_reason():
    v = Verdicts()
    v.skip("origin-null", "first")
    v.skip("origin-null", "second")
    assert v.skipped == {"origin-null": "first"}


def test_fail_records_evidence_and_severity():
    v = Verdicts()
    ev = Evidence("label", "sent", "received")
    v.fail("origin-missing", "summary", [ev], Severity.LOW)
    finding = v.findings[0]
    assert (finding.check.id, finding.summary, finding.evidence, finding.level) == (
        "origin-missing",
        "summary",
        (ev,),
        Severity.LOW,
    )


def test_verdicts_on_different_checks_are_independent():
    v = Verdicts()
    v.ok("origin-foreign")
    v.fail("origin-null", "x")
    v.skip("origin-missing", "y")
    assert (v.decided("origin-foreign"), v.decided("origin-null"), v.decided("origin-missing"),
            v.decided("origin-port")) == (True, True, True, False)  # fmt: skip


def test_fail_with_unknown_id_raises_key_error():
    with pytest.raises(KeyError):
        Verdicts().fail("no-such-check", "x")


# ---------------------------------------------------------------- local servers


@contextlib.asynccontextmanager
async def holding_server() -> AsyncIterator[int]:
    """Accepts connections and keeps them until the client leaves."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class Capture:
    """Answers every request with ``reply`` and keeps the request heads it received."""

    def __init__(self, reply: bytes = FORBIDDEN) -> None:
        self.reply = reply
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.reply)
            await writer.drain()
            await reader.read()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    def request_line(self, index: int = -1) -> str:
        return self.requests[index].decode().split("\r\n")[0]

    def headers(self, index: int = -1) -> list[tuple[str, str]]:
        lines = self.requests[index].decode().split("\r\n")[1:-2]
        return [tuple(line.split(": ", 1)) for line in lines]  # type: ignore[misc]

    def named(self, name: str, index: int = -1) -> list[str]:
        return [value for key, value in self.headers(index) if key == name]


@contextlib.asynccontextmanager
async def capturing(capture: Capture) -> AsyncIterator[int]:
    server = await asyncio.start_server(capture.handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def options(port: int, path: str = "/ws", **kwargs: object) -> ScanOptions:
    return ScanOptions(
        target=parse_target(f"ws://127.0.0.1:{port}{path}"),
        origin=ORIGIN,
        timeout=2.0,
        **kwargs,  # type: ignore[arg-type]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- connect


async def test_connect_refuses_past_the_budget():
    async with holding_server() as port:
        s = ScanSession(options(port, max_connections=2, max_rate=50))
        first = await s.connect()
        second = await s.connect()
        try:
            with pytest.raises(ProbeError) as info:
                await s.connect()
        finally:
            await first.close()
            await second.close()
    assert str(info.value) == "the scan's budget of 2 connections is spent"
    assert s.requests == 2


async def test_requests_counts_every_connection():
    async with holding_server() as port:
        s = ScanSession(options(port, max_rate=100))
        for _ in range(3):
            conn = await s.connect()
            await conn.close()
    assert s.requests == 3


async def test_connections_are_paced_by_max_rate():
    loop = asyncio.get_running_loop()
    async with holding_server() as port:
        s = ScanSession(options(port, max_rate=10))
        started = loop.time()
        for _ in range(3):
            conn = await s.connect()
            await conn.close()
        elapsed = loop.time() - started
    assert elapsed >= 0.19  # three starts 0.1 s apart


async def test_closed_port_cannot_connect():
    port = free_port()
    s = ScanSession(options(port))
    with pytest.raises(ProbeError) as info:
        await s.connect()
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: refused"
    assert s.requests == 1


# ---------------------------------------------------------------- mint_ticket


def ticket_session(command: str | None) -> ScanSession:
    return ScanSession(options(free_port(), credentials=Credentials(ticket_cmd=command)))


async def test_ticket_is_the_printed_line():
    assert await ticket_session("echo T1").mint_ticket() == "T1"


async def test_ticket_is_the_first_line_stripped():
    assert await ticket_session("printf '  T2  \\nsecond\\n'").mint_ticket() == "T2"


async def test_ticket_command_failing_names_the_status():
    with pytest.raises(ProbeError) as info:
        await ticket_session("exit 3").mint_ticket()
    assert str(info.value) == "--ticket-cmd exited with status 3"


async def test_ticket_command_printing_nothing():
    with pytest.raises(ProbeError) as info:
        await ticket_session("true").mint_ticket()
    assert str(info.value) == "--ticket-cmd printed nothing"


async def test_ticket_command_printing_blank_lines():
    with pytest.raises(ProbeError, match=r"^--ticket-cmd printed nothing$"):
        await ticket_session("printf '\\n  \\n'").mint_ticket()


async def test_no_ticket_command():
    with pytest.raises(ProbeError, match=r"^no ticket command$"):
        await ticket_session(None).mint_ticket()


# ---------------------------------------------------------------- handshake


async def handshake_with(
    creds: Credentials | None = None, path: str = "/ws", **kwargs: object
) -> tuple[Capture, ScanSession]:
    capture = Capture()
    async with capturing(capture) as port:
        s = ScanSession(options(port, path, credentials=creds or Credentials()))
        response, conn = await s.handshake("test", **kwargs)  # type: ignore[arg-type]
    assert (response.status, conn) == (403, None)
    return capture, s


async def test_handshake_sends_the_upgrade_headers_and_trusted_origin():
    capture, _ = await handshake_with()
    names = [name for name, _ in capture.headers()]
    assert capture.request_line() == "GET /ws HTTP/1.1"
    assert names == [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Origin",
    ]
    assert capture.named("Origin") == [ORIGIN]


async def test_handshake_host_is_the_targets_host_header():
    capture, s = await handshake_with()
    assert capture.named("Host") == [s.target.host_header]


async def test_handshake_host_override():
    capture, _ = await handshake_with(host="evil.test")
    assert capture.named("Host") == ["evil.test"]


async def test_no_origin_header_when_origin_is_none():
    capture, _ = await handshake_with(origin=None)
    assert capture.named("Origin") == []


async def test_origin_string():
    capture, _ = await handshake_with(origin="null")
    assert capture.named("Origin") == ["null"]


async def test_extra_origins_give_two_origin_headers_in_order():
    capture, _ = await handshake_with(origin="https://a.test", extra_origins=["https://b.test"])
    assert capture.named("Origin") == ["https://a.test", "https://b.test"]


async def test_cookie_sent_by_default_when_given():
    capture, _ = await handshake_with(Credentials(cookie="sid=abc"))
    assert capture.named("Cookie") == ["sid=abc"]


async def test_cookie_not_sent_when_cookie_false():
    capture, _ = await handshake_with(Credentials(cookie="sid=abc"), cookie=False)
    assert capture.named("Cookie") == []


async def test_no_cookie_header_without_a_cookie():
    capture, _ = await handshake_with(cookie=True)
    assert capture.named("Cookie") == []


async def test_token_not_sent_by_default():
    capture, _ = await handshake_with(Credentials(token="tok"))
    assert capture.named("Authorization") == []


async def test_token_sent_as_bearer_when_asked():
    capture, _ = await handshake_with(Credentials(token="tok"), token=True)
    assert capture.named("Authorization") == ["Bearer tok"]


async def test_no_authorization_without_a_token():
    capture, _ = await handshake_with(token=True)
    assert capture.named("Authorization") == []


async def test_ticket_goes_in_the_query_under_its_param():
    creds = Credentials(ticket_cmd="echo T1", ticket_param="wst")
    capture, _ = await handshake_with(creds, ticket=True)
    assert capture.request_line() == "GET /ws?wst=T1 HTTP/1.1"


async def test_ticket_is_appended_to_an_existing_query():
    creds = Credentials(ticket_cmd="echo T1")
    capture, _ = await handshake_with(creds, "/ws?room=1", ticket=True)
    assert capture.request_line() == "GET /ws?room=1&ticket=T1 HTTP/1.1"


async def test_ticket_not_minted_unless_asked():
    creds = Credentials(ticket_cmd="exit 3")  # would raise if it ran
    capture, _ = await handshake_with(creds)
    assert capture.request_line() == "GET /ws HTTP/1.1"


async def test_query_params_are_url_encoded():
    capture, _ = await handshake_with(query=[("token", "a b&c")])
    assert capture.request_line() == "GET /ws?token=a+b%26c HTTP/1.1"


async def test_extra_headers_come_last():
    capture, _ = await handshake_with(
        Credentials(cookie="c=1"), headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]
    )
    assert capture.headers()[-2:] == [
        ("Cookie", "c=1"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ]


async def test_every_response_is_recorded_for_disclosure():
    _, s = await handshake_with()
    assert [(label, response.status) for label, response in s.handshakes] == [("test", 403)]


async def test_accepted_handshake_returns_the_open_connection():
    capture = Capture(SWITCHING)
    async with capturing(capture) as port:
        s = ScanSession(options(port))
        response, conn = await s.handshake("ok")
        assert conn is not None
        await conn.close()
    assert response.status == 101


async def test_open_authenticated_refused_raises():
    capture = Capture()
    async with capturing(capture) as port:
        s = ScanSession(options(port, credentials=Credentials(token="tok")))
        with pytest.raises(ProbeError) as info:
            await s.open_authenticated("auth")
    assert str(info.value) == "a legitimate handshake was refused (HTTP 403 Forbidden)"
    assert capture.named("Authorization") == ["Bearer tok"]


# ---------------------------------------------------------------- saw_close


def test_saw_close_keeps_only_close_frames():
    s = ScanSession(options(free_port()))
    with_code = Received(close_code=1002, close_reason="x", closed=True)
    s.saw_close("a", with_code)
    s.saw_close("b", Received(closed=True))
    assert s.closes == [("a", with_code)]
