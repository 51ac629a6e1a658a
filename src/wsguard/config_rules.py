"""The rules a loaded configuration must satisfy, and the list of insecure switches it turns on.

Each rule raises ``ConfigError`` naming the field; the messages say which switch to use. The
cross-field rules protect the secure defaults: a public bind needs a Host allow-list (against DNS
rebinding) and TLS, or ``server.trusted_proxies`` when a proxy terminates TLS, or a loud
``server.allow_plaintext``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from wsguard.config_fields import close_match, show
from wsguard.core.authz import GRANTS, ROLE_PREFIX
from wsguard.core.channels import ChannelPattern, parse_channel_pattern
from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

__all__ = ["JWT_ALGORITHMS", "insecure_switches", "is_loopback_host", "validate"]

# Every algorithm PyJWT implements. "none" is deliberately absent: it accepts unsigned tokens.
JWT_ALGORITHMS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K", "EdDSA",
)  # fmt: skip

_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` only listens on loopback: 127.0.0.0/8, ::1 or ``localhost``."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def validate(s: Settings) -> None:
    """Check every rule that looks at a value's meaning or at several fields.

    Raises:
        ConfigError: for the first broken rule.
    """
    _validate_server(s)
    _validate_origins(s)
    _validate_auth(s)
    if urlsplit(s.broker.url).scheme not in ("memory", "redis", "rediss"):
        # Only the scheme is shown: a Redis URL may carry a password.
        scheme = urlsplit(s.broker.url).scheme
        raise ConfigError(
            "broker.url",
            'must start with "memory://", "redis://" or "rediss://", got '
            + (f"scheme {show(scheme)}" if scheme else "no scheme"),
        )
    prefix = s.broker.prefix
    if not prefix or len(prefix) > 64 or any(c.isspace() or c in "{}*?[]" for c in prefix):
        raise ConfigError(
            "broker.prefix",
            f"must be 1 to 64 characters without spaces, braces or glob characters, got "
            f"{show(prefix)}",
        )
    if not s.broker.presence_ttl >= 3:
        raise ConfigError("broker.presence_ttl", "must be at least 3 seconds")
    _env_var_name("api.key_env", s.api.key_env)
    if not s.api.host.strip():
        raise ConfigError("api.host", "must not be empty")
    _validate_channels(s)
    _public_bind_rules(s)


def _existing_file(field: str, value: str | None) -> None:
    if value is not None and not Path(value).is_file():
        raise ConfigError(field, f"file not found: {show(value)}")


def _env_var_name(field: str, value: str | None) -> None:
    if value is not None and not _ENV_VAR_NAME.fullmatch(value):
        raise ConfigError(field, f"must be an environment variable name, got {show(value)}")


def _validate_server(s: Settings) -> None:
    server = s.server
    if server.workers < 1:
        raise ConfigError("server.workers", f"must be a positive integer, got {server.workers}")
    if server.workers > 1 and urlsplit(s.broker.url).scheme not in ("redis", "rediss"):
        # Each worker is its own process: with memory:// a ticket minted through one worker's
        # API, a revocation, a subscription's publications would all stay in that worker.
        raise ConfigError(
            "server.workers",
            "more than one worker needs a shared broker: set broker.url to redis://...; with "
            "memory:// every worker would keep its own channels, history, tickets and "
            "revocations",
        )
    if not server.host.strip() or any(c.isspace() for c in server.host):
        raise ConfigError(
            "server.host", f"must be a host name or IP address, got {show(server.host)}"
        )
    path = server.ws_path
    if not path.startswith("/") or any(c in "?#" or c.isspace() for c in path):
        raise ConfigError(
            "server.ws_path",
            f'must start with "/" and contain no "?", "#" or spaces, got {show(path)}',
        )
    if (server.tls_cert is None) != (server.tls_key is None):
        missing, present = (
            ("server.tls_key", "server.tls_cert") if server.tls_key is None
            else ("server.tls_cert", "server.tls_key")
        )  # fmt: skip
        raise ConfigError(missing, f"must be set together with {present}")
    _existing_file("server.tls_cert", server.tls_cert)
    _existing_file("server.tls_key", server.tls_key)
    if server.tls_client_ca is not None and server.tls_cert is None:
        raise ConfigError("server.tls_client_ca", "requires server.tls_cert and server.tls_key")
    _existing_file("server.tls_client_ca", server.tls_client_ca)
    if server.trusted_proxies:
        from wsguard.core.transport import parse_trusted_proxy

        _each("server.trusted_proxies", server.trusted_proxies, parse_trusted_proxy)


def _each(field: str, entries: Sequence[str], parse: Callable[[str], object]) -> None:
    for index, entry in enumerate(entries):
        try:
            parse(entry)
        except ValueError as exc:
            raise ConfigError(f"{field}[{index}]", str(exc)) from None


def _validate_origins(s: Settings) -> None:
    # The parsers are the ones the handshake uses, so what loads here is what gets enforced.
    if s.origins.allowed_hosts:
        from wsguard.core.host import parse_host_pattern

        _each("origins.allowed_hosts", s.origins.allowed_hosts, parse_host_pattern)
    if s.origins.allowed:
        from wsguard.core.origin import parse_origin_pattern

        _each("origins.allowed", s.origins.allowed, parse_origin_pattern)
    if s.origins.allow_any_origin and s.origins.allowed:
        raise ConfigError(
            "origins.allow_any_origin",
            "contradicts origins.allowed: with allow_any_origin = true the allow-list is ignored;"
            " remove one of the two",
        )


def _validate_auth(s: Settings) -> None:
    methods = s.auth.methods
    if not methods:
        raise ConfigError(
            "auth.methods",
            "must name at least one method"
            " (to accept anonymous clients, set auth.required = false instead)",
        )
    for index, method in enumerate(methods):
        if method in methods[:index]:
            raise ConfigError(f"auth.methods[{index}]", f"duplicate method {show(method)}")
    jwt = s.auth.jwt
    if not jwt.algorithms:
        raise ConfigError("auth.jwt.algorithms", "must name at least one algorithm")
    for index, algorithm in enumerate(jwt.algorithms):
        field = f"auth.jwt.algorithms[{index}]"
        if algorithm.lower() == "none":
            raise ConfigError(
                field, '"none" is never allowed: it accepts unsigned tokens that anyone can forge'
            )
        if algorithm not in JWT_ALGORITHMS:
            hint = close_match(algorithm, JWT_ALGORITHMS) or close_match(
                algorithm.upper(), JWT_ALGORITHMS
            )
            extra = f' (did you mean "{hint}"?)' if hint else ""
            raise ConfigError(
                field,
                f"unknown algorithm {show(algorithm)}{extra}; known: {', '.join(JWT_ALGORITHMS)}",
            )
    _env_var_name("auth.jwt.secret_env", jwt.secret_env)
    _env_var_name("auth.ticket.secret_env", s.auth.ticket.secret_env)
    _existing_file("auth.jwt.public_key_file", jwt.public_key_file)
    _existing_file("auth.jwt.jwks_file", jwt.jwks_file)
    if jwt.jwks_url is not None:
        url = urlsplit(jwt.jwks_url)
        plain_ok = url.scheme == "http" and is_loopback_host(url.hostname or "")
        if url.scheme != "https" and not plain_ok:
            # Keys fetched over plain HTTP can be swapped by anyone on the path: forged tokens.
            raise ConfigError(
                "auth.jwt.jwks_url", f"must be an https:// URL, got {show(jwt.jwks_url)}"
            )


_ROLE_NAME = re.compile(r"[A-Za-z0-9_.:@/-]+")


def _validate_channels(s: Settings) -> None:
    patterns: list[ChannelPattern] = []
    for index, rule in enumerate(s.channels):
        where = f"channels[{index}]"
        try:
            pattern = parse_channel_pattern(rule.pattern)
        except ValueError as exc:
            raise ConfigError(f"{where}.pattern", str(exc)) from None
        for earlier, other in enumerate(patterns):
            if other.covers(pattern):
                # An exact rule below a wildcard looks like it narrows access, but never applies.
                raise ConfigError(
                    f"{where}.pattern",
                    f"{show(rule.pattern)} is never used: channels[{earlier}]"
                    f" ({show(other.text)}) comes first and matches every channel it matches"
                    " (the first matching rule wins); move this rule above it",
                )
        patterns.append(pattern)
        for action in ("subscribe", "publish", "history", "presence"):
            grants: tuple[str, ...] = getattr(rule, action)
            for position, grant in enumerate(grants):
                _check_grant(f"{where}.{action}[{position}]", grant, pattern)
        _schema_file(f"{where}.schema", rule.schema)
        _schema_file(f"{where}.output_schema", rule.output_schema)
        if rule.history_ttl > 0 and rule.history_size == 0:
            raise ConfigError(
                f"{where}.history_ttl", "has no effect with history_size = 0 (no history kept)"
            )


def _schema_file(field: str, path: str | None) -> None:
    """Load and compile the file now, so ``wsguard config check`` reports a bad schema."""
    if path is None:
        return
    from wsguard.schemas import load_schema

    try:
        load_schema(path)
    except ValueError as exc:
        raise ConfigError(field, str(exc)) from None


def _check_grant(field: str, grant: str, pattern: ChannelPattern) -> None:
    if grant.startswith(ROLE_PREFIX):
        if not _ROLE_NAME.fullmatch(grant[len(ROLE_PREFIX) :]):
            raise ConfigError(field, f'"role:" must be followed by a role name, got {show(grant)}')
        return
    if grant == "owner" and pattern.segments[-1] != "*":
        # "owner" compares the user id with the last segment: on "chat:*:messages" a user
        # named "messages" would own every chat.
        raise ConfigError(
            field,
            f'"owner" needs a pattern whose last segment is "*" (the user id),'
            f" got {show(pattern.text)}",
        )
    if grant in GRANTS:
        return
    hint = close_match(grant, GRANTS) or close_match(grant.lower(), GRANTS)
    if hint is None and grant.lower().startswith(ROLE_PREFIX):
        hint = ROLE_PREFIX + grant[len(ROLE_PREFIX) :]
    if hint is None and _ROLE_NAME.fullmatch(grant):
        hint = ROLE_PREFIX + grant
    if hint is not None:
        raise ConfigError(field, f'unknown grant {show(grant)} (did you mean "{hint}"?)')
    known = ", ".join(f'"{g}"' for g in (*GRANTS, "role:NAME"))
    raise ConfigError(field, f"unknown grant {show(grant)}; known: {known}")


def _public_bind_rules(s: Settings) -> None:
    server = s.server
    if is_loopback_host(server.host):
        return
    if not s.origins.allowed_hosts:
        raise ConfigError(
            "origins.allowed_hosts",
            f'must list the public host names clients connect to (e.g. ["app.example.com"])'
            f" because server.host = {show(server.host)} is not loopback;"
            " without it the server is open to DNS rebinding",
        )
    if server.tls_cert is None and not server.allow_plaintext and not server.trusted_proxies:
        raise ConfigError(
            "server.tls_cert",
            f"wsguard refuses to serve plain ws:// on a non-loopback host ({show(server.host)}):"
            " set server.tls_cert and server.tls_key, or server.trusted_proxies if a proxy"
            " terminates TLS, or (insecure) server.allow_plaintext = true",
        )


def insecure_switches(settings: Settings) -> list[str]:
    """One sentence per insecure switch that is on; the server logs each at start-up."""
    s = settings
    checks = [
        (s.server.allow_plaintext,
         "server.allow_plaintext = true: plain ws:// is accepted from any peer; messages and"
         " credentials cross the network unencrypted."),
        (s.origins.allow_missing,
         "origins.allow_missing = true: handshakes without an Origin header are accepted, so"
         " non-browser clients skip the Origin check."),
        (s.origins.allow_null,
         'origins.allow_null = true: Origin "null" is accepted; any sandboxed iframe or file://'
         " page can send it (cross-site WebSocket hijacking)."),
        (s.origins.allow_any_origin,
         "origins.allow_any_origin = true: any web page can open a WebSocket to this server with"
         " its visitors' cookies (cross-site WebSocket hijacking)."),
        (not s.auth.required,
         "auth.required = false: anonymous clients are accepted."),
        (s.server.echo,
         "server.echo = true: every frame is echoed back and the wire protocol is not enforced;"
         " for conformance runs and benchmarks only."),
        (s.limits.compression,
         "limits.compression = true: permessage-deflate lets an attacker who injects data next to"
         " a secret recover it from compressed sizes (CRIME/BREACH), and costs memory per"
         " connection."),
    ]  # fmt: skip
    return [sentence for on, sentence in checks if on]
