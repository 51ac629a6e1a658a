"""HTTP Basic: a user id and password checked against argon2id hashes from a users file.

Performs no I/O; reads no clock; hashes nothing. The users arrive already loaded
(``wsguard.users.load_users``) and the hash check comes in as ``verify_hash``. DESIGN.md §4.

Verifying an argon2 hash costs tens of milliseconds of CPU on purpose, so it never runs here:
run inside the handshake pipeline, every guess would block the event loop (a DoS lever). This
module parses the header and looks the user up, then returns an ``Authenticated`` whose
``verify`` thunk the I/O layer runs in a worker thread before accepting; when it returns
``False`` the handshake is refused with 401 ``verify_reason`` (``bad_password``).

Rules:

- Exactly one ``Authorization`` field (two are a 400 ``duplicate_header``: a proxy and this
  server could each pick another); a scheme other than Basic (case-insensitive, RFC 9110
  §11.1) is left to the next method.
- The credentials are canonical base64 of ``user-id ":" password`` in UTF-8 (RFC 7617 §2,
  §2.1), without control characters (RFC 7617 §2: they "MUST NOT contain any control
  characters"), each part at most ``MAX_PART_BYTES``; anything else is a 401
  ``bad_basic_header``, refused before any hashing.
- An unknown user gets the same answer as a wrong password, after the same work: its thunk
  verifies the password against a dummy hash of the same cost and returns ``False``, so
  neither the response nor its timing tells which user ids exist.
- Every 401 carries ``WWW-Authenticate: Basic realm="wsguard"`` (RFC 9110 §11.6.1, §15.5.2);
  the I/O layer adds ``BASIC_CHALLENGE`` to the 401 it sends when ``verify`` fails.
- Every ``Reject`` reason and ``verify_reason`` is in ``BASIC_REASONS``; nothing raises on bad
  input and no credential text ever goes into a decision's reason or headers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from wsguard.core.decisions import Authenticated, Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import UpgradeRequest

__all__ = [
    "BASIC_CHALLENGE",
    "BASIC_REASONS",
    "DUMMY_HASH",
    "MAX_PART_BYTES",
    "BasicAuthenticator",
    "UserRecord",
]

BASIC_REASONS: Final = frozenset(
    {
        "duplicate_header",  # 400
        "bad_basic_header",  # 401
        "bad_password",  # 401, produced by the I/O layer when ``verify`` returns False
    }
)
"""Every ``audit_reason`` a Basic ``Reject`` (or the failed ``verify``) carries."""

BASIC_CHALLENGE: Final = ("WWW-Authenticate", 'Basic realm="wsguard"')
"""The challenge every Basic 401 carries (RFC 9110 §15.5.2: a 401 "MUST send" one)."""

# Bounds the base64 and UTF-8 work an unauthenticated peer can make us do per attempt, and the
# password length handed to the hasher (argon2 itself accepts up to 4 GiB).
MAX_PART_BYTES: Final = 1024
# The longest canonical base64 of "<user>:<password>" within the bound above.
_MAX_CREDENTIALS_LENGTH: Final = 4 * -(-(2 * MAX_PART_BYTES + 1) // 3)

DUMMY_HASH: Final = (
    "$argon2id$v=19$m=65536,t=3,p=4$nLeoxCw9BrjwkT9TEJ4W8A$"
    "xKSWlre1m8GlAvhRQpOy60GPJFvsCB7nQSjwAFb4jtk"
)
"""An argon2id hash of a discarded random password, with ``argon2.PasswordHasher``'s default
parameters (those ``wsguard users add`` writes): unknown users are checked against it."""

# RFC 5234 Appendix B.1: CTL = %x00-1F / %x7F.
_CTL: Final = re.compile(r"[\x00-\x1f\x7f]")

_DUPLICATE_AUTHORIZATION: Final = Reject(400, "Bad Request", "duplicate_header")
_BAD_HEADER: Final = Reject(401, "Unauthorized", "bad_basic_header", (BASIC_CHALLENGE,))


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user of the users file.

    Attributes:
        user_id: the user id, as in ``Principal.user_id``.
        password_hash: the argon2id hash (PHC string format); left out of ``repr`` so that a
            logged record never shows it.
        roles: the roles a connection of this user is granted.
    """

    user_id: str
    password_hash: str = field(repr=False)
    roles: frozenset[str] = frozenset()


