"""Per-message authorization: may this principal do this action on this channel?

Performs no I/O; reads no clock. Runs on every message, from the principal bound at the
handshake: identities inside payloads are never consulted (there is no argument to pass one).

Deny by default. The checks, in order, and the decision each failure gives:

* the channel name is invalid -> 400 ``bad_channel``;
* no ``[[channels]]`` rule matches it -> 404 ``unknown_channel``;
* the matching rule grants the action to nobody this principal is -> 403 ``forbidden``.

Grants: ``"anonymous"`` (anyone), ``"authenticated"`` (any principal with a user id),
``"role:NAME"`` (``NAME`` in the principal's roles, compared exactly, case included),
``"owner"`` (the channel's last segment equals the user id exactly: ``user:alice`` for
``alice``, never ``user:alice2`` nor ``user:ALICE``), ``"claim"`` (the credential's ``channels``
claim lists this exact channel name). A pending principal (accepted, not yet authenticated) is
granted nothing, not even ``"anonymous"``. An unknown grant string grants nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from wsguard.core.channels import ChannelRules, validate_channel_name
from wsguard.core.decisions import Principal
from wsguard.exceptions import InvalidState
from wsguard.settings import ChannelConfig

__all__ = ["ACTIONS", "GRANTS", "Action", "Denied", "authorize", "grants_allow"]

Action = Literal["subscribe", "publish", "history", "presence"]
ACTIONS: Final[tuple[Action, ...]] = ("subscribe", "publish", "history", "presence")
# The grant words; "role:NAME" is the one parameterised grant.
GRANTS: Final = ("anonymous", "authenticated", "owner", "claim")
ROLE_PREFIX: Final = "role:"


@dataclass(frozen=True, slots=True)
class Denied:
    """Refuse one message; the connection stays open.

    Attributes:
        code: the error reply code (an HTTP status: 400, 403, 404).
        reason: a short fixed phrase safe to show the peer.
    """

    code: int
    reason: str


BAD_CHANNEL: Final = Denied(400, "bad_channel")
UNKNOWN_CHANNEL: Final = Denied(404, "unknown_channel")
FORBIDDEN: Final = Denied(403, "forbidden")


def _granted(config: ChannelConfig, action: Action) -> tuple[str, ...]:
    # An explicit table, not getattr(config, action): a wrong action string must never read
    # another field (``pattern``, ``schema``) as a list of grants.
    if action == "subscribe":
        return config.subscribe
    if action == "publish":
        return config.publish
    if action == "history":
        return config.history
    return config.presence  # authorize() has checked action is one of ACTIONS


def _allows(grant: str, principal: Principal, channel: str) -> bool:
    if grant == "anonymous":
        return True
    user_id = principal.user_id
    if grant == "authenticated":
        return user_id is not None
    if grant == "owner":
        # Exact equality with the whole last segment: no prefix, suffix or case folding. An
        # empty user id owns nothing (no valid channel has an empty segment anyway).
        return bool(user_id) and channel.rsplit(":", 1)[-1] == user_id
    if grant == "claim":
        return channel in principal.channels
    if grant.startswith(ROLE_PREFIX):
        return grant[len(ROLE_PREFIX) :] in principal.roles
    return False


def grants_allow(grants: tuple[str, ...], principal: Principal, channel: str) -> bool:
    """Whether any of ``grants`` admits ``principal`` on ``channel`` (a valid name)."""
    if principal.is_pending:
        return False
    # A loop, not any() over a generator: this runs on every rpc and channel message, and
    # the generator was a third of its cost.
    for grant in grants:  # noqa: SIM110
        if _allows(grant, principal, channel):
            return True
    return False


def authorize(
    rules: ChannelRules, principal: Principal, action: Action, channel: str
) -> Denied | None:
    """Decide one ``subscribe``/``publish``/``history``/``presence`` message.

    Args:
        rules: the ``[[channels]]`` rules.
        principal: who is on the connection (bound at the handshake, never from the message).
        action: the operation asked for.
        channel: the channel name from the message, unchecked.

    Returns:
        ``None`` to go on, or the ``Denied`` decision to answer with.

    Raises:
        InvalidState: for an ``action`` outside ``ACTIONS`` (a bug in the caller).
    """
    if action not in ACTIONS:
        raise InvalidState(f"unknown channel action {action!r}")
    if validate_channel_name(channel) is not None:
        return BAD_CHANNEL
    config = rules.match(channel)
    if config is None:
        return UNKNOWN_CHANNEL
    if grants_allow(_granted(config, action), principal, channel):
        return None
    return FORBIDDEN
