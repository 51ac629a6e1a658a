"""Client address and scheme resolution behind trusted proxies, and the plaintext check."""

from __future__ import annotations

import ipaddress

import pytest
from handshake_factory import handshake

from wsguard.core.decisions import Reject
from wsguard.core.transport import Resolved, TransportPolicy, parse_trusted_proxy
from wsguard.settings import ServerConfig

PLAINTEXT = Reject(403, "Forbidden", "plaintext")
PROXIED = ServerConfig(trusted_proxies=("10.0.0.0/24", "127.0.0.1", "2001:db8::/64"))


def policy(**fields: object) -> TransportPolicy:
    return TransportPolicy(ServerConfig(**fields))  # type: ignore[arg-type]


# ---------------------------------------------------------------- parse_trusted_proxy


@pytest.mark.parametrize(
    ("entry", "network"),
    [
        pytest.param("10.0.0.1", "10.0.0.1/32", id="ipv4"),
        pytest.param("10.0.0.0/8", "10.0.0.0/8", id="cidr"),
        pytest.param("10.0.0.7/24", "10.0.0.0/24", id="host-bits"),
        pytest.param("::1", "::1/128", id="ipv6"),
        pytest.param("2001:db8::/32", "2001:db8::/32", id="ipv6-cidr"),
    ],
)
def test_trusted_proxy_entry_is_an_ip_or_network(entry: str, network: str):
    assert parse_trusted_proxy(entry) == ipaddress.ip_network(network)


@pytest.mark.parametrize("entry", ["not-an-ip", "", "10.0.0.0/33", "10.0.0", "proxy.internal"])
def test_invalid_trusted_proxy_entry_raises_value_error(entry: str):
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        parse_trusted_proxy(entry)


# ---------------------------------------------------------------- resolve


@pytest.mark.parametrize(
    ("peer", "is_tls", "extra", "expected"),
    [
        pytest.param("203.0.113.9", False, [], ("203.0.113.9", "http"), id="plain"),
        pytest.param("203.0.113.9", True, [], ("203.0.113.9", "https"), id="tls"),
        pytest.param(
            "203.0.113.9",
            False,
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "198.51.100.1")],
            ("203.0.113.9", "http"),
            id="untrusted-forwarded-headers-ignored",
        ),
        pytest.param(
            "203.0.113.9",
            True,
            [("X-Forwarded-Proto", "http")],
            ("203.0.113.9", "https"),
            id="untrusted-cannot-downgrade-either",
        ),
        pytest.param("::ffff:203.0.113.9", False, [], ("203.0.113.9", "http"), id="v4-mapped"),
        pytest.param("not-an-ip", False, [], ("not-an-ip", "http"), id="non-ip-peer"),
    ],
)
def test_untrusted_peer_is_the_client_and_tls_decides_the_scheme(
    peer: str, is_tls: bool, extra: list[tuple[str, str]], expected: tuple[str, str]
):
    request = handshake(peer=peer, is_tls=is_tls, extra=extra)
    assert TransportPolicy(PROXIED).resolve(request) == Resolved(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("protos", "is_tls", "scheme"),
    [
        pytest.param(["https"], False, "https", id="https"),
        pytest.param(["HTTPS"], False, "https", id="case-insensitive"),
        pytest.param([" https "], False, "https", id="whitespace"),
        pytest.param(["http"], False, "http", id="http"),
        pytest.param(["http"], True, "http", id="http-over-tls-hop"),
        pytest.param(["http, https"], False, "https", id="list-last-wins"),
        pytest.param(["https, http"], False, "http", id="list-last-http"),
        pytest.param(["https", "https"], False, "http", id="two-fields"),
        pytest.param(["https", "https"], True, "http", id="two-fields-over-tls"),
        pytest.param(["wss"], False, "http", id="other-value"),
        pytest.param([""], False, "http", id="empty"),
        pytest.param(["https\u017f"], False, "http", id="non-ascii"),
        pytest.param([], False, "http", id="missing"),
        pytest.param([], True, "https", id="missing-over-tls-passthrough"),
    ],
)
def test_trusted_proxy_sets_scheme_with_x_forwarded_proto(
    protos: list[str], is_tls: bool, scheme: str
):
    request = handshake(
        peer="10.0.0.5", is_tls=is_tls, extra=[("X-Forwarded-Proto", p) for p in protos]
    )
    assert TransportPolicy(PROXIED).resolve(request).scheme == scheme


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        pytest.param([], "10.0.0.5", id="missing-is-the-peer"),
        pytest.param(["198.51.100.1"], "198.51.100.1", id="one"),
        pytest.param(["1.1.1.1, 198.51.100.1"], "198.51.100.1", id="rightmost-untrusted"),
        pytest.param(["1.1.1.1, 198.51.100.1, 10.0.0.9"], "198.51.100.1", id="skip-trusted"),
        pytest.param(["1.1.1.1", "198.51.100.1, 10.0.0.9"], "198.51.100.1", id="two-fields"),
        pytest.param(["10.0.0.8, 10.0.0.9"], "10.0.0.8", id="all-trusted-leftmost"),
        pytest.param(["garbage, 198.51.100.1"], "198.51.100.1", id="junk-left-of-client"),
        pytest.param(["1.1.1.1, garbage"], "10.0.0.5", id="invalid-falls-back-to-peer"),
        pytest.param(["1.1.1.1, garbage, 10.0.0.9"], "10.0.0.5", id="invalid-after-trusted"),
        pytest.param(["198.51.100.1:4711"], "10.0.0.5", id="with-port-is-invalid"),
        pytest.param([""], "10.0.0.5", id="empty"),
        pytest.param(["2001:DB8:1::1"], "2001:db8:1::1", id="ipv6-normalised"),
        pytest.param(["::ffff:198.51.100.1"], "198.51.100.1", id="v4-mapped"),
        pytest.param(["198.51.100.1, 2001:db8::7"], "198.51.100.1", id="trusted-ipv6-hop"),
    ],
)
def test_trusted_proxy_client_ip_is_rightmost_untrusted_forwarded_for(
    forwarded_for: list[str], client: str
):
    request = handshake(peer="10.0.0.5", extra=[("X-Forwarded-For", v) for v in forwarded_for])
    assert TransportPolicy(PROXIED).resolve(request).client_ip == client


