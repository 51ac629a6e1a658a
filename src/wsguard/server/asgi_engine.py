"""An ASGI engine for the protocol sessions: ``ProtocolSession`` over ASGI ``receive``/``send``.

``run_session`` serves one ``websocket`` scope that ``wsguard.asgi.Guard`` already accepted: the
guard ran the handshake pipeline (Origin, Host, transport, caps, authentication) and put the
``Principal``, the resolved client address and the checked Origin in the scope; it also charges
every inbound message to the size and rate limits. Here the session's own message pipeline runs
as on the native server (``MessageGate``, authorization, schemas, ops).

What differs from the native engine (``listener.py``):

- the ASGI server frames messages, answers pings and enforces its own frame limits, so
  ``push_frame`` queues the payload as a text message and keepalive is the server's;
  ``limits.idle_timeout`` does not apply;
- outgoing messages go through one ordered queue written by a writer task; when more than
  ``limits.max_send_queue_bytes`` wait there, the connection is closed with 4509, as natively;
- ``set_principal`` only rebinds the principal: the per-user connection caps are the guard's,
  applied at the handshake only (a refresh to another user is not re-counted). The guard refuses
  sockets without a credential, so first-message authentication does not happen here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from wsguard.asgi import (
    APPLICATION_CLOSE_CODES,
    CLIENT_IP_KEY,
    ORIGIN_KEY,
    PRINCIPAL_KEY,
    Message,
    Receive,
    Scope,
    Send,
)
from wsguard.codes import CloseCode
from wsguard.core.decisions import Principal, Reject

if TYPE_CHECKING:
    from wsguard.audit import AuditLog
    from wsguard.auth import AuthService
    from wsguard.server.engine import Connection, Session
    from wsguard.server.services import Services

__all__ = ["AsgiConnection", "run_session"]

log = logging.getLogger("wsguard.server")

_CLOSE: Final = "websocket.close"


class AsgiConnection:
    """The ``Connection`` of one accepted ASGI WebSocket (see the module docstring)."""

    def __init__(
        self,
        scope: Scope,
        send: Send,
        services: Services,
        auth: AuthService,
        audit: AuditLog,
    ) -> None:
        principal = scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            raise ValueError(
                "the scope has no wsguard principal: serve it behind wsguard.asgi.Guard"
            )
        self._principal = principal
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        self._peer = peer
        self._client_ip = str(scope.get(CLIENT_IP_KEY) or peer)
        origin = scope.get(ORIGIN_KEY)
        self._origin = origin if isinstance(origin, str) else None
        self._send = send
        self._services = services
        self._auth = auth
        self._audit = audit
        self._open = True
        self._outbox: deque[tuple[Message, int]] = deque()
        self._outbox_bytes = 0
        self._wakeup = asyncio.Event()
        self._readable = asyncio.Event()
        self._readable.set()
        self.close_code: int | None = None  # the code we closed with

    # ------------------------------------------------------------------ Connection API

    @property
    def principal(self) -> Principal:
        return self._principal

    @property
    def origin(self) -> str | None:
        return self._origin

    @property
    def auth(self) -> AuthService:
        return self._auth

    @property
    def services(self) -> Services:
        return self._services

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def client_ip(self) -> str:
        return self._client_ip

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def push_frame(self, frame: bytes, payload: bytes) -> bool:
        # The ASGI server frames messages itself: queue the payload; nothing to flush later.
        self.send_text(payload)
        return False

    def flush_pushes(self) -> None:
        pass

    def set_principal(self, principal: Principal) -> Reject | None:
        # The guard's per-user caps were applied at the handshake; they are not re-counted.
        self._principal = principal
        return None

    def audit(self, event: str, **fields: object) -> None:
        self._audit.emit(
            event,
            peer=self._peer,
            client_ip=self._client_ip,
            user=self._principal.user_id,
            **fields,
        )

    def send_text(self, data: bytes) -> None:
        if self._open:
            self._queue({"type": "websocket.send", "text": data.decode()}, len(data))

    def send_binary(self, data: bytes) -> None:
        if self._open:
            self._queue({"type": "websocket.send", "bytes": data}, len(data))

    def close(self, code: int, reason: str) -> None:
        if not self._open:
            return
        self._open = False
        self.close_code = code
        self._readable.set()  # a paused reader must notice the end
        self._outbox.append(({"type": _CLOSE, "code": int(code)}, 0))
        self._wakeup.set()

    # ------------------------------------------------------------------ the engine's side

    def _queue(self, message: Message, size: int) -> None:
        self._outbox.append((message, size))
        self._outbox_bytes += size
        self._wakeup.set()
        if self._outbox_bytes > self._services.limits.max_send_queue_bytes:
            # A consumer this far behind would make us buffer without bound (as natively:
            # nothing more is queued for it, the close goes behind what is queued).
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")

    def peer_closed(self) -> None:
        """The client ended the socket: nothing more is sent."""
        self._open = False
        self._readable.set()
        self._outbox.clear()
        self._outbox_bytes = 0
        self._wakeup.set()

    async def wait_readable(self) -> None:
        await self._readable.wait()

    async def write_loop(self) -> None:
        """Send the queued messages in order; return after the close (ours) or when the
        socket is gone."""
        outbox = self._outbox
        while True:
            while not outbox:
                if not self._open:
                    return  # the peer left
                self._wakeup.clear()
                await self._wakeup.wait()
            message, size = outbox.popleft()
            if message["type"] == _CLOSE:
                await self._send_close(int(message["code"]))
                return
            self._outbox_bytes -= size
            try:
                await self._send(message)
            except Exception:  # the server considers the socket gone (OSError, its own errors)
                log.debug("sending on a closed ASGI socket", exc_info=True)
                self.peer_closed()
                return

    async def _send_close(self, code: int) -> None:
        try:
            await self._send({"type": _CLOSE, "code": code})
            return
        except Exception:
            fallback = APPLICATION_CLOSE_CODES.get(code)
            if fallback is None:
                log.debug("closing an ASGI socket failed", exc_info=True)
                return
        # A server that only takes 1000 and 3000-4999 from an application (daphne): the same
        # meaning in the terminal application range, as the guard does.
        try:
            await self._send({"type": _CLOSE, "code": fallback})
        except Exception:
            log.debug("closing an ASGI socket failed", exc_info=True)


async def run_session(
    scope: Scope,
    receive: Receive,
    send: Send,
    services: Services,
    auth: AuthService,
    *,
    audit: AuditLog | None = None,
    session_factory: Callable[[Connection], Session] | None = None,
) -> None:
    """Serve one ``websocket`` scope accepted by ``wsguard.asgi.Guard`` with a protocol session.

    Accepts the socket, feeds ``websocket.receive`` messages to the session, and on every path
    out (client gone, our close, an error, cancellation) calls the session's ``on_close`` (which
    leaves the hub) and ends the writer task. A scope without the guard's principal is refused
    (``websocket.close`` before accept).
    """
    if audit is None:
        from wsguard.audit import AuditLog

        audit = AuditLog(services.settings.log.audit)
    if session_factory is None:
        from wsguard.server.session import ProtocolSession

        session_factory = ProtocolSession
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    try:
        conn = AsgiConnection(scope, send, services, auth, audit)
    except ValueError:
        log.error("an ASGI websocket scope reached wsguard without wsguard.asgi.Guard; refused")
        await send({"type": _CLOSE, "code": int(CloseCode.POLICY_VIOLATION)})
        return
    await send({"type": "websocket.accept"})
    metrics = services.metrics
    metrics.connection_opened()
    writer = asyncio.get_running_loop().create_task(conn.write_loop())
    reader: asyncio.Task[int | None] | None = None
    session: Session | None = None
    code: int | None = None
    try:
        try:
            session = session_factory(conn)
            session.on_open()
        except Exception:
            log.exception("session failed to open; closing the connection with 1011")
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            reader = asyncio.get_running_loop().create_task(_read(conn, session, receive))
        waiting: set[asyncio.Task[Any]] = {writer} if reader is None else {reader, writer}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        code = reader.result() if reader is not None and reader in done else conn.close_code
    finally:
        if conn.is_open:
            conn.peer_closed()
        for task in (reader, writer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if session is not None:
            try:
                session.on_close(code)
            except Exception:
                log.exception("session on_close failed")
        metrics.connection_closed(code)


async def _read(conn: AsgiConnection, session: Session, receive: Receive) -> int | None:
    """Feed inbound messages to the session until the client leaves; the disconnect code."""
    while True:
        await conn.wait_readable()
        try:
            message = await receive()
        except Exception:  # the server's own "client gone" errors
            log.debug("receiving on an ASGI socket failed", exc_info=True)
            conn.peer_closed()
            return None
        kind = message["type"]
        if kind == "websocket.disconnect":
            conn.peer_closed()
            code = message.get("code")
            return int(code) if code is not None else None
        if kind != "websocket.receive" or not conn.is_open:
            continue
        try:
            text = message.get("text")
            if text is not None:
                session.on_text(text)
            else:
                session.on_binary(bytes(message.get("bytes") or b""))
            session.on_read_end()
        except Exception:
            # Fail closed: a bug in a session must not leave the connection half-handled.
            log.exception("session failed; closing the connection with 1011")
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
