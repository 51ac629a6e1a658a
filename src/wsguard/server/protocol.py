"""The websockets server core as wsguard drives it, and what the TLS layer tells us."""

from __future__ import annotations

import asyncio

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from wsguard.core.upgrade import ClientCert

__all__ = ["EngineProtocol", "client_cert"]

_OP_CLOSE = Opcode.CLOSE


class EngineProtocol(ServerProtocol):
    """websockets' server core with one deviation, for RFC 6455 §5.4 / §7.1.5.

    Control frames may arrive between the fragments of a message; a close frame there is an
    ordinary close, and the unfinished message is discarded. The core instead fails such a
    connection with 1002 ("incomplete fragmented message"); Autobahn case 7.1.5 expects the
    peer's close code echoed.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _OP_CLOSE:
            self.current_size = None
        super().recv_frame(frame)


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
