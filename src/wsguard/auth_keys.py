"""Loading the JWT verification keys: the I/O side of ``wsguard.core.auth.jwt``.

Reads the environment and key files once, at start-up, and hands the material to
``JwtKeys``. Every problem is a ``ConfigError`` naming the ``auth.jwt`` field; secret values
never appear in a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from wsguard.config_fields import show
from wsguard.core.auth.jwt import JwtKeys, JwtVerifier
from wsguard.exceptions import ConfigError
from wsguard.settings import JwtConfig

__all__ = ["jwt_verifier", "load_jwt_keys"]

_SOURCES: Final = ("secret_env", "public_key_file", "jwks_file", "jwks_url")
# A PEM key or a JWKS is a few KiB; the cap stops a mistyped path (a log, a device) from being
# read into memory whole.
_MAX_KEY_FILE_BYTES: Final = 1024 * 1024


def load_jwt_keys(config: JwtConfig, env: Mapping[str, str]) -> JwtKeys | None:
    """The JWT verification keys ``config`` points to.

    Exactly one source must be set: ``secret_env`` (an environment variable holding the HMAC
    secret), ``public_key_file`` (PEM), ``jwks_file`` (JSON) or ``jwks_url``.

    Args:
        config: ``auth.jwt``.
        env: the environment (``os.environ``).

    Returns:
        The keys; ``None`` when the source is ``jwks_url`` (the server fetches and refreshes
        it, then builds ``JwtKeys.from_jwks``).

    Raises:
        ConfigError: when zero or several sources are set, the variable is unset or empty, or
            a file is unreadable or holds no valid key.
    """
    sources = [name for name in _SOURCES if getattr(config, name) is not None]
    if len(sources) != 1:
        found = ", ".join(f"auth.jwt.{name}" for name in sources) or "none is set"
        raise ConfigError(
            "auth.jwt",
            f"set exactly one key source among auth.jwt.secret_env, auth.jwt.public_key_file,"
            f" auth.jwt.jwks_file and auth.jwt.jwks_url ({found})",
        )
    if config.secret_env is not None:
        return _secret(config.secret_env, env)
    if config.public_key_file is not None:
        field = "auth.jwt.public_key_file"
        pem = _read(field, config.public_key_file)
        try:
            return JwtKeys.from_pem(pem)
        except ValueError as exc:
            raise ConfigError(field, f"{show(config.public_key_file)}: {exc}") from None
    if config.jwks_file is not None:
        return _jwks_file(config.jwks_file)
    return None


def jwt_verifier(config: JwtConfig, keys: JwtKeys) -> JwtVerifier:
    """A ``JwtVerifier`` for ``keys`` with the claims ``config`` asks for.

    Raises:
        ConfigError: naming ``auth.jwt.algorithms`` when no key can verify any of them.
    """
    try:
        return JwtVerifier(keys, config.algorithms, config.audience, config.issuer, config.leeway)
    except ValueError as exc:
        raise ConfigError("auth.jwt.algorithms", str(exc)) from None


def _secret(name: str, env: Mapping[str, str]) -> JwtKeys:
    field = "auth.jwt.secret_env"
    value = env.get(name)
    if not value:
        raise ConfigError(field, f"environment variable {name} is not set or is empty")
    try:
        # surrogateescape gives back the bytes the OS held, whatever their encoding.
        return JwtKeys.from_secret(value.encode("utf-8", "surrogateescape"))
    except ValueError as exc:
        # The message describes the secret (its length), never its value.
        raise ConfigError(field, f"environment variable {name}: {exc}") from None


def _jwks_file(path: str) -> JwtKeys:
    field = "auth.jwt.jwks_file"
    data = _read(field, path)
    try:
        jwks = json.loads(data)
    except (ValueError, RecursionError):
        raise ConfigError(field, f"{show(path)} is not valid JSON") from None
    if not isinstance(jwks, dict):
        raise ConfigError(field, f'{show(path)} must hold a JSON object with a "keys" list')
    try:
        return JwtKeys.from_jwks(jwks)
    except ValueError as exc:
        raise ConfigError(field, f"{show(path)}: {exc}") from None


def _read(field: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(field, f"cannot read {show(path)}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ConfigError(field, f"{show(path)} is larger than 1 MiB: not a key file")
    return data
