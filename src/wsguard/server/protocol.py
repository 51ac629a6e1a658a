"""The websockets server core as wsguard drives it, and what the TLS layer tells us."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol

from wsguard.codes import CloseCode
from wsguard.core.limits import TokenBucket
from wsguard.core.upgrade import ClientCert
from wsguard.server.frames import core_between_frames
from wsguard.server.responses import http_date

__all__ = ["GENERIC_REASONS", "EngineProtocol", "client_cert"]

_OP_CLOSE = Opcode.CLOSE
_OP_PING = Opcode.PING
log = logging.getLogger("wsguard.session")

# What the peer reads in a close frame the core sends. The core's own reasons name the exact
# parser rule ("reserved bits must be 0", "over size limit (70000 > 65536 bytes)"): they
# fingerprint the library (STEWS) and disclose limits, so a fixed phrase per code replaces them
# (DESIGN.md §2.4). Reasons wsguard itself chooses are already generic and pass unchanged.
GENERIC_REASONS: Final = {
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.INVALID_DATA: "invalid UTF-8",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
}
_OWN_REASONS: Final = frozenset({*GENERIC_REASONS.values(), "too many fragments"})


class EngineProtocol(ServerProtocol):
    """websockets' server core with three deviations, and one thing it does not keep.

    RFC 6455 §5.4 / §7.1.5: control frames may arrive between the fragments of a message; a
    close frame there is an ordinary close, and the unfinished message is discarded. The core
    instead fails such a connection with 1002 ("incomplete fragmented message"); Autobahn case
    7.1.5 expects the peer's close code echoed.

    Close reasons are the fixed phrases of :data:`GENERIC_REASONS`.

    Control frames also pass a token bucket (``ping_rate`` per second, ``ping_burst`` at
    once): the core answers every ping with a pong before wsguard sees it, so a ping flood would
    otherwise cost the server a write per frame with no message limit ever applying. Past the
    bucket the connection fails with 1008, before the pong is queued.

    Once the 101 is sent, the core's parser no longer holds the upgrade request. Its
    ``ServerProtocol.parse`` generator parses the request into a local, then delegates to the
    frame parser for the rest of the connection, so the request and its headers (about 3 KB)
    would live as long as the socket. When the frame parser waits between frames with nothing
    buffered (``core_between_frames``; not so only when a partial frame came right behind the
    request), a fresh frame parser, started into that same wait, replaces the chain. Closing
    the old chain there runs no handler of websockets' (``GeneratorExit`` passes its
    ``except Exception``). Should a websockets release lay its parser out differently,
    ``core_between_frames`` answers False and nothing is swapped.

    Its 101 is the core's own (``accept``), but for the ``Date`` header: formatted once per
    second (``responses.http_date``) rather than by ``email.utils.formatdate`` per handshake.
    """

    def __init__(
        self,
        *args: Any,
        ping_rate: float = 0.0,
        ping_burst: float = 0.0,
        clock: Callable[[], float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # The ping bucket is made at the first ping (browsers never send one); until then this
        # holds its rate and burst. Two attributes in all: websockets' core has 26, and past 29
        # CPython (3.11) stops sharing the keys of instance dicts: 1.6 KB each instead of 0.3.
        self._pings: TokenBucket | tuple[float, float] | None = (
            (ping_rate, ping_burst) if ping_rate > 0 and clock is not None else None
        )
        self._clock = clock

    def accept(self, request: Request) -> Response:
        """websockets' ``accept``: the same checks and the same 101, its ``Date`` formatted
        once per second (``http_date``) instead of once per handshake. A request the checks
        refuse goes through websockets' own ``accept``, which checks it again and builds its
        refusal (the listener sends only the status of that)."""
        try:
            accept_header, extensions_header, protocol_header = self.process_request(request)
        except Exception:
            return super().accept(request)
        self.accept_called = True
        headers = Headers()
        headers["Date"] = http_date(time.time())
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Accept"] = accept_header
        if extensions_header is not None:
            headers["Sec-WebSocket-Extensions"] = extensions_header
        if protocol_header is not None:
            headers["Sec-WebSocket-Protocol"] = protocol_header
        return Response(101, "Switching Protocols", headers)

    def send_response(self, response: Response) -> None:
        super().send_response(response)
        if response.status_code == 101 and core_between_frames(self):
            self.parser = Protocol.parse(self)
            next(self.parser)  # to its first wait for data, where the one it replaces was

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _OP_CLOSE:
            self.current_size = None
        elif frame.opcode is _OP_PING and self._pings is not None:
            assert self._clock is not None  # noqa: S101 (a limit is kept only with a clock)
            pings = self._pings
            if isinstance(pings, tuple):
                pings = self._pings = TokenBucket(*pings)
            if not pings.take(self._clock()):
                log.info("ping flood: failing the connection with 1008")
                self.fail(CloseCode.POLICY_VIOLATION, "policy violation")
                return
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        if reason not in _OWN_REASONS:
            log.debug("closing with %d; the core's reason was %r", code, reason)
            reason = GENERIC_REASONS.get(code, "")  # type: ignore[call-overload]
        super().fail(code, reason)


def client_cert(transport: asyncio.Transport) -> ClientCert | None:
    """The identity of a client certificate the TLS layer verified, if any."""
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    cn = None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
    san = tuple(
        value for kind, value in cert.get("subjectAltName", ()) if kind in {"DNS", "email", "URI"}
    )
    return ClientCert(subject_cn=cn, san=san)
