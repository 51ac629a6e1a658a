"""The Basic users file and password hashing: the I/O half of ``wsguard.core.auth.basic``.

The users file is TOML, one table per user, readable by the server only (mode 0o600)::

    [users."alice"]
    hash = "$argon2id$v=19$m=65536,t=3,p=4$..."
    roles = ["admin"]

Only argon2id hashes are accepted (RFC 9106 §4 recommends argon2id; argon2i and argon2d are
weaker against side channels and GPU cracking respectively). ``wsguard users add`` writes the
file; error messages name users and fields but never echo a hash.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from wsguard.core.auth.basic import UserRecord
from wsguard.exceptions import ConfigError

__all__ = [
    "FIELD",
    "MIN_PASSWORD_LENGTH",
    "add_user",
    "check_password",
    "hash_password",
    "load_users",
    "verify_hash",
]

FIELD: Final = "auth.basic.users_file"
"""The setting every users-file error names."""

# NIST SP 800-63B §3.1.1.2 asks for at least 8 characters; 12 leaves margin for offline
# guessing should the file leak.
MIN_PASSWORD_LENGTH: Final = 12

# User ids key the per-user caps, channel rules and the audit log: bounded, and free of
# characters that need quoting in a log line or a TOML key.
_USER_ID: Final = re.compile(r"[A-Za-z0-9_.@-]{1,255}", re.ASCII)
_MAX_ROLE_LENGTH: Final = 255
_CTL: Final = re.compile(r"[\x00-\x1f\x7f]")
_ARGON2ID: Final = "$argon2id$"
_WEAK_TYPES: Final = ("$argon2i$", "$argon2d$")
_USER_KEYS: Final = frozenset({"hash", "roles"})

_DEFAULT_HASHER: Final = argon2.PasswordHasher()


def hash_password(password: str, hasher: argon2.PasswordHasher | None = None) -> str:
    """Hash ``password`` with argon2id.

    The default parameters are ``argon2.PasswordHasher``'s, RFC 9106 §4's second recommended
    option (for memory-constrained environments): argon2id, t=3 passes, m=64 MiB, p=4 lanes,
    a 16-byte random salt and a 32-byte tag: 50 to 250 ms of CPU, depending on the machine.

    Args:
        password: the password.
        hasher: other parameters (tests use cheap ones); the hash records them, so
            ``verify_hash`` needs no hasher.

    Returns:
        The hash in PHC string format, ``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<tag>``.
    """
    return (hasher or _DEFAULT_HASHER).hash(password)


def verify_hash(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. CPU-bound: call it off the event loop.

    The tag comparison is constant-time (libargon2's ``argon2_verify``); the cost is the
    parameters recorded in the hash.

    Returns:
        ``True`` on a match; ``False`` on a mismatch or a malformed hash. Never raises for
        either.
    """
    try:
        return _DEFAULT_HASHER.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError, VerificationError):
        return False


