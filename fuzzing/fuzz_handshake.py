"""Fuzz the opening handshake as the listener runs it: raw request bytes -> the header-size cap
-> websockets' HTTP request parser (``EngineProtocol``, the core the listener drives) -> the
plain-HTTP routes -> ``HandshakePipeline.decide`` with every handshake authentication method ->
the response the listener would send.

Each request is decided three times: from a loopback peer in plaintext, from a public peer
over TLS, and from a trusted proxy (whose ``X-Forwarded-*`` fields count).

Invariant: nothing raises; a request websockets cannot parse gets its 414/431 (or the listener's
400); a refusal has a status and reason code docs/reference/codes.md documents (never
``internal_error``, which means a check raised) and only the status phrase as public text; an
acceptance implies everything the pipeline promises:

- GET, HTTP/1.1, the WebSocket path; one Host, Origin, Upgrade, Sec-WebSocket-Key and
  Sec-WebSocket-Version; no body; Upgrade has the ``websocket`` token, Connection ``upgrade``;
- the key is base64 of exactly 16 bytes, the version exactly ``13``;
- the Host, normalised, is in the allow-list (checked here by an independent matcher);
- exactly one Origin, which (serialized) is in the allow-list and is what ``Accept.origin`` and
  ``Access-Control-Allow-Origin`` carry;
- a principal other than ``PENDING`` comes from a credential minted in harness_fixtures (a
  ticket is only accepted from the origin it was minted for), and a Basic password only
  verifies when it is the right one.

Run: ``python fuzzing/fuzz_handshake.py fuzzing/corpus/handshake -dict=fuzzing/http.dict``.
"""

# A harness reports a broken invariant to libFuzzer by raising: assert is the tool here (never
# run a harness under python -O).
# ruff: noqa: S101, PT018

from __future__ import annotations

import base64
import re
import sys
from http import HTTPStatus
from typing import Final

from fuzz_frames import ERRORS, LOOP, STATES, FakeTransport
from harness_fixtures import (
    DOCUMENTED_REJECTS,
    MINTED_USERS,
    NOW,
    ORIGIN,
    PASSWORD,
    SETTINGS,
    TRUSTED_PROXY,
    WS_PATH,
    pipeline,
)
from websockets.http11 import Request
from websockets.protocol import State

from wsguard.core.decisions import PENDING, Accept, Reject
from wsguard.core.host import parse_host
from wsguard.core.origin import serialize_origin
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.server import responses
from wsguard.server.listener import WsConnection
from wsguard.server.protocol import EngineProtocol

LIMITS: Final = SETTINGS.limits
# (peer, is_tls, schemes the request may have): a trusted proxy decides with X-Forwarded-Proto.
CONTEXTS: Final = (
    ("127.0.0.1", False, ("http",)),
    ("203.0.113.7", True, ("https",)),
    (TRUSTED_PROXY, False, ("http", "https")),
)
PIPELINES: Final = tuple(pipeline() for _ in CONTEXTS)
_KEY: Final = re.compile(r"[A-Za-z0-9+/]{22}==", re.ASCII)
_WILD_HOST: Final = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+example\.com", re.ASCII)
_WILD_ORIGIN: Final = re.compile(
    r"https://(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+example\.com:8443", re.ASCII
)
_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)
_PARSER_STATUSES: Final = (414, 431)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_ALICE_TICKET_ID: Final = "fuzz-ticket-alice-0001"

_clock = [NOW]
# The listener of fuzz_frames (anonymous, loopback): what it may answer a request with.
LISTENER_STATE: Final = STATES[False]
LISTENER_STATUSES: Final = {101, 200, *DOCUMENTED_REJECTS.values(), *_PARSER_STATUSES}


def _tokens(values: tuple[str, ...]) -> set[str]:
    return {p.strip(" \t").lower() for v in values for p in v.split(",") if p.isascii()}


def _host_allowed(value: str, schemes: tuple[str, ...]) -> bool:
    """An independent reading of harness_fixtures.ALLOWED_HOSTS."""
    assert _PRINTABLE.fullmatch(value), value
    host, port = parse_host(value)
    for scheme in schemes:
        effective = _DEFAULT_PORTS[scheme] if port is None else port
        if host == "app.example.com" and effective == _DEFAULT_PORTS[scheme]:
            return True
        if _WILD_HOST.fullmatch(host) and effective == 8443:
            return True
        if host in ("127.0.0.1", "[::1]") and effective == 8080:
            return True
    return False


def _origin_allowed(value: str) -> str:
    """An independent reading of harness_fixtures.ALLOWED_ORIGINS; returns the serialization."""
    assert _PRINTABLE.fullmatch(value), value
    origin = serialize_origin(value)
    assert origin in (ORIGIN, "http://127.0.0.1:8080") or _WILD_ORIGIN.fullmatch(origin), origin
    return origin


