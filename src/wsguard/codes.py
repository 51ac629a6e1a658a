"""Close codes, reply codes and audit reason codes: the numbers peers and operators see.

Close codes follow RFC 6455 §7.4.1 plus the application range of DESIGN.md §6: 4400-4499 are
terminal (the client must not reconnect as it is), 4500-4599 allow a reconnect.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "ReplyCode"]


class CloseCode(IntEnum):
    """Codes sent in close frames."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_MANY_VIOLATIONS = 4408
    SHUTTING_DOWN = 4503
    SLOW_CONSUMER = 4509
    INSUFFICIENT_STATE = 4510

    @property
    def reconnect_allowed(self) -> bool:
        """Whether a client may reconnect unchanged after this close."""
        return not 4400 <= self.value <= 4499


class ReplyCode(IntEnum):
    """Error codes of ``{"ok": false}`` replies; they mirror HTTP statuses."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    TOO_LARGE = 413
    UNPROCESSABLE = 422
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500
    UNAVAILABLE = 503