def _credentials(value: str) -> tuple[str, str] | Reject | None:
    """``(user, password)`` from one ``Authorization`` value, a ``Reject``, or ``None``."""
    scheme, _, credentials = value.strip(" \t").partition(" ")
    # RFC 9110 §11.1: the auth scheme is case-insensitive. isascii() keeps look-alikes (the
    # Kelvin sign folds to "k") from passing as Basic.
    if not (scheme.isascii() and scheme.lower() == "basic"):
        return None
    credentials = credentials.strip(" \t")
    if len(credentials) > _MAX_CREDENTIALS_LENGTH:
        return _BAD_HEADER
    try:
        raw = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a non-ASCII str
        return _BAD_HEADER
    # Canonical form only (no stray padding bits), so one credential has one spelling.
    if base64.b64encode(raw).decode("ascii") != credentials:
        return _BAD_HEADER
    # RFC 7617 §2: "a user-id containing a colon character is invalid"; the password may
    # contain colons, so the split is at the first one.
    user_bytes, colon, password_bytes = raw.partition(b":")
    if not colon or len(user_bytes) > MAX_PART_BYTES or len(password_bytes) > MAX_PART_BYTES:
        return _BAD_HEADER
    try:
        # RFC 7617 §2.1: we announce nothing, but UTF-8 is the only charset a client may use.
        user, password = user_bytes.decode("utf-8"), password_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return _BAD_HEADER
    if _CTL.search(user) or _CTL.search(password):
        return _BAD_HEADER
    return user, password


class BasicAuthenticator:
    """The ``basic`` method: ``Authorization: Basic`` checked against a users file.

    Args:
        users: the users by user id (``wsguard.users.load_users``).
        verify_hash: ``verify_hash(password_hash, password)``, ``True`` when they match; a
            constant-time, CPU-bound check (``wsguard.users.verify_hash``). Only ever called
            from the ``verify`` thunk, never during ``authenticate``.
        dummy_hash: the hash an unknown user's password is checked against; it must cost what
            the users' hashes cost, or the timing tells which user ids exist.
    """

    __slots__ = ("_dummy_hash", "_users", "_verify_hash")

    def __init__(
        self,
        users: Mapping[str, UserRecord],
        verify_hash: Callable[[str, str], bool],
        *,
        dummy_hash: str = DUMMY_HASH,
    ) -> None:
        self._users = dict(users)
        self._verify_hash = verify_hash
        self._dummy_hash = dummy_hash

    @property
    def name(self) -> str:
        """``"basic"``."""
        return "basic"

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Authenticated | Reject | None:
        """Parse ``Authorization: Basic``; ``None`` without one.

        Returns:
            ``Authenticated`` whose ``verify`` thunk checks the password (always ``False`` for
            an unknown user), ``verify_reason="bad_password"``; or a ``Reject``: 400
            ``duplicate_header``, 401 ``bad_basic_header`` (with ``BASIC_CHALLENGE``).
        """
        values = request.headers.get_all("Authorization")
        if not values:
            return None
        if len(values) > 1:
            return _DUPLICATE_AUTHORIZATION
        parsed = _credentials(values[0])
        if parsed is None or isinstance(parsed, Reject):
            return parsed
        user, password = parsed
        verify_hash = self._verify_hash
        record = self._users.get(user)
        if record is None:
            dummy_hash = self._dummy_hash

            def verify() -> bool:
                # Same work as a wrong password for a real user, then always refuse.
                verify_hash(dummy_hash, password)
                return False

            principal = Principal(user_id=user, method="basic")
        else:
            password_hash = record.password_hash

            def verify() -> bool:
                return verify_hash(password_hash, password)

            principal = Principal(user_id=record.user_id, method="basic", roles=record.roles)
        # The principal of an unknown user looks like any other until ``verify`` runs, so the
        # later stages (the per-user cap) treat both alike.
        return Authenticated(principal, verify=verify, verify_reason="bad_password")