def check_password(password: str) -> None:
    """Refuse a password ``wsguard users add`` should not store.

    Raises:
        ConfigError: ``password``, when shorter than ``MIN_PASSWORD_LENGTH`` characters or
            holding control characters (RFC 7617 §2: Basic credentials "MUST NOT contain any
            control characters", so such a password could never log in).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if _CTL.search(password):
        raise ConfigError("password", "must not contain control characters")


def _check_user_id(field: str, where: str, user: str) -> None:
    if not _USER_ID.fullmatch(user):
        raise ConfigError(
            field, f"{where}{user!r:.40}: a user id is 1 to 255 characters from A-Z a-z 0-9 _ . @ -"
        )


def _check_roles(where: str, roles: object) -> frozenset[str]:
    if not isinstance(roles, list | tuple) or not all(
        isinstance(role, str) and 1 <= len(role) <= _MAX_ROLE_LENGTH and not _CTL.search(role)
        for role in roles
    ):
        raise ConfigError(
            FIELD,
            f"{where}: roles must be a list of 1 to {_MAX_ROLE_LENGTH} character strings "
            "without control characters",
        )
    return frozenset(roles)


def _check_hash(where: str, password_hash: object) -> str:
    # Never echo the value: a hash is an offline-guessing target.
    if not isinstance(password_hash, str):
        raise ConfigError(FIELD, f"{where}.hash: must be a string")
    if password_hash.startswith(_WEAK_TYPES):
        raise ConfigError(
            FIELD,
            f"{where}.hash: argon2i and argon2d hashes are refused; set the password again "
            "with 'wsguard users add' to store an argon2id hash",
        )
    if not password_hash.startswith(_ARGON2ID):
        raise ConfigError(FIELD, f"{where}.hash: not an argon2id hash ($argon2id$...)")
    try:
        argon2.extract_parameters(password_hash)
    except InvalidHashError:
        raise ConfigError(FIELD, f"{where}.hash: malformed argon2id hash") from None
    return password_hash


def _parse(path: Path, document: dict[str, Any]) -> dict[str, UserRecord]:
    unknown = sorted(set(document) - {"users"})
    if unknown:
        raise ConfigError(FIELD, f"{path}: unknown top-level key {unknown[0]!r}")
    users = document.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(FIELD, f"{path}: 'users' must be a table")
    records: dict[str, UserRecord] = {}
    for user, entry in users.items():
        _check_user_id(FIELD, f"{path}: user id ", user)
        where = f"{path}: users.{user}"
        if not isinstance(entry, dict):
            raise ConfigError(FIELD, f"{where}: must be a table with 'hash' and 'roles'")
        extra = sorted(set(entry) - _USER_KEYS)
        if extra:
            raise ConfigError(FIELD, f"{where}: unknown key {extra[0]!r}")
        if "hash" not in entry:
            raise ConfigError(FIELD, f"{where}.hash: missing")
        password_hash = _check_hash(where, entry["hash"])
        roles = _check_roles(where, entry.get("roles", []))
        records[user] = UserRecord(user, password_hash, roles)
    return records


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(FIELD, f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages give a position, never the offending text.
        raise ConfigError(FIELD, f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(FIELD, f"{path}: invalid TOML: not UTF-8") from None


def load_users(path: str | os.PathLike[str]) -> dict[str, UserRecord]:
    """Read and validate a users file.

    Args:
        path: the file (``auth.basic.users_file``).

    Returns:
        The users by user id.

    Raises:
        ConfigError: ``auth.basic.users_file``, when the file cannot be read or is invalid
            (the message names the user and key, never a hash).
    """
    path = Path(path)
    return _parse(path, _read(path))


def _toml_string(value: str) -> str:
    # A TOML basic string: escape the quote, the backslash and every control character.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CTL.sub(lambda m: f"\\u{ord(m.group()):04X}", escaped) + '"'


def _render(records: Iterable[UserRecord]) -> str:
    blocks = []
    for record in records:
        roles = ", ".join(_toml_string(role) for role in sorted(record.roles))
        blocks.append(
            f"[users.{_toml_string(record.user_id)}]\n"
            f"hash = {_toml_string(record.password_hash)}\n"
            f"roles = [{roles}]\n"
        )
    return "\n".join(blocks)


def _keep_access(fd: int, path: Path) -> None:
    # The new file replaces the old one, so it would lose the old one's group (the server's,
    # say) and read bit for it. Keep both, but never "other" access: hashes are offline-
    # guessing targets. Changing the owner needs root; without it, the caller owns the file.
    try:
        old = path.stat()
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o660 | 0o600)


def _write_atomically(path: Path, text: str) -> None:
    # A temporary file in the same directory, then os.replace: a reader (the server) sees the
    # old file or the new one, never half of one. mkstemp creates it with mode 0o600, so the
    # hashes are never readable by other users, not even briefly.
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(FIELD, f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            _keep_access(file.fileno(), path)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise ConfigError(FIELD, f"{path}: cannot write: {exc.strerror or exc}") from None
        raise


def add_user(
    path: str | os.PathLike[str],
    user: str,
    password: str,
    roles: Iterable[str] = (),
    *,
    hasher: argon2.PasswordHasher | None = None,
) -> None:
    """Add ``user`` to the users file, or replace their entry; other users are kept.

    Creates the file (mode 0o600) when missing. The write is atomic: a temporary file in the
    same directory replaces the old one.

    Args:
        path: the users file.
        user: the user id, 1 to 255 characters from ``A-Z a-z 0-9 _ . @ -``.
        password: the password; hashed with ``hash_password``. Not checked against
            ``check_password`` here (the CLI does that).
        roles: the roles to grant.
        hasher: argon2 parameters, as for ``hash_password``.

    Raises:
        ConfigError: when the user id or a role is invalid, or the existing file is invalid
            or cannot be read or written.
    """
    path = Path(path)
    _check_user_id("user", "", user)
    granted = _check_roles(f"users.{user}", list(roles))
    records = load_users(path) if path.exists() else {}
    records[user] = UserRecord(user, hash_password(password, hasher), granted)
    _write_atomically(path, _render(records.values()))
