"""The exception families of wsguard, each carrying its wire consequence.

``HandshakeRejected`` carries an HTTP status, ``ReplyError`` an error reply code (the
connection stays open), ``Disconnect`` a close code (the connection closes). One place per
face maps each family to the wire; exception text is never echoed to the peer.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "Disconnect",
    "HandshakeRejected",
    "InvalidState",
    "ProtocolError",
    "ReplyError",
    "WsGuardError",
]


class WsGuardError(Exception):
    """Root of every exception wsguard raises on purpose."""


class ConfigError(WsGuardError):
    """A configuration value is missing or invalid.

    Attributes:
        field: the dotted field name (``limits.max_message_bytes``), or ``""`` for the file.
        problem: what is wrong with it, phrased for the operator.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class InvalidState(WsGuardError):
    """Our own API was used out of order (a programming error, not the peer's fault)."""


class ProtocolError(WsGuardError):
    """The peer broke the protocol."""


class HandshakeRejected(WsGuardError):
    """Refuse an opening handshake with an HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


class ReplyError(WsGuardError):
    """Answer one message with an error reply; the connection stays open."""

    def __init__(self, code: int, reason: str, message: str = "") -> None:
        self.code = code
        self.reason = reason
        self.message = message
        super().__init__(f"{code} {reason}")


class Disconnect(WsGuardError):
    """Close the connection with a close code and a generic reason."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}")


class BrokerUnavailable(WsGuardError, ConnectionError):
    """The shared broker (Redis) cannot be reached: the operation did not happen.

    A ``ConnectionError``, so callers that map connection failures to a 503 reply or an HTTP
    503 need no broker-specific code.
    """
