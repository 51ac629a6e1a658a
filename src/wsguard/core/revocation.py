"""Revoked users: credentials issued before a user's revocation are refused.

Performs no I/O; reads no clock (``now`` comes in). Closing a revoked user's sockets is not
enough on its own: the client would reconnect with the same JWT, or a ticket minted a second
before. So a revocation also refuses, for ``ttl`` seconds, every credential of that user issued
at or before it (a credential that does not say when it was issued counts as issued before).
``ttl`` must exceed the longest credential lifetime you accept for the refusal to be complete.
"""

from __future__ import annotations

from wsguard.core.decisions import Principal

__all__ = ["Revocations"]


class Revocations:
    """User id -> wall-clock time of the latest revocation, kept for ``ttl`` seconds."""

    __slots__ = ("_revoked", "_ttl")

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._revoked: dict[str, float] = {}

    def revoke(self, user_id: str, now: float) -> None:
        """Record a revocation at ``now``; an older one (replayed from another node) never
        moves a newer one back."""
        self._revoked[user_id] = max(now, self._revoked.get(user_id, now))

    def is_revoked(self, principal: Principal, now: float) -> bool:
        """Whether ``principal``'s credential predates a live revocation of its user."""
        user_id = principal.user_id
        if user_id is None:
            return False
        revoked_at = self._revoked.get(user_id)
        if revoked_at is None:
            return False
        if now - revoked_at > self._ttl:
            del self._revoked[user_id]
            return False
        issued_at = principal.issued_at
        return issued_at is None or issued_at <= revoked_at

    def __len__(self) -> int:
        return len(self._revoked)