# ---------------------------------------------------------------- check


@pytest.mark.parametrize(
    ("config", "peer", "scheme", "expected"),
    [
        pytest.param(ServerConfig(), "203.0.113.9", "https", None, id="https"),
        pytest.param(ServerConfig(), "127.0.0.1", "http", None, id="loopback-v4"),
        pytest.param(ServerConfig(), "127.8.9.10", "http", None, id="loopback-net"),
        pytest.param(ServerConfig(), "::1", "http", None, id="loopback-v6"),
        pytest.param(ServerConfig(), "::ffff:127.0.0.1", "http", None, id="loopback-v4-mapped"),
        pytest.param(ServerConfig(), "203.0.113.9", "http", PLAINTEXT, id="remote"),
        pytest.param(ServerConfig(), "10.0.0.5", "http", PLAINTEXT, id="private-is-not-loopback"),
        pytest.param(ServerConfig(), "not-an-ip", "http", PLAINTEXT, id="non-ip-peer"),
        pytest.param(PROXIED, "127.0.0.1", "http", PLAINTEXT, id="loopback-proxy-said-http"),
        pytest.param(PROXIED, "10.0.0.5", "http", PLAINTEXT, id="proxy-said-http"),
        pytest.param(PROXIED, "10.0.0.5", "https", None, id="proxy-said-https"),
        pytest.param(
            ServerConfig(allow_plaintext=True), "203.0.113.9", "http", None, id="allow-plaintext"
        ),
    ],
)
def test_plaintext_only_from_loopback_non_proxy_or_when_allowed(
    config: ServerConfig, peer: str, scheme: str, expected: Reject | None
):
    request = handshake(peer=peer)
    assert TransportPolicy(config).check(request, scheme) == expected  # type: ignore[arg-type]


def test_invalid_trusted_proxy_fails_policy_construction():
    with pytest.raises(ValueError, match="not-an-ip"):
        policy(trusted_proxies=("not-an-ip",))
