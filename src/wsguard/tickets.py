"""Mint tickets from a Python backend: the default way a browser authenticates (DESIGN.md §4).

A ticket is a short-lived (30 s), single-use credential bound to one user, one page origin and
an expiry, signed with the secret the wsguard server verifies it with. The app's backend mints
one for its logged-in user; the page connects with ``wss://host/ws?ticket=<ticket>`` at once.

Example:
    A Flask view (FastAPI is the same) handing its logged-in user's page a fresh ticket::

        from flask import Flask, jsonify, session
        from wsguard.tickets import mint

        app = Flask(__name__)

        @app.post("/ws-ticket")  # called by the page right before it connects
        def ws_ticket():
            ticket = mint(session["user_id"], "https://app.example.com", roles=["reader"])
            return jsonify(ticket=ticket)

    and in the page::

        const {ticket} = await (await fetch("/ws-ticket", {method: "POST"})).json();
        const ws = new WebSocket(`wss://ws.example.com/ws?ticket=${ticket}`);

    Protect that endpoint like any state-changing one (POST, CSRF token): it hands out a
    credential.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence

from wsguard.config import read_secret
from wsguard.core.auth.ticket import encode_ticket
from wsguard.settings import TicketConfig

__all__ = ["mint", "ticket_secret"]


def ticket_secret(config: TicketConfig, env: Mapping[str, str]) -> bytes:
    """The ticket secret, from the environment variable ``config.secret_env`` names.

    Raises:
        ConfigError: naming ``auth.ticket.secret_env`` when it is unset or shorter than 32
            bytes.
    """
    return read_secret("auth.ticket.secret_env", config.secret_env, env)


def mint(
    user: str,
    origin: str,
    *,
    ttl: float = 30.0,
    roles: Sequence[str] = (),
    channels: Sequence[str] = (),
    secret: bytes | None = None,
    now: float | None = None,
) -> str:
    """Mint a single-use ticket for ``user``, valid from page ``origin`` for ``ttl`` seconds.

    Args:
        user: the user id (1 to 255 characters) the connection will act as.
        origin: the origin of the page that will connect (``https://app.example.com``); the
            server refuses the ticket from any other origin.
        ttl: seconds until the ticket expires; keep it short (it travels in a URL).
        roles: roles to grant the connection.
        channels: channels the connection is granted.
        secret: the ticket secret; by default read from ``WSGUARD_TICKET_SECRET``.
        now: the current wall-clock time; by default ``time.time()`` (tickets cross processes
            and machines, so a monotonic clock would be meaningless).

    Returns:
        The ticket, URL-safe: put it in ``?ticket=`` as is.

    Raises:
        ConfigError: when ``secret`` is omitted and ``WSGUARD_TICKET_SECRET`` is unset or
            shorter than 32 bytes.
        ValueError: when an argument is out of range.

    Example:
        >>> ticket = mint("alice", "https://app.example.com", secret=b"s" * 32, now=0.0)
        >>> ticket.count(".")
        1
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < float("inf"):
        raise ValueError("ttl must be a positive number of seconds")
    if secret is None:
        secret = ticket_secret(TicketConfig(), os.environ)
    if now is None:
        now = time.time()
    return encode_ticket(
        secret,
        ticket_id=secrets.token_urlsafe(18),
        user=user,
        origin=origin,
        expires_at=now + ttl,
        roles=roles,
        channels=channels,
        issued_at=now,
    )
