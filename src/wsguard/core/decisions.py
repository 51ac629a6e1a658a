"""What the policy core decides: accept a handshake (with a principal) or reject it.

Performs no I/O; reads no clock. Every stage of a pipeline returns ``None`` to continue or a
decision to stop; the first decision wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ANONYMOUS", "PENDING", "Accept", "Authenticated", "Principal", "Reject"]


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
    # Wall-clock seconds when the credential was issued; a revocation refuses credentials issued
    # before it (None: unknown, treated as issued before any revocation).
    issued_at: float | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None

    @property
    def is_pending(self) -> bool:
        """Accepted without a credential yet: it must authenticate in its first message."""
        return self.method == "pending"


ANONYMOUS = Principal(user_id=None, method="anonymous")
# A socket opened without a handshake credential, when a method that can be presented in the
# first message (ticket, JWT) is configured; it may only send {"op": "auth"} until then.
PENDING = Principal(user_id=None, method="pending")


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A verified credential, with what the I/O layer must still do before accepting.

    Attributes:
        principal: who the credential names.
        consume: the id of a single-use credential (a ticket's ``jti``). The I/O layer consumes
            it atomically in the broker's store before answering 101; when the store has seen
            it already, the handshake is refused with 401 ``replayed_ticket``. ``None`` for
            credentials that may be presented again (JWT, cookie, Basic, mTLS).
        consume_until: when the consumed id may be forgotten (the credential's own expiry:
            after it, the credential is refused as expired anyway).
    """

    principal: Principal
    consume: str | None = None
    consume_until: float | None = None
    # A CPU-bound check (a password hash) the I/O layer runs in a worker thread before
    # accepting; False refuses the handshake with 401 ``verify_reason``.
    verify: Callable[[], bool] | None = None
    verify_reason: str = "bad_password"


@dataclass(frozen=True, slots=True)
class Accept:
    """Open the WebSocket.

    Attributes:
        principal: the authenticated identity (``ANONYMOUS`` when auth is not required).
        client_ip: the client's address (after trusted-proxy resolution), for caps and audit.
        origin: the checked, serialized Origin, echoed in ``Access-Control-Allow-Origin``.
        subprotocol: the negotiated subprotocol, if any.
        headers: extra response headers.
        consume: a single-use credential id to consume before answering 101 (see
            ``Authenticated``).
        consume_until: when that id may be forgotten.
        verify: a CPU-bound check to run in a worker thread before answering 101.
        verify_reason: the audit reason when ``verify`` returns False (401).
    """

    principal: Principal
    client_ip: str
    origin: str | None = None
    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    consume: str | None = None
    consume_until: float | None = None
    verify: Callable[[], bool] | None = None
    verify_reason: str = "bad_password"
    # With ``verify`` or ``consume``: the principal the deferred check would confirm. Until
    # it passes, ``principal`` is ``PENDING`` and the slot counts for no user, so that a
    # stranger guessing a password or replaying a ticket cannot hold (or probe) that user's
    # connection slots.
    claimed: Principal | None = None

    @property
    def deferred(self) -> bool:
        """Whether the I/O layer has work to finish (consume, verify) before answering 101."""
        return self.consume is not None or self.verify is not None


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