def check_accept(request: UpgradeRequest, accept: Accept, schemes: tuple[str, ...]) -> None:
    """Everything an ``Accept`` implies about the request (see the module docstring)."""
    headers = request.headers
    assert request.method == "GET"
    assert request.http_version == "HTTP/1.1"
    assert request.path == WS_PATH
    for name in ("Host", "Origin", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version"):
        assert headers.count(name) == 1, name
    assert "transfer-encoding" not in headers
    assert set(headers.get_all("Content-Length")) <= {"0"}
    assert "websocket" in _tokens(headers.get_all("Upgrade"))
    assert "upgrade" in _tokens(headers.get_all("Connection"))
    key = headers.get("Sec-WebSocket-Key") or ""
    assert _KEY.fullmatch(key), key
    assert len(base64.b64decode(key, validate=True)) == 16
    assert headers.get("Sec-WebSocket-Version") == "13"
    assert _host_allowed(headers.get("Host") or "", schemes)
    origin = _origin_allowed(headers.get("Origin") or "")
    assert accept.origin == origin
    assert ("Access-Control-Allow-Origin", origin) in accept.headers
    assert ("Vary", "Origin") in accept.headers
    principal = accept.principal
    if accept.claimed is not None:
        assert principal == PENDING and accept.deferred
        principal = accept.claimed
    if principal == PENDING:
        return
    if principal.method == "basic":
        assert accept.verify is not None
        if accept.verify():
            assert principal.user_id == "alice", principal
            assert PASSWORD in _basic_passwords(headers)
        return
    assert principal.user_id in MINTED_USERS, principal
    if principal.method == "ticket":
        # Only alice's ticket is unexpired and minted for an origin this server allows.
        assert accept.consume == _ALICE_TICKET_ID, accept.consume
        assert origin == ORIGIN


def _basic_passwords(headers: Headers) -> list[str]:
    found = []
    for value in headers.get_all("Authorization"):
        encoded = value.strip(" \t").partition(" ")[2].strip(" \t")
        found.append(base64.b64decode(encoded).decode().partition(":")[2])
    return found


def check_reject(reject: Reject) -> None:
    assert reject.audit_reason != "internal_error", "a handshake check raised"
    assert DOCUMENTED_REJECTS.get(reject.audit_reason) == reject.status, reject
    assert reject.public_reason == HTTPStatus(reject.status).phrase, reject
    assert responses.reject_response(reject).serialize().startswith(b"HTTP/1.1 ")


def decide(request: Request, engine: EngineProtocol) -> None:
    """What ``WsConnection._on_request`` does with a parsed request, in each context."""
    if engine.eof_sent:
        return  # the core failed on bytes behind the head: the listener answers 400 raw
    for (peer, is_tls, schemes), pipe in zip(CONTEXTS, PIPELINES, strict=True):
        upgrade = UpgradeRequest(
            method=request.method,
            target=request.path,
            http_version=request.protocol,
            headers=Headers(request.headers.raw_items()),
            peer=peer,
            is_tls=is_tls,
        )
        if upgrade.path != WS_PATH:
            response = responses.route(upgrade, {})
            if response is not None:
                assert response.status_code == 200
                continue
        # A fresh hour each time: the rate limiter refills, so no input depends on the last.
        _clock[0] += 3600.0
        decision = pipe.decide(upgrade, _clock[0])
        if isinstance(decision, Reject):
            check_reject(decision)
            continue
        try:
            check_accept(upgrade, decision, schemes)
        finally:
            pipe.release(decision)
    # The listener then lets the core build the 101; it may refuse what the pipeline accepted
    # (fail closed: "engine_refused"), but it must answer, not raise or fail with a 500.
    response = engine.accept(request)
    assert response.status_code != 500, response
    engine.send_response(response)


async def _listener(data: bytes) -> None:
    conn = WsConnection(LISTENER_STATE)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(data)
    if not transport.closing:
        conn.eof_received()
    conn.connection_lost(None)
    written = b"".join(transport.written)
    if written:
        assert written.startswith(b"HTTP/1.1 "), written[:40]
        assert int(written[9:12]) in LISTENER_STATUSES, written[:40]


def listener(data: bytes) -> None:
    """The same bytes through the listener itself (``WsConnection`` on a fake transport): it
    must answer with an HTTP status, never raise out of ``data_received`` nor log an error."""
    ERRORS.records.clear()
    LOOP.run_until_complete(_listener(data))
    assert not ERRORS.records, [r.getMessage() for r in ERRORS.records]


def TestOneInput(data: bytes) -> None:
    listener(data)
    if len(data) > LIMITS.max_header_bytes:
        return  # WsConnection.data_received answers 431 header_too_large before parsing
    engine = EngineProtocol(max_size=LIMITS.max_message_bytes)
    engine.receive_data(data)
    requests = [e for e in engine.events_received() if isinstance(e, Request)]
    assert len(requests) <= 1
    if requests:
        decide(requests[0], engine)
        return
    # The peer stops sending: an incomplete request head is a parse failure.
    engine.receive_eof()
    assert not any(isinstance(e, Request) for e in engine.events_received())
    assert engine.state is not State.OPEN
    if engine.handshake_exc is not None:
        # What the listener answers: the parser's own 414/431, or else its 400.
        statuses = [int(c[9:12]) for c in engine.data_to_send() if c[:5] == b"HTTP/"]
        assert set(statuses) <= set(_PARSER_STATUSES), statuses


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
