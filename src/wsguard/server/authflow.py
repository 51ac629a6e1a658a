"""One connection's credential over time: first-message authentication, refresh, expiry.

WebSocket connections outlive the credentials that opened them (OWASP: "close the socket when
the session expires"). Before a principal's credential expires the server pushes
``{"push": "expiring", "in": seconds}``; the client answers ``{"op": "refresh", "token" |
"ticket": ...}`` on the same socket; without a refresh the socket closes with 4401
``auth.expiry_grace`` seconds after the expiry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from wsguard.codes import CloseCode
from wsguard.core.decisions import Principal, Reject
from wsguard.server.engine import Connection
from wsguard.server.wheel import Bucket, wheel_for
from wsguard.settings import AuthConfig

__all__ = ["AuthFlow"]

# What the peer is told about a failed credential: the status and nothing more.
_PUBLIC = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    429: "too_many_requests",
    503: "unavailable",
}


# An expiry notice due further ahead than this waits in the loop's DeadlineWheel instead of
# a loop timer of its own: most connections close before their credential expires.
_HORIZON: Final = 10.0


def _failure(msg_id: object, status: int) -> bytes:
    reason = _PUBLIC.get(status, "unauthorized")
    error = {"code": status, "reason": reason, "message": "authentication failed"}
    return orjson.dumps({"id": msg_id, "ok": False, "error": error})


class AuthFlow:
    """Drives ``auth`` / ``refresh`` messages and the expiry timers of one connection.

    Args:
        conn: the connection.
        config: ``[auth]``.
        on_authenticated: called once a pending connection has authenticated (the session
            then sends its welcome).
        clock: wall-clock time (credential expiries are wall-clock).
    """

    __slots__ = ("_bucket", "_clock", "_config", "_on_authenticated", "_timer", "conn")

    def __init__(
        self,
        conn: Connection,
        config: AuthConfig,
        on_authenticated: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self._config = config
        self._on_authenticated = on_authenticated
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        # The DeadlineWheel bucket holding this flow's notice until it gets a timer of its own.
        self._bucket: Bucket | None = None

    def start(self) -> None:
        """Arm the expiry timers for the current principal."""
        self._arm(self.conn.principal)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._bucket is not None:
            self._bucket.pop(self, None)
            self._bucket = None

    async def run(self, msg_id: object, message: Mapping[str, Any], *, refresh: bool) -> bool:
        """Check the credential of an ``auth`` (``refresh=False``) or ``refresh`` message and
        reply; True when the new principal is bound. The session awaits this in message
        order, so the next message is authorized with the principal this one left."""
        conn = self.conn
        result = await conn.auth.authenticate_message(message, conn.origin)
        if isinstance(result, Principal) and refresh and result.user_id != conn.principal.user_id:
            # A refresh may renew or change roles, never switch users.
            result = Reject(403, "Forbidden", "refresh_user_mismatch")
        if isinstance(result, Principal):
            bound = conn.set_principal(result)
            if bound is not None:
                result = bound
        if isinstance(result, Reject):
            self._refuse(msg_id, result, refresh)
            return False
        expires_in = None
        if result.expires_at is not None:
            expires_in = max(0.0, round(result.expires_at - self._clock(), 3))
        conn.send_text(
            orjson.dumps(
                {
                    "id": msg_id,
                    "ok": True,
                    "result": {"user": result.user_id, "expires_in": expires_in},
                }
            )
        )
        conn.audit("refreshed" if refresh else "authenticated", auth=result.method)
        self._arm(result)
        if not refresh:
            self._on_authenticated()
        return True

    def _refuse(self, msg_id: object, reject: Reject, refresh: bool) -> None:
        conn = self.conn
        conn.audit(
            "auth_failed",
            stage="refresh" if refresh else "first_message",
            status=reject.status,
            reason=reject.audit_reason,
        )
        conn.send_text(_failure(msg_id, reject.status))
        if reject.audit_reason == "refresh_user_mismatch" or reject.audit_reason == "revoked":
            conn.close(CloseCode.FORBIDDEN, "forbidden")
        elif reject.status == 429:
            conn.close(CloseCode.TRY_AGAIN_LATER, "try again later")
        elif reject.status == 503:
            # Not the credential's fault (the ticket store is down): the client may retry.
            if not refresh:
                conn.close(CloseCode.TRY_AGAIN_LATER, "try again later")
        elif not refresh:
            conn.close(CloseCode.UNAUTHORIZED, "unauthorized")
        # A failed refresh leaves the current credential in force until it expires.

    # ------------------------------------------------------------------ expiry

    def _arm(self, principal: Principal) -> None:
        self.cancel()
        expires_at = principal.expires_at
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        notice_in = expires_at - self._config.expiring_notice - self._clock()
        if notice_in > _HORIZON:
            self._bucket = wheel_for(loop).add(self, loop.time() + notice_in, expires_at)
        elif notice_in > 0:
            self._timer = loop.call_later(notice_in, self._expiring, expires_at)
        else:
            self._expiring(expires_at)

    def wheel_due(self, when: float, expires_at: float) -> None:
        """The wheel's second for this notice has come: a timer of its own at ``when``."""
        self._bucket = None
        self._timer = asyncio.get_running_loop().call_at(when, self._expiring, expires_at)

    def _expiring(self, expires_at: float) -> None:
        left = expires_at - self._clock()
        self.conn.send_text(orjson.dumps({"push": "expiring", "in": max(0.0, round(left, 3))}))
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, left + self._config.expiry_grace), self._expired
        )

    def _expired(self) -> None:
        self._timer = None
        self.conn.audit("auth_failed", stage="lifetime", status=401, reason="expired_on_socket")
        self.conn.close(CloseCode.UNAUTHORIZED, "credential expired")
