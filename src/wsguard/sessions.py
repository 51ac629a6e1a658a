"""Issue the session cookie and CSRF nonce that the ``cookie`` auth method accepts (DESIGN.md §4).

The cookie alone never authenticates a WebSocket: any page the user visits can make the
browser attach it to a handshake (Cross-Site WebSocket Hijacking). The server also requires
``?csrf=<nonce>``, a value bound to the session that only pages of your own origin can read.

Example:
    After login, a Flask view (FastAPI is the same) sets the cookie and renders the nonce::

        from flask import Flask, make_response, render_template
        from wsguard.sessions import issue_session

        app = Flask(__name__)

        @app.get("/app")
        def page():
            cookie, nonce = issue_session(current_user_id(), roles=["reader"])
            response = make_response(render_template("app.html", csrf=nonce))
            response.set_cookie(
                "session", cookie, httponly=True, secure=True, samesite="Lax", max_age=86400
            )
            return response

    and the page connects with::

        new WebSocket(`wss://app.example.com/ws?csrf=${csrf}`);

    Set the cookie ``HttpOnly; Secure; SameSite=Lax`` for the host that serves the WebSocket
    (``auth.cookie.name`` must match its name). Prefer a ``__Host-`` name (``__Host-session``,
    ``Path=/``, no ``Domain``): a sibling subdomain then cannot toss a second cookie of the
    same name, which the server refuses as ``duplicate_cookie``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence

from wsguard.config import read_secret
from wsguard.core.auth import cookie as _cookie
from wsguard.settings import CookieConfig

__all__ = ["cookie_secret", "csrf_nonce", "issue_session"]


def cookie_secret(config: CookieConfig, env: Mapping[str, str]) -> bytes:
    """The cookie secret, from the environment variable ``config.secret_env`` names.

    Raises:
        ConfigError: naming ``auth.cookie.secret_env`` when it is unset or shorter than 32
            bytes.
    """
    return read_secret("auth.cookie.secret_env", config.secret_env, env)


def issue_session(
    user: str,
    *,
    ttl: float = 86400,
    roles: Sequence[str] = (),
    secret: bytes | None = None,
    now: float | None = None,
) -> tuple[str, str]:
    """Create a session for ``user``: the signed cookie value and its CSRF nonce.

    Args:
        user: the user id (1 to 255 characters).
        ttl: seconds until the session expires (match the cookie's ``Max-Age``).
        roles: roles to grant the connection.
        secret: the cookie secret; by default read from ``WSGUARD_COOKIE_SECRET``.
        now: the current wall-clock time; by default ``time.time()``.

    Returns:
        ``(cookie_value, csrf_nonce)``: set the first as the cookie, render the second into
        the page and send it as ``?csrf=``.

    Raises:
        ConfigError: when ``secret`` is omitted and ``WSGUARD_COOKIE_SECRET`` is unset or
            shorter than 32 bytes.
        ValueError: when an argument is out of range.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < float("inf"):
        raise ValueError("ttl must be a positive number of seconds")
    if secret is None:
        secret = cookie_secret(CookieConfig(), os.environ)
    if now is None:
        now = time.time()
    session_id = secrets.token_urlsafe(24)
    value = _cookie.encode_session(
        secret, session_id=session_id, user=user, expires_at=now + ttl, roles=roles
    )
    return value, _cookie.csrf_nonce(secret, session_id)


def csrf_nonce(cookie_value: str, secret: bytes) -> str:
    """The CSRF nonce of an existing session cookie (to render it into another page).

    Args:
        cookie_value: the session cookie's value.
        secret: the cookie secret.

    Returns:
        The nonce the server expects as ``?csrf=`` with that cookie.

    Raises:
        ValueError: when ``cookie_value`` is not a session cookie signed with ``secret``.
    """
    session = _cookie.read_session(secret, cookie_value)
    if session is None:
        raise ValueError("not a session cookie signed with this secret")
    return _cookie.csrf_nonce(secret, session.session_id)
