"""What the policy core decides: accept a handshake (with a principal) or reject it.

Performs no I/O; reads no clock. Every stage of a pipeline returns ``None`` to continue or a
decision to stop; the first decision wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ANONYMOUS", "Accept", "Principal", "Reject"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is on the other end of a connection, bound once at the handshake.

    Never taken from a message body: identities inside payloads are ignored.
    """

    user_id: str | None
    method: str
    roles: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    expires_at: float | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Principal(user_id=None, method="anonymous")


@dataclass(frozen=True, slots=True)
class Accept:
    """Open the WebSocket.

    Attributes:
        principal: the authenticated identity (``ANONYMOUS`` when auth is not required).
        client_ip: the client's address (after trusted-proxy resolution), for caps and audit.
        origin: the checked, serialized Origin, echoed in ``Access-Control-Allow-Origin``.
        subprotocol: the negotiated subprotocol, if any.
        headers: extra response headers.
    """

    principal: Principal
    client_ip: str
    origin: str | None = None
    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the handshake.

    Attributes:
        status: the HTTP status to answer with.
        public_reason: a short fixed phrase safe to show the peer.
        audit_reason: a machine-readable reason code for the audit log (never secrets).
        headers: extra response headers (``Sec-WebSocket-Version`` on 426, ...).
    """

    status: int
    public_reason: str
    audit_reason: str
    headers: tuple[tuple[str, str], ...] = field(default=())
