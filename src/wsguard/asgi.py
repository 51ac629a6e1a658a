"""The ASGI guard: wsguard's handshake pipeline and inbound limits in front of any ASGI app.

``Guard(app, config)`` wraps an existing FastAPI / Starlette / Django Channels application (any
ASGI 3 app). HTTP and lifespan scopes go to the app untouched (the same scope, receive and send
objects). Every ``websocket`` scope first runs the same sans-I/O ``HandshakePipeline`` as the
native server — Host, Origin, transport (TLS, trusted proxies), handshake rate, connection caps,
authentication — then, once accepted, every inbound message is charged to a size and rate check
(and, with ``schema=``, decoded and validated) before the app sees it.

What the guard does not do: it does not speak wsguard's wire protocol (no channels, replies,
first-message authentication or refresh), it does not authorize individual messages (the app
does, with ``scope["wsguard.principal"]``), and it does not see frames: the ASGI server
reassembles messages and enforces its own frame limits (uvicorn's ``--ws-max-size``, ...).

Refusals (see ``docs/howto/protect-an-asgi-app.md``):

- handshake refused: with the ASGI "websocket.http.response" extension (uvicorn, hypercorn), the
  pipeline's status (400, 401 + ``WWW-Authenticate`` for basic, 403, 429, 503...) with a short
  generic body; without it (daphne), ``websocket.close`` before accept, code 1008, which the
  server turns into its own refusal (HTTP 403 in the ASGI spec);
- a message over ``limits.max_message_bytes``: close 1009;
- a message over the connection's or user's rate (``limits.messages_per_second`` / ``burst``,
  bytes, per-user budgets): close 1008. The guard cannot answer in the app's protocol, and
  dropping the message silently would lose it without a trace, so the connection ends;
- with ``schema=``: a text message that is not a JSON object by wsguard's codec rules, fails
  the schema, or a binary message: close 1007.

A server that refuses these codes from an application (daphne: autobahn only allows 1000 and
3000-4999) gets the same meaning in the terminal application range instead: 4413 (too big),
4429 (rate), 4422 (invalid data). In each case the app receives ``websocket.disconnect`` with
the RFC 6455 code, and anything it sends
afterwards is dropped. The connection's slot (per-IP, per-user, total caps) is released when the
socket ends, whichever side ends it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from wsguard.auth import AuthService
from wsguard.brokers.base import TicketStore
from wsguard.codes import CloseCode
from wsguard.core.codec import Violation, decode
from wsguard.core.decisions import Accept, Reject
from wsguard.core.handshake import HandshakePipeline
from wsguard.core.limits import client_key
from wsguard.core.pipeline import MessageGate, UserRates
from wsguard.core.schema import Schema
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.settings import Settings

__all__ = [
    "APPLICATION_CLOSE_CODES",
    "CLIENT_IP_KEY",
    "DENIAL_EXTENSION",
    "ORIGIN_KEY",
    "PRINCIPAL_KEY",
    "Guard",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PRINCIPAL_KEY: Final = "wsguard.principal"
"""The scope key under which the app finds the connection's ``Principal``."""

CLIENT_IP_KEY: Final = "wsguard.client_ip"
"""The scope key of the client's address as the pipeline resolved it (trusted proxies)."""

ORIGIN_KEY: Final = "wsguard.origin"
"""The scope key of the handshake's checked Origin (``None`` without one)."""

DENIAL_EXTENSION: Final = "websocket.http.response"
"""The ASGI extension that lets the guard answer a refused handshake with an HTTP response."""

log = logging.getLogger("wsguard.asgi")

_AUTH_REQUIRED: Final = Reject(401, "Unauthorized", "auth_required")
_INTERNAL_ERROR: Final = Reject(500, "Internal Server Error", "internal_error")
# The close codes the guard uses when the server refuses RFC 6455 codes from an application:
# the 44xx terminal range, mirroring the HTTP status (413 too large, 429 too many, 422 invalid).
APPLICATION_CLOSE_CODES: Final[Mapping[int, int]] = {
    CloseCode.MESSAGE_TOO_BIG: 4413,
    CloseCode.POLICY_VIOLATION: 4429,
    CloseCode.INVALID_DATA: 4422,
}
_BASE_HEADERS: Final = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


def upgrade_request(scope: Mapping[str, Any], ws_path: str) -> UpgradeRequest:
    """The ``UpgradeRequest`` the handshake pipeline decides, built from a websocket scope.

    Header fields keep every value in order (duplicates are refused by the pipeline). The
    path given to the pipeline is ``ws_path``: routing is the app's business, and every
    WebSocket route of the app is guarded. ASGI servers only hand an app the handshakes they
    validated, but the pipeline's request checks run anyway; a WebSocket over HTTP/2 (RFC 8441)
    has no ``Upgrade`` fields and is refused with 400.
    """
    headers = Headers(
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in scope.get("headers", ())
    )
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    client = scope.get("client")
    return UpgradeRequest(
        method="GET",
        target=f"{ws_path}?{query}" if query else ws_path,
        http_version=f"HTTP/{scope.get('http_version', '1.1')}",
        headers=headers,
        peer=str(client[0]) if client else "",
        is_tls=scope.get("scheme") == "wss",
    )


