"""The engine: a thin ``asyncio.Protocol`` driving the websockets sans-I/O core.

websockets' ``ServerProtocol`` parses HTTP and frames, enforces masking, opcodes, control-frame
rules and the message size across fragments (RFC 6455 §5). This layer adds what the core leaves
to I/O: the policy pipeline at the handshake, a header-size cap, UTF-8 validation of text
messages (§8.1), a fragment-count cap (§10.4), the handshake / keepalive / idle / close
timeouts, read backpressure, and the send-queue bound. There is no task and no queue per
connection: data_received runs the session inline, which is what keeps a connection at a few
KiB and an echo at a few microseconds.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from typing import TYPE_CHECKING, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from wsguard.codes import CloseCode
from wsguard.core.decisions import ANONYMOUS, Accept, Principal, Reject
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.server import frames, responses
from wsguard.server.protocol import EngineProtocol, client_cert
from wsguard.server.state import ServerState
from wsguard.server.wheel import Bucket, wheel_for

if TYPE_CHECKING:
    from wsguard.auth import AuthService
    from wsguard.server.engine import Session
    from wsguard.server.services import Services

__all__ = ["WsConnection"]

_OP_TEXT, _OP_BINARY, _OP_CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_OP_PONG = Opcode.PONG
# Reading pauses when this much is waiting to be written (the peer reads slower than it sends).
_WRITE_HIGH_WATER = 64 * 1024
_PAUSED_WRITING, _PAUSED_SESSION, _PAUSED_HANDSHAKE = 1, 2, 4
# A deadline this far ahead or more waits in the loop's DeadlineWheel (server/wheel.py): the
# handshake timeout, the keepalive and the close timeout, which are mostly cancelled first.
_WHEELED = 1.0
# websockets' own logger would log every open/close at INFO; the audit log does that for us.
_ENGINE_LOGGER = logging.getLogger("wsguard.engine")
log = logging.getLogger("wsguard.server")


class WsConnection(asyncio.Protocol):
    """One TCP (or TLS) connection, from the first byte of the request to the last close."""

    __slots__ = (
        "_accept",
        "_answered",
        "_auth_deadline",
        "_awaiting_pong",
        "_backlog",
        "_close_code",
        "_decoder",
        "_fast",
        "_flush_soon",
        "_fragments",
        "_header_bytes",
        "_last_message",
        "_loop",
        "_next_ping",
        "_outbox",
        "_outbox_bytes",
        "_owed",
        "_parts",
        "_peer",
        "_pending",
        "_plain",
        "_processing",
        "_proto",
        "_rbuf",
        "_read_paused",
        "_session",
        "_state",
        "_text_parts",
        "_timer",
        "_timer_bucket",
        "_transport",
    )

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None
        self._proto = EngineProtocol(
            max_size=state.limits.max_message_bytes,
            extensions=state.extensions,
            logger=_ENGINE_LOGGER,
            # Pings share the message budget's rate and burst (limits.messages_per_second).
            ping_rate=state.limits.messages_per_second,
            ping_burst=state.limits.burst,
            clock=state.services.monotonic,  # shared: no bound method per connection
        )
        self._accept: Accept | None = None
        self._session: Session | None = None
        self._peer = ""
        self._header_bytes = 0
        self._parts: list[bytes] | None = None
        self._text_parts: list[str] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._fragments = 0
        # The connection's one deadline: a loop timer when near, else in the wheel's bucket.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket: Bucket | None = None
        self._awaiting_pong: float | None = None
        self._last_message = 0.0
        self._next_ping = 0.0
        self._close_code: int | None = None
        self._answered = False
        self._processing = False
        self._pending: tuple[Response, UpgradeRequest] | None = None
        self._backlog: list[Frame] | None = None
        self._auth_deadline: float | None = None
        # Pushes from the hub, written once per event loop pass (see server/hub.py).
        self._outbox: list[bytes] | None = None
        self._outbox_bytes = 0
        self._flush_soon = False
        # Why reading is paused: a bit per reason, so one reason's end doesn't undo another.
        self._read_paused = 0
        # The fast path (server/frames.py): _fast once this layer reads the frames itself,
        # _rbuf the start of a frame it waits to complete, _owed what the core still needs of
        # a frame handed to it in part. _plain: no extension, so frames are built here too.
        self._fast = False
        self._plain = False
        self._rbuf = b""
        self._owed = 0
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence the cast).
        self._transport = transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self._peer = str(peername[0]) if peername else ""
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        if not self._state.accepting:
            transport.abort()
            return
        self._state.connections.add(self)
        self._schedule(self._state.limits.handshake_timeout)

    def data_received(self, data: bytes) -> None:
        proto = self._proto
        if self._fast:
            if proto.state is State.OPEN:
                self._read_frames(data)
                return
            # Closing: the core reads (and discards) from here on, from where this layer was.
            self._fast = False
            if self._rbuf:
                data, self._rbuf = self._rbuf + data, b""
        if proto.state is State.CONNECTING:
            # Cap the whole request head, not only each line (websockets caps lines at 8 KiB
            # and fields at 128): a slow stream of headers is a memory and CPU DoS.
            self._header_bytes += len(data)
            if self._header_bytes > self._state.limits.max_header_bytes:
                self._reject_raw(431, "header_too_large")
                return
        elif proto.state is State.CLOSED:
            return
        proto.receive_data(data)
        self._process()
        if (
            self._plain
            and proto.state is State.OPEN
            and self._session is not None
            and frames.core_between_frames(proto)
        ):
            self._fast = True

    def eof_received(self) -> bool | None:
        if self._rbuf and self._proto.state is not State.CLOSED:
            # A frame cut short by the end of the stream: the core fails it as before (1006).
            rest, self._rbuf = self._rbuf, b""
            self._proto.receive_data(rest)
        self._proto.receive_eof()
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        state = self._state
        state.connections.discard(self)
        if state.drained is not None and not state.connections:
            state.drained.set()
        accept = self._accept
        if accept is None:
            return
        self._accept = None
        state.pipeline.release(accept)
        if self._session is None:
            return  # reserved for a handshake that never completed
        state.unregister(self, accept.principal.user_id)
        code = self._close_code
        if code is None and self._proto.close_rcvd is not None:
            code = self._proto.close_rcvd.code
        if self._session is not None:
            self._session.on_close(code)
        state.services.metrics.connection_closed(code)
        self._state.audit.closed(
            self._peer,
            accept.client_ip,
            accept.principal.user_id,
            code,
            "closed" if exc is None else "connection_lost",
        )

    def pause_writing(self) -> None:
        # Read backpressure: stop reading from a peer that does not read what we send it.
        self._pause(_PAUSED_WRITING)

    def resume_writing(self) -> None:
        self._resume(_PAUSED_WRITING)

    def _pause(self, reason: int) -> None:
        if not self._read_paused and self._transport is not None:
            self._transport.pause_reading()
        self._read_paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._read_paused
        self._read_paused = was & ~reason
        transport = self._transport
        if was and not self._read_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    # ------------------------------------------------------------------ Connection API

    @property
    def principal(self) -> Principal:
        return self._accept.principal if self._accept is not None else ANONYMOUS

    @property
    def origin(self) -> str | None:
        """The checked Origin of the handshake (tickets are bound to it)."""
        return self._accept.origin if self._accept is not None else None

    @property
    def auth(self) -> AuthService:
        return self._state.auth

    @property
    def services(self) -> Services:
        return self._state.services

    @property
    def client_ip(self) -> str:
        """The client's address (from a trusted proxy's header when configured)."""
        return self._accept.client_ip if self._accept is not None else self._peer

    def pause_reading(self) -> None:
        """Stop reading until ``resume_reading``: the session has enough queued."""
        self._pause(_PAUSED_SESSION)

    def resume_reading(self) -> None:
        self._resume(_PAUSED_SESSION)

    def push_frame(self, frame: bytes, payload: bytes) -> bool:
        """Queue a frame built once for every subscriber (server/hub.py); True when the outbox
        was empty, so the hub flushes it at the end of this event loop pass."""
        if self._proto.state is not State.OPEN:
            return False
        if self._state.extensions and self._proto.extensions:
            # Compressed frames differ per connection: frame this one ourselves.
            self.send_text(payload)
            return False
        if self._transport is None:
            return False
        # No check of the transport's buffer here: every write goes through _write, which closes
        # a consumer whose buffer passed the bound right after that write, so it is not OPEN.
        outbox = self._outbox
        self._outbox_bytes += len(frame)
        if outbox is None:
            self._outbox = [frame]
            return True
        outbox.append(frame)
        if self._outbox_bytes > self._state.limits.max_send_queue_bytes:
            # Many publications in one event loop pass: hand them to the kernel now rather
            # than hold more than the bound in memory (_write then applies the bound).
            self._flush_outbox()
        return False

    def flush_pushes(self) -> None:
        """Write the outbox now, unless this connection is handling a read: the read's end
        writes it, with every other reply of the read, in one ``transport.write``."""
        if not self._processing:
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        self._outbox = None
        self._outbox_bytes = 0
        self._write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def set_principal(self, principal: Principal) -> Reject | None:
        """Bind a new principal (first-message authentication, refresh); ``None`` on success,
        else the ``Reject`` (per-user cap) and the connection keeps its old principal."""
        accept = self._accept
        if accept is None:
            return responses.generic_reject(409, "not_open")
        result = self._state.pipeline.rebind(accept, principal)
        if isinstance(result, Reject):
            return result
        self._state.unregister(self, accept.principal.user_id)
        self._accept = result
        self._state.register(self, principal.user_id)
        self._auth_deadline = None
        return None

    def audit(self, event: str, **fields: object) -> None:
        """Write an audit event about this connection (peer, client IP and user added)."""
        accept = self._accept
        self._state.audit.emit(
            event,
            peer=self._peer,
            client_ip=accept.client_ip if accept else None,
            user=accept.principal.user_id if accept else None,
            **fields,
        )

    def send_text(self, data: bytes) -> None:
        self._send(frames.TEXT, data)

    def send_binary(self, data: bytes) -> None:
        self._send(frames.BINARY, data)

    def _send(self, first: int, data: bytes) -> None:
        proto = self._proto
        if proto.state is not State.OPEN:
            return
        if self._plain:
            if proto.writes:
                self._queue_written()  # what the core built first (the 101, a pong)
            self._queue(frames.server_frame(first, data))
        else:
            # Compressed: the core frames it.
            (proto.send_text if first == frames.TEXT else proto.send_binary)(data)
            self._queue_written()

    def _queue_written(self) -> None:
        """Queue the frames the core just built (compressed ones)."""
        chunks = self._proto.data_to_send()  # never b"" (end of stream) while OPEN
        if chunks:
            self._queue(b"".join(chunks))

    def _queue(self, frame: bytes) -> None:
        """Put a frame in the outbox, behind the pushes already there (one order per
        connection), to be written at the end of this read or of this event loop pass: one
        ``transport.write`` for every reply and push of a pass, not one per message (replies
        of rpc handlers and other tasks arrive one by one)."""
        outbox = self._outbox
        if outbox is None:
            self._outbox = [frame]
        else:
            outbox.append(frame)
        self._outbox_bytes += len(frame)
        if self._outbox_bytes > self._state.limits.max_send_queue_bytes:
            self._flush_outbox()  # past the bound: to the kernel now, where _write applies it
        elif not self._processing and not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._flush_soon = False
        self._flush_outbox()

    def close(self, code: int, reason: str) -> None:
        if self._proto.state is State.OPEN:
            self._close_code = code
            self._proto.send_close(code, reason)
            self._flush()
            # The peer has close_timeout to answer with its close frame (RFC 6455 §7.1.1);
            # after that the TCP connection is dropped.
            self._schedule(self._state.limits.close_timeout)

    def abort(self) -> None:
        """Drop the TCP connection at once (shutdown of peers that never answered)."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def is_open(self) -> bool:
        return self._proto.state is State.OPEN

    # ------------------------------------------------------------------ internals

    def _process(self) -> None:
        # Replies produced while handling one read are written together, once, at the end:
        # one transport.write per read instead of one per message.
        self._processing = True
        try:
            self._handle_events()
            if self._session is not None:
                self._session.on_read_end()
        finally:
            self._processing = False
        self._flush()

    def _read_frames(self, data: bytes) -> None:
        """Read frames past the core (server/frames.py); called only while it is OPEN, in
        plain mode, with the core between frames or owed the rest of one."""
        proto = self._proto
        owed = self._owed
        if owed:
            # The rest of a frame the core is reading goes to the core.
            if len(data) <= owed:
                self._owed = owed - len(data)
                proto.receive_data(data)
                self._process()
                return
            self._owed = 0
            proto.receive_data(data[:owed])
            data = data[owed:]
        buf = self._rbuf + data if self._rbuf else data
        end = len(buf)
        pos = 0
        session = self._session
        assert session is not None  # noqa: S101 (the fast path starts after on_open)
        fast_max = min(self._state.limits.max_message_bytes, frames.FAST_MAX)
        now = self._loop.time()
        self._processing = True
        try:
            if owed:
                self._handle_events()  # the frame the lines above completed
            while pos < end:
                if proto.state is not State.OPEN:
                    # The session or the peer started closing: the core takes the rest.
                    self._fast = False
                    proto.receive_data(buf[pos:])
                    self._handle_events()
                    pos = end
                    break
                sizes = frames.read_header(buf, pos, end)
                if sizes is None:
                    break  # a header in two reads
                start, stop = sizes
                first = buf[pos]
                if (
                    (first == frames.TEXT or first == frames.BINARY)
                    and buf[pos + 1] & 0x80
                    and stop - start <= fast_max
                    and proto.current_size is None
                ):
                    if stop > end:
                        break  # wait for the rest of it
                    payload = frames.apply_mask(buf[start:stop], buf[start - 4 : start])
                    pos = stop
                    self._last_message = now
                    self._on_message(session, first, payload)
                    continue
                # Anything else is the core's, whole or (owed) in part.
                if stop <= end:
                    proto.receive_data(buf[pos:stop])
                    pos = stop
                else:
                    proto.receive_data(buf[pos:])
                    self._owed = stop - end
                    pos = end
                self._handle_events()
            session.on_read_end()
        finally:
            self._processing = False
        self._rbuf = buf[pos:] if pos < end else b""
        self._flush()

    def _on_message(self, session: Session, first: int, payload: bytes) -> None:
        """One whole message the fast path read (failing closed like ``_on_frame``)."""
        try:
            self._deliver(session, first == frames.TEXT, payload)
        except Exception:
            log.exception("session failed; closing the connection with 1011")
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")

    def _deliver(self, session: Session, is_text: bool, payload: bytes) -> None:
        """Hand one unfragmented message to the session; text must be UTF-8 (§8.1)."""
        if is_text:
            try:
                text = str(payload, "utf-8")
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return
            session.on_text(text)
        else:
            session.on_binary(payload)

    def _handle_events(self) -> None:
        proto = self._proto
        for event in proto.events_received():
            if isinstance(event, Frame):
                if self._pending is not None:
                    # Sent before our 101 (RFC 6455 §4.1 says wait); kept for after it.
                    if self._backlog is None:
                        self._backlog = []
                    self._backlog.append(event)
                else:
                    self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        if (
            proto.state is State.CONNECTING
            and proto.handshake_exc is not None
            and not self._answered
        ):
            # A request websockets could not parse: it would only send EOF, or a 414/431 whose
            # body names its parser and limits ("expected no more than 8192 bytes"). Answer
            # with the status alone and the generic phrase, like every other refusal.
            writes = proto.data_to_send()
            status = next((int(c[9:12]) for c in writes if c[:5] == b"HTTP/"), None)
            if status is None:
                self._reject_raw(400, "malformed_request")
            else:
                self._reject_raw(status, "request_too_large")

    def _on_request(self, request: Request) -> None:
        # Every path below answers the request itself.
        self._answered = True
        if self._proto.eof_sent:
            # Bytes that came behind the request head in the same read held a frame the core
            # refused, and it failed the connection at once, ending the stream: no response
            # can follow that (websockets asserts as much). Answer as for a malformed request.
            self._reject_raw(400, "malformed_request")
            return
        state = self._state
        transport = self._transport
        assert transport is not None  # noqa: S101
        upgrade = UpgradeRequest(
            method=request.method,
            target=request.path,
            http_version=request.protocol,
            headers=Headers(request.headers.raw_items()),
            peer=self._peer,
            is_tls=transport.get_extra_info("sslcontext") is not None,
            client_cert=client_cert(transport),
        )
        if upgrade.path != state.ws_path:
            response = responses.route(upgrade, state.pages)
            if response is not None:
                self._proto.send_response(response)
                return
        decision = state.pipeline.decide(upgrade, state.clock())
        if isinstance(decision, Reject):
            self._proto.send_response(responses.reject_response(decision))
            self._audit_reject(upgrade, decision)
            return
        # Reserved from here on: connection_lost releases it whatever happens next.
        self._accept = decision
        response = self._proto.accept(request)
        if response.status_code != 101:
            # websockets also parses headers our request stage leaves to it (the
            # Sec-WebSocket-Protocol and -Extensions lists). Refused here, before a ticket is
            # consumed or a password checked; its body would name the parser, so only the
            # status goes out.
            self._refuse(
                upgrade, decision, responses.generic_reject(response.status_code, "engine_refused")
            )
            return
        if decision.deferred:
            # A ticket to consume or a password hash to check: finish in the background,
            # reading nothing more from this peer until then.
            self._pause(_PAUSED_HANDSHAKE)
            self._pending = (response, upgrade)
            task = self._loop.create_task(self._finish_handshake(decision))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
            return
        reject = state.auth.check_revoked(decision.principal)
        if reject is not None:
            self._refuse(upgrade, decision, reject)
            return
        self._open(response, upgrade, decision)

    async def _finish_handshake(self, decision: Accept) -> None:
        state = self._state
        result: Accept | Principal | Reject
        try:
            result = await state.auth.finish(decision)
        except Exception:
            log.exception("finishing the handshake failed")
            result = responses.generic_reject(500, "internal_error")
        transport = self._transport
        pending, self._pending = self._pending, None
        if transport is None or transport.is_closing() or pending is None:
            return  # the peer left (or timed out) meanwhile; connection_lost released it
        response, upgrade = pending
        if isinstance(result, Principal) and result is not decision.principal:
            # The password check confirmed a user: bind the slot to them now (per-user cap).
            result = state.pipeline.rebind(decision, result)
            if isinstance(result, Accept):
                self._accept = decision = result
        if isinstance(result, Reject):
            self._refuse(upgrade, decision, result)
        else:
            self._open(response, upgrade, decision)
            backlog, self._backlog = self._backlog or (), None
            for frame in backlog:
                self._on_frame(frame)
            if backlog and self._session is not None:
                self._session.on_read_end()
        self._flush()
        self._resume(_PAUSED_HANDSHAKE)

    def _refuse(self, upgrade: UpgradeRequest, decision: Accept, reject: Reject) -> None:
        """Refuse a handshake the pipeline had accepted (a later check failed)."""
        self._accept = None
        self._state.pipeline.release(decision)
        self._proto.send_response(responses.reject_response(reject))
        self._audit_reject(upgrade, reject)

    def _open(self, response: Response, upgrade: UpgradeRequest, decision: Accept) -> None:
        """Send the 101 that ``ServerProtocol.accept`` built, with the pipeline's headers."""
        state = self._state
        for name, value in decision.headers:
            response.headers[name] = value
        self._proto.send_response(response)
        state.audit.handshake(upgrade, self._peer, decision)
        state.services.metrics.connection_opened()
        state.register(self, decision.principal.user_id)
        self._plain = not self._proto.extensions
        now = self._loop.time()
        self._last_message = now
        self._next_ping = now + state.limits.ping_interval
        limits = state.limits
        if decision.principal.is_pending:
            self._auth_deadline = now + state.settings.auth.first_message_timeout
        try:
            self._session = state.session_factory(self)
            self._session.on_open()
        except Exception:
            log.exception("session failed to open; closing the connection with 1011")
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
            return
        # The first timer fires at the nearest deadline; _on_timer re-arms itself.
        first = [d for d in (limits.ping_interval, limits.idle_timeout) if d > 0]
        if self._auth_deadline is not None:
            first.append(state.settings.auth.first_message_timeout)
        self._schedule(min(first, default=3600.0))

    def _on_frame(self, frame: Frame) -> None:
        try:
            self._dispatch(frame)
        except Exception:
            # Fail closed (DESIGN.md §2.4): a bug in a session must not leave the connection
            # half-handled; the peer gets a generic 1011, the details go to the log.
            log.exception("session failed; closing the connection with 1011")
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")

    def _dispatch(self, frame: Frame) -> None:
        opcode = frame.opcode
        session = self._session
        if session is None:
            return
        if opcode is _OP_TEXT or opcode is _OP_BINARY:
            self._last_message = self._loop.time()
            if frame.fin:
                self._deliver(session, opcode is _OP_TEXT, bytes(frame.data))
                return
            self._fragments = 1
            if opcode is _OP_TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
                self._text_parts = []
                self._feed_text(frame.data, final=False)
            else:
                self._parts = [bytes(frame.data)]
        elif opcode is _OP_CONT:
            self._fragments += 1
            # RFC 6455 §10.4: bound "a long stream of small frames" as well as the total size
            # (the total is enforced by the websockets core with max_message_bytes).
            if self._fragments > self._state.limits.max_fragments:
                self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
            if self._text_parts is not None:
                if not self._feed_text(frame.data, final=frame.fin):
                    return
                if frame.fin:
                    text = "".join(self._text_parts)
                    self._text_parts = self._decoder = None
                    session.on_text(text)
            elif self._parts is not None:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    data = b"".join(self._parts)
                    self._parts = None
                    session.on_binary(data)
        elif opcode is _OP_PONG:
            self._awaiting_pong = None

    def _feed_text(self, data: bytes | bytearray | memoryview, *, final: bool) -> bool:
        # Validate UTF-8 fragment by fragment so invalid text fails fast (RFC 6455 §8.1).
        assert self._decoder is not None  # noqa: S101
        assert self._text_parts is not None  # noqa: S101
        try:
            self._text_parts.append(self._decoder.decode(data, final))
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
            return False
        return True

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7)."""
        self._close_code = code
        self._proto.fail(code, reason)
        self._flush()
        self._schedule(self._state.limits.close_timeout)

    def _flush(self) -> None:
        if self._outbox is not None:
            self._flush_outbox()  # queued pushes go first: one order per connection
        chunks = self._proto.data_to_send()
        if chunks:
            # One write for what the core built (pongs, close frames); b"" marks the end of
            # the stream and comes last.
            self._write(b"".join(chunks))
            if not chunks[-1]:
                self._write(b"")

    def _write(self, chunk: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if chunk:
            transport.write(chunk)
            if transport.get_write_buffer_size() > self._state.limits.max_send_queue_bytes:
                # A consumer this far behind would make us buffer without bound: nothing more is
                # queued for it, the close frame goes behind what is queued, and close_timeout
                # later the connection is dropped if it still has not read it.
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
        else:
            # The core signals end of stream: a server closes the TCP connection (§7.1.1).
            # close() waits until the queued bytes are written; a peer that stopped reading
            # would hold the connection (and its per-IP and per-user slots) forever, so it
            # gets close_timeout, then _on_timer aborts the transport.
            transport.close()
            if transport.get_write_buffer_size():
                self._schedule(self._state.limits.close_timeout)

    # ------------------------------------------------------------------ timers

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        if delay <= 0:
            return
        loop = self._loop
        if delay < _WHEELED:
            self._timer = loop.call_later(delay, self._on_timer)
            return
        self._timer_bucket = wheel_for(loop).add(self, loop.time() + delay)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        bucket = self._timer_bucket
        if bucket is not None:
            self._timer_bucket = None
            bucket.pop(self, None)

    def wheel_due(self, when: float, payload: object) -> None:
        """The wheel's second for this connection's deadline has come: a loop timer at
        ``when`` (``payload`` is unused)."""
        self._timer_bucket = None
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """One timer per connection, armed for the next deadline only (no polling)."""
        self._timer = None
        proto = self._proto
        transport = self._transport
        if transport is None:
            return
        if transport.is_closing():
            # Closed, and still not lost a deadline later: the peer is not reading what is
            # queued (a close frame behind a full buffer, a refusal it never reads).
            transport.abort()
            return
        if proto.state is not State.OPEN:
            # Handshake not finished in time, or the peer never answered our close frame.
            if proto.state is State.CONNECTING:
                self._audit_reject(None, responses.generic_reject(408, "handshake_timeout"))
            transport.abort()
            return
        limits = self._state.limits
        now = self._loop.time()
        deadlines: list[float] = []
        if self._auth_deadline is not None:
            # A socket opened without a credential must authenticate in its first message.
            if now >= self._auth_deadline:
                self.audit("auth_failed", reason="first_message_timeout")
                self.close(CloseCode.UNAUTHORIZED, "authentication required")
                return
            deadlines.append(self._auth_deadline)
        if limits.ping_interval > 0:
            # Keepalive: a ping every ping_interval; a peer that does not answer within
            # ping_timeout is dead or half-open and would hold its slot forever.
            if self._awaiting_pong is not None:
                if now - self._awaiting_pong >= limits.ping_timeout:
                    self.close(CloseCode.INTERNAL_ERROR, "keepalive timeout")
                    return
            elif now >= self._next_ping:
                self._awaiting_pong = now
                self._next_ping = now + limits.ping_interval
                proto.send_ping(b"")
                self._flush()
            if self._awaiting_pong is not None:
                deadlines.append(self._awaiting_pong + limits.ping_timeout)
            else:
                deadlines.append(self._next_ping)
        session = self._session
        if session is not None and not session.keeps_alive():
            # Idle timeout: a connection that sends nothing and needs nothing holds a slot.
            idle_deadline = self._last_message + limits.idle_timeout
            if now >= idle_deadline:
                self.close(CloseCode.GOING_AWAY, "idle timeout")
                return
            deadlines.append(idle_deadline)
        if deadlines:
            self._schedule(max(min(deadlines) - now, 0.01))

    # ------------------------------------------------------------------ rejections

    def _reject_raw(self, status: int, reason: str) -> None:
        """Answer a request we could not hand to the pipeline, then close."""
        decision = responses.generic_reject(status, reason)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(responses.reject_response(decision).serialize())
            transport.close()
        self._audit_reject(None, decision)

    def _audit_reject(self, request: UpgradeRequest | None, decision: Reject) -> None:
        self._state.services.metrics.rejected("handshake", decision.audit_reason)
        self._state.audit.handshake(request, self._peer, decision)
