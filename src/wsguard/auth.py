"""Authentication at run time: the configured methods, built from settings and secrets, and the
credential checks that need I/O (single-use consumption, password hashing in a thread).

The decisions themselves live in ``wsguard.core.auth``; this module reads the environment and
files, and runs what the core deferred.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wsguard.brokers.base import TicketStore
from wsguard.core.auth.jwt import JwtAuthenticator, JwtVerifier
from wsguard.core.auth.ticket import TicketAuthenticator, TicketVerifier
from wsguard.core.decisions import Accept, Authenticated, Principal, Reject
from wsguard.core.handshake import Authenticator
from wsguard.core.revocation import Revocations
from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

if TYPE_CHECKING:
    from wsguard.server.jwks import JwksFetcher

__all__ = ["AuthService"]

log = logging.getLogger("wsguard.auth")

_UNAUTHORIZED = "Unauthorized"
_REPLAYED = Reject(401, _UNAUTHORIZED, "replayed_ticket")
_REVOKED = Reject(403, "Forbidden", "revoked")
_BUSY = Reject(503, "Service Unavailable", "auth_busy")
# The shared ticket store (Redis) is down: a ticket cannot be proven unused, so it is refused.
_STORE_DOWN = Reject(503, "Service Unavailable", "ticket_store_unavailable")
_BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="wsguard"')
# Concurrent password checks (argon2: memory-hard by design).
_MAX_VERIFYING = 4
# First-message credentials are bounded like handshake ones (a token is at most 8 KiB).
_MAX_CREDENTIAL = 8192


class AuthService:
    """The authenticators of ``auth.methods`` and the checks that finish them.

    Args:
        settings: the validated settings.
        env: where secrets are read (``os.environ``).
        tickets: the store single-use ticket ids are consumed in.
        clock: wall-clock time (credentials carry wall-clock expiries).

    Raises:
        ConfigError: a configured method lacks its secret or key material while
            ``auth.required`` is on (with anonymous mode, the method is left out with a warning).
    """

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        tickets: TicketStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings.auth
        self.tickets = tickets
        self.clock = clock
        self.revocations = Revocations(settings.auth.revocation_ttl)
        self._verifying = asyncio.Semaphore(_MAX_VERIFYING)
        self.ticket_verifier: TicketVerifier | None = None
        self.jwt_verifier: JwtVerifier | None = None
        self.jwks: JwksFetcher | None = None
        self.authenticators: list[Authenticator] = []
        for method in settings.auth.methods:
            try:
                authenticator = self._build(method, settings, env)
            except ConfigError:
                if settings.auth.required:
                    raise
                log.warning("auth method %s is off: its secret or keys are not configured", method)
                continue
            self.authenticators.append(authenticator)

    def _build(self, method: str, settings: Settings, env: Mapping[str, str]) -> Authenticator:
        auth = settings.auth
        if method == "ticket":
            from wsguard.tickets import ticket_secret

            self.ticket_verifier = TicketVerifier(ticket_secret(auth.ticket, env))
            return TicketAuthenticator(self.ticket_verifier)
        if method == "jwt":
            from wsguard.auth_keys import jwt_verifier, load_jwt_keys

            keys = load_jwt_keys(auth.jwt, env)
            if keys is None:
                # Only jwks_url: the keys are fetched when the server starts (jwks.start()),
                # refreshed periodically and when a token names an unknown kid.
                from wsguard.server.jwks import JwksFetcher, RefreshingJwtAuthenticator

                assert auth.jwt.jwks_url is not None  # noqa: S101 - load_jwt_keys checked it
                self.jwks = JwksFetcher(auth.jwt.jwks_url, auth.jwt)
                return RefreshingJwtAuthenticator(self.jwks)
            self.jwt_verifier = jwt_verifier(auth.jwt, keys)
            return JwtAuthenticator(self.jwt_verifier)
        if method == "cookie":
            from wsguard.core.auth.cookie import CookieAuthenticator, CookieVerifier
            from wsguard.sessions import cookie_secret

            secret = cookie_secret(auth.cookie, env)
            return CookieAuthenticator(CookieVerifier(secret, auth.cookie.name))
        if method == "basic":
            from wsguard.core.auth.basic import BasicAuthenticator
            from wsguard.users import load_users, verify_hash

            if not auth.basic.users_file:
                raise ConfigError("auth.basic.users_file", "basic is in auth.methods: set it")
            return BasicAuthenticator(load_users(auth.basic.users_file), verify_hash)
        from wsguard.core.auth.mtls import MtlsAuthenticator

        if not settings.server.tls_client_ca:
            raise ConfigError(
                "server.tls_client_ca", "mtls is in auth.methods: set the client CA file"
            )
        return MtlsAuthenticator(auth.mtls.identity)

    # ------------------------------------------------------------------ handshake

    async def finish(self, accept: Accept) -> Principal | Reject:
        """Run what the pipeline deferred for ``accept``: the password check in a worker
        thread, then the single-use consumption. Returns the principal to bind (the claimed
        one after a password check), or the refusal."""
        principal = accept.claimed if accept.claimed is not None else accept.principal
        if accept.verify is not None:
            # Each argon2 check takes ~64 MiB and tens of ms of CPU: a few at a time, and
            # "busy" beyond that rather than a queue an attacker can grow.
            if self._verifying.locked():
                return _BUSY
            async with self._verifying:
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(None, accept.verify)
            if not ok:
                return Reject(401, _UNAUTHORIZED, accept.verify_reason, (_BASIC_CHALLENGE,))
        if accept.consume is not None:
            refused = await self._consume(accept.consume, accept.consume_until)
            if refused is not None:
                return refused
        return self.check_revoked(principal) or principal

    async def _consume(self, ticket_id: str, until: float | None) -> Reject | None:
        """Consume a single-use id once, in the shared store: None the first time, the
        refusal for a replay or when the store cannot answer."""
        try:
            fresh = await self.tickets.consume(ticket_id, self.clock() if until is None else until)
        except ConnectionError:
            log.warning("ticket store unavailable; ticket refused")
            return _STORE_DOWN
        return None if fresh else _REPLAYED

    def check_revoked(self, principal: Principal) -> Reject | None:
        return _REVOKED if self.revocations.is_revoked(principal, self.clock()) else None

    def revoke(self, user_id: str) -> None:
        self.revocations.revoke(user_id, self.clock())

    # ------------------------------------------------------------------ first message

    async def authenticate_message(
        self, message: Mapping[str, Any], origin: str | None
    ) -> Principal | Reject:
        """Verify the credential of an ``auth`` or ``refresh`` message: ``{"token": JWT}`` or
        ``{"ticket": TICKET}``. Tickets are consumed here, exactly once."""
        token, ticket = message.get("token"), message.get("ticket")
        if (token is None) == (ticket is None):
            return Reject(400, "Bad Request", "bad_credential_field")
        now = self.clock()
        if token is not None:
            if self.jwt_verifier is None and self.jwks is None:
                return Reject(401, _UNAUTHORIZED, "method_not_enabled")
            if not isinstance(token, str) or len(token) > _MAX_CREDENTIAL:
                return Reject(401, _UNAUTHORIZED, "malformed_token")
            result: Principal | Authenticated | Reject
            if self.jwks is not None:
                result = self.jwks.verify(token, now)  # the current keys; refetch on new kid
            else:
                assert self.jwt_verifier is not None  # noqa: S101
                result = self.jwt_verifier.verify(token, now)
        else:
            if self.ticket_verifier is None:
                return Reject(401, _UNAUTHORIZED, "method_not_enabled")
            if not isinstance(ticket, str) or len(ticket) > _MAX_CREDENTIAL:
                return Reject(401, _UNAUTHORIZED, "bad_ticket")
            result = self.ticket_verifier.verify(ticket, origin=origin, now=now)
        if isinstance(result, Reject):
            return result
        if isinstance(result, Authenticated):
            assert result.consume is not None  # noqa: S101 - tickets are always single-use
            refused = await self._consume(result.consume, result.consume_until)
            if refused is not None:
                return refused
            result = result.principal
        return self.check_revoked(result) or result