class Guard:
    """ASGI 3 middleware running wsguard's handshake pipeline and message limits.

    Args:
        app: the ASGI application to protect.
        config: validated ``Settings``, or the path of a TOML config file (loaded with
            ``wsguard.config.load_settings``, environment overrides applied).
        schema: a JSON Schema (document or compiled ``Schema``) every inbound text message
            must satisfy; ``None`` (default) checks only size and rate.
        tickets: the store single-use tickets are consumed in. Default: the store of
            ``broker.url`` (in memory, or Redis so that a replay fails on every node).
        env: where secrets are read (``os.environ``).
        loopback_bound: whether the ASGI server listens on loopback only (with an empty
            ``origins.allowed_hosts``, only loopback Host names are then accepted). Default:
            whether ``server.host`` is a loopback address: set it to where the server binds.
        clock: wall-clock time (tickets and tokens carry wall-clock expiries).
        monotonic: the clock of the rate limits.

    Raises:
        ConfigError: invalid config, or a configured auth method without its secret.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Settings | str | os.PathLike[str],
        *,
        schema: Mapping[str, Any] | Schema | None = None,
        tickets: TicketStore | None = None,
        env: Mapping[str, str] | None = None,
        loopback_bound: bool | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from wsguard.audit import AuditLog
        from wsguard.config import is_loopback_host, load_settings

        settings = config if isinstance(config, Settings) else load_settings(Path(config))
        if tickets is None:
            from wsguard.brokers import open_broker

            _, tickets = open_broker(settings.broker, clock=clock)
        self.app = app
        self.settings = settings
        self.auth = AuthService(settings, os.environ if env is None else env, tickets, clock)
        if loopback_bound is None:
            loopback_bound = is_loopback_host(settings.server.host)
        self.pipeline = HandshakePipeline(
            settings, loopback_bound=loopback_bound, authenticators=self.auth.authenticators
        )
        self.schema = Schema.compile(schema) if isinstance(schema, Mapping) else schema
        self.audit = AuditLog(settings.log.audit)
        self._users = UserRates(settings.limits)
        self._clock = clock
        self._monotonic = monotonic

    @property
    def open_connections(self) -> int:
        """WebSocket connections accepted and not yet ended."""
        return self.pipeline.open_connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # the client left before the handshake reached us
        request = upgrade_request(scope, self.settings.server.ws_path)
        peer = request.peer
        decision = await self._decide(request)
        self.audit.handshake(request, peer, decision)
        if isinstance(decision, Reject):
            await _deny(scope, send, decision)
            return
        child = dict(scope)
        child[PRINCIPAL_KEY] = decision.principal
        child[CLIENT_IP_KEY] = decision.client_ip
        child[ORIGIN_KEY] = decision.origin
        socket = _GuardedSocket(self, decision, connect, receive, send)
        try:
            await self.app(child, socket.receive, socket.send)
        finally:
            socket.ended("app_returned")

    async def _decide(self, request: UpgradeRequest) -> Accept | Reject:
        decision = self.pipeline.decide(request, self._clock())
        if isinstance(decision, Reject):
            return decision
        try:
            result = await self._finish(decision)
        except Exception:
            log.exception("finishing the handshake failed")
            result = _INTERNAL_ERROR
        if isinstance(result, Reject):
            self.pipeline.release(decision)
        return result

    async def _finish(self, decision: Accept) -> Accept | Reject:
        """What the native listener does between the pipeline and 101: consume the ticket,
        check the password in a thread, check revocation."""
        if not decision.deferred:
            if decision.principal.is_pending:
                # The pipeline would let the socket authenticate in its first message; the
                # guard does not speak wsguard's protocol, so the credential must come with the
                # handshake (?ticket=, Authorization, cookie + csrf).
                return _AUTH_REQUIRED
            return self.auth.check_revoked(decision.principal) or decision
        result = await self.auth.finish(decision)
        if isinstance(result, Reject):
            return result
        rebound = self.pipeline.rebind(decision, result)
        if isinstance(rebound, Reject):
            return rebound
        # The claimed principal is confirmed: the Accept no longer carries deferred work.
        return replace(rebound, consume=None, verify=None, claimed=None)


async def _deny(scope: Scope, send: Send, decision: Reject) -> None:
    """Refuse the handshake: an HTTP response when the server lets us, else close-before-accept
    (which the ASGI spec turns into HTTP 403)."""
    if DENIAL_EXTENSION in (scope.get("extensions") or {}):
        phrase = HTTPStatus(decision.status).phrase
        body = f"{decision.status} {phrase}\n".encode()
        headers = [
            *_BASE_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in decision.headers),
        ]
        await send(
            {"type": "websocket.http.response.start", "status": decision.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        return
    # Plain ints: some servers (daphne via autobahn) refuse int subclasses as close codes.
    await send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION)})


class _GuardedSocket:
    """The receive/send pair the app gets for one accepted WebSocket."""

    __slots__ = (
        "_accept",
        "_closed",
        "_connect",
        "_gate",
        "_guard",
        "_receive",
        "_released",
        "_send",
        "_user_key",
    )

    def __init__(
        self, guard: Guard, accept: Accept, connect: Message, receive: Receive, send: Send
    ) -> None:
        self._guard = guard
        self._accept = accept
        self._connect: Message | None = connect
        self._receive = receive
        self._send = send
        self._gate = MessageGate(guard.settings.limits, guard._users)
        user = accept.principal.user_id
        self._user_key = user if user is not None else f"ip:{client_key(accept.client_ip)}"
        self._closed: int | None = None  # the code the guard closed with
        self._released = False

    async def receive(self) -> Message:
        connect, self._connect = self._connect, None
        if connect is not None:
            return connect
        if self._closed is not None:
            return {"type": "websocket.disconnect", "code": self._closed}
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            code = self._check(message)
            if code is not None:
                await self._close(code)
                return {"type": "websocket.disconnect", "code": int(code)}
        elif kind == "websocket.disconnect":
            self.ended("closed", message.get("code"))
        return message

    async def send(self, message: Message) -> None:
        if self._closed is not None:
            return  # the guard closed this socket; the app learns it from receive()
        if message["type"] == "websocket.accept":
            message = _with_headers(message, self._accept.headers)
        await self._send(message)

    def _check(self, message: Message) -> int | None:
        """The close code for an inbound message the guard refuses, or ``None``."""
        limits = self._guard.settings.limits
        text: str | None = message.get("text")
        data: bytes | None = message.get("bytes")
        if text is not None:
            # A character is 1 to 4 UTF-8 bytes: encode only when the length leaves a doubt.
            size = len(text) if len(text) > limits.max_message_bytes else len(text.encode())
        else:
            size = len(data or b"")
        if size > limits.max_message_bytes:
            return self._refuse(CloseCode.MESSAGE_TOO_BIG, "message_too_big")
        now = self._guard._monotonic()
        if self._gate.charge(size, self._user_key, now) is not None:
            return self._refuse(CloseCode.POLICY_VIOLATION, "rate_limited")
        schema = self._guard.schema
        if schema is None:
            return None
        if text is None:
            return self._refuse(CloseCode.INVALID_DATA, "binary_with_schema")
        value = decode(text, max_depth=limits.json_max_depth)
        if isinstance(value, Violation):
            return self._refuse(CloseCode.INVALID_DATA, value.reason)
        violation = schema.check(value)
        if violation is not None:
            return self._refuse(CloseCode.INVALID_DATA, violation.reason)
        return None

    def _refuse(self, code: CloseCode, reason: str) -> int:
        accept = self._accept
        self._guard.audit.emit(
            "message_refused",
            client_ip=accept.client_ip,
            user=accept.principal.user_id,
            reason=reason,
            code=int(code),
        )
        return int(code)

    async def _close(self, code: int) -> None:
        self._closed = code
        self.ended("guard_closed", code)
        try:
            await self._send({"type": "websocket.close", "code": int(code)})
            return
        except Exception:
            fallback = APPLICATION_CLOSE_CODES.get(code)
            if fallback is None:  # the server already considers the socket gone
                log.debug("closing a refused socket failed", exc_info=True)
                return
        # Some servers only let an application close with 1000 or 3000-4999 (daphne, through
        # autobahn): say the same thing in the terminal application range (DESIGN.md §6).
        try:
            await self._send({"type": "websocket.close", "code": fallback})
        except Exception:
            log.debug("closing a refused socket failed", exc_info=True)

    def ended(self, reason: str, code: int | None = None) -> None:
        """Release the connection's slot, once, whichever path ends it."""
        if self._released:
            return
        self._released = True
        accept = self._accept
        self._guard.pipeline.release(accept)
        self._guard.audit.closed(
            "", accept.client_ip, accept.principal.user_id, code or self._closed, reason
        )


def _with_headers(message: Message, extra: tuple[tuple[str, str], ...]) -> Message:
    """The app's ``websocket.accept`` plus the pipeline's headers (``Vary``,
    ``Access-Control-Allow-Origin``) the app did not set itself."""
    headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
    present = {name.lower() for name, _ in headers}
    for name, value in extra:
        key = name.lower().encode()
        if key not in present:
            headers.append((key, value.encode()))
    return {**message, "headers": headers}
