"""The websockets server core as wsguard drives it, and what the TLS layer tells us."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol

from wsguard.codes import CloseCode
from wsguard.core.limits import TokenBucket
from wsguard.core.upgrade import ClientCert
from wsguard.server.frames import core_between_frames

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
        self._pings = TokenBucket(ping_rate, ping_burst) if ping_rate > 0 and clock else None
        self._clock = clock

    def send_response(self, response: Response) -> None:
        super().send_response(response)
        if response.status_code == 101 and core_between_frames(self):
            self.parser = Protocol.parse(self)
            next(self.parser)  # to its first wait for data, where the one it replaces was

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _OP_CLOSE:
            self.current_size = None
        elif frame.opcode is _OP_PING and self._pings is not None:
            assert self._clock is not None  # noqa: S101 (set together with the bucket)
            if not self._pings.take(self._clock()):
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
