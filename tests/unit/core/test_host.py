"""Host header parsing, allow-list patterns and the host stage."""

from __future__ import annotations

import pytest

from wsguard.core.decisions import Reject
from wsguard.core.host import HostPattern, HostPolicy, HostPort, parse_host, parse_host_pattern

# ---------------------------------------------------------------- parse_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("example.com", ("example.com", None), id="name"),
        pytest.param("Example.COM", ("example.com", None), id="uppercase-lowered"),
        pytest.param("example.com.", ("example.com", None), id="trailing-dot-stripped"),
        pytest.param("example.com:8443", ("example.com", 8443), id="name-port"),
        pytest.param("example.com.:443", ("example.com", 443), id="trailing-dot-port"),
        pytest.param("localhost", ("localhost", None), id="single-label"),
        pytest.param("a-b.x1.example", ("a-b.x1.example", None), id="inner-hyphen-digits"),
        pytest.param("xn--bcher-kva.example", ("xn--bcher-kva.example", None), id="punycode"),
        pytest.param("127.0.0.1", ("127.0.0.1", None), id="ipv4"),
        pytest.param("127.0.0.1:1", ("127.0.0.1", 1), id="ipv4-port-1"),
        pytest.param("10.0.0.1.:65535", ("10.0.0.1", 65535), id="ipv4-trailing-dot-max-port"),
        pytest.param("[::1]", ("[::1]", None), id="ipv6"),
        pytest.param("[::1]:8080", ("[::1]", 8080), id="ipv6-port"),
        pytest.param("[0:0:0:0:0:0:0:1]", ("[::1]", None), id="ipv6-compressed"),
        pytest.param("[2001:DB8::A]", ("[2001:db8::a]", None), id="ipv6-lowered"),
        pytest.param("example.com:080", ("example.com", 80), id="port-leading-zero"),
        pytest.param("a" * 63 + ".com", ("a" * 63 + ".com", None), id="label-63"),
    ],
)
def test_valid_host_is_parsed_and_normalised(value: str, expected: tuple[str, int | None]):
    assert parse_host(value) == HostPort(*expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="only-dot"),
        pytest.param("example.com..", id="two-trailing-dots"),
        pytest.param("a..example.com", id="empty-label"),
        pytest.param(".example.com", id="leading-dot"),
        pytest.param("user@example.com", id="userinfo"),
        pytest.param("example.com/path", id="path"),
        pytest.param("example.com?q", id="query"),
        pytest.param("example .com", id="inner-space"),
        pytest.param(" example.com", id="leading-space"),
        pytest.param("example.com ", id="trailing-space"),
        pytest.param("example.com\n", id="newline"),
        pytest.param("bücher.example", id="non-ascii"),
        pytest.param("exa_mple.com", id="underscore"),
        pytest.param("-example.com", id="leading-hyphen"),
        pytest.param("example-.com", id="trailing-hyphen"),
        pytest.param("a" * 64 + ".com", id="label-64"),
        pytest.param(".".join(["a" * 50] * 5) + ".com", id="name-over-253"),
        pytest.param("example.com:", id="empty-port"),
        pytest.param("example.com:0", id="port-zero"),
        pytest.param("example.com:65536", id="port-too-large"),
        pytest.param("example.com:123456", id="port-six-digits"),
        pytest.param("example.com:+80", id="port-sign"),
        pytest.param("example.com:8a", id="port-letters"),
        pytest.param("example.com:\u0661", id="port-non-ascii-digit"),
        pytest.param("example.com:80:80", id="two-ports"),
        pytest.param(":80", id="port-only"),
        pytest.param("127.1", id="short-ipv4"),
        pytest.param("0x7f.0.0.1", id="hex-ipv4"),
        pytest.param("127.000.0.1", id="ipv4-leading-zeros"),
        pytest.param("256.0.0.1", id="ipv4-octet-too-large"),
        pytest.param("example.123", id="numeric-tld"),
        pytest.param("::1", id="unbracketed-ipv6"),
        pytest.param("[::1", id="unclosed-bracket"),
        pytest.param("[]", id="empty-brackets"),
        pytest.param("[::1]x", id="junk-after-bracket"),
        pytest.param("[::1]:", id="ipv6-empty-port"),
        pytest.param("[fe80::1%eth0]", id="ipv6-zone-id"),
        pytest.param("[v1.fe]", id="ipvfuture"),
        pytest.param("[127.0.0.1]", id="bracketed-ipv4"),
        pytest.param("[example.com]", id="bracketed-name"),
    ],
)
def test_malformed_host_raises_value_error(value: str):
    with pytest.raises(ValueError, match=r"\S"):
        parse_host(value)


# ---------------------------------------------------------------- parse_host_pattern


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param("example.com", HostPattern("example.com"), id="exact"),
        pytest.param("Example.COM.", HostPattern("example.com"), id="normalised"),
        pytest.param("example.com:8443", HostPattern("example.com", 8443), id="with-port"),
        pytest.param("*.example.com", HostPattern("example.com", None, True), id="wildcard"),
        pytest.param("*.example.com:8443", HostPattern("example.com", 8443, True), id="wc-port"),
        pytest.param("*.localhost", HostPattern("localhost", None, True), id="wc-localhost"),
        pytest.param("[::1]:9000", HostPattern("[::1]", 9000), id="ipv6"),
    ],
)
def test_valid_host_pattern_is_parsed(entry: str, expected: HostPattern):
    assert parse_host_pattern(entry) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param("*example.com", "leftmost label", id="partial-label-wildcard"),
        pytest.param("a.*.com", "leftmost label", id="inner-wildcard"),
        pytest.param("*", "leftmost label", id="bare-star"),
        pytest.param("*.*.example.com", "invalid label", id="two-wildcards"),
        pytest.param("*.com", "whole TLD", id="wildcard-over-tld"),
        pytest.param("*.127.0.0.1", "IP address", id="wildcard-over-ipv4"),
        pytest.param("*.[::1]", "IP address", id="wildcard-over-ipv6"),
        pytest.param("", "empty", id="empty"),
        pytest.param("https://example.com", "a path", id="url-not-host"),
        pytest.param("user@example.com", "userinfo", id="userinfo"),
        pytest.param("example.com:0", "outside", id="port-zero"),
    ],
)
def test_invalid_host_pattern_raises_value_error_saying_why(entry: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_host_pattern(entry)


# ---------------------------------------------------------------- HostPolicy.check

ALLOWED = ("app.example.com", "api.example.com:8443", "*.tenants.example.com")


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        pytest.param("app.example.com", "https", ("app.example.com", None), id="exact"),
        pytest.param("APP.Example.com.", "https", ("app.example.com", None), id="case-dot"),
        pytest.param("app.example.com:443", "https", ("app.example.com", 443), id="https-default"),
        pytest.param("app.example.com:80", "http", ("app.example.com", 80), id="http-default"),
        pytest.param("api.example.com:8443", "https", ("api.example.com", 8443), id="own-port"),
        pytest.param("a.tenants.example.com", "https", ("a.tenants.example.com", None), id="wc"),
        pytest.param(
            "a.b.tenants.example.com", "https", ("a.b.tenants.example.com", None), id="wc-deep"
        ),
    ],
)
def test_allowed_host_passes_with_its_parsed_form(
    host: str, scheme: str, expected: tuple[str, int | None]
):
    policy = HostPolicy(ALLOWED, loopback_bound=False)
    assert policy.check((host,), scheme) == HostPort(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        pytest.param("evil.test", "https", id="other-name"),
        pytest.param("app.example.com.evil.test", "https", id="allowed-as-prefix"),
        pytest.param("evilapp.example.com", "https", id="allowed-as-suffix"),
        pytest.param("example.com", "https", id="parent-domain"),
        pytest.param("app.example.com:8443", "https", id="unlisted-port"),
        pytest.param("app.example.com:443", "http", id="https-port-over-http"),
        pytest.param("app.example.com:80", "https", id="http-port-over-https"),
        pytest.param("api.example.com", "https", id="listed-port-missing"),
        pytest.param("api.example.com:443", "https", id="listed-port-other"),
        pytest.param("tenants.example.com", "https", id="wildcard-apex"),
        pytest.param("eviltenants.example.com", "https", id="wildcard-suffix-not-label"),
        pytest.param("localhost", "http", id="loopback-not-implicit-with-list"),
        pytest.param("127.0.0.1", "http", id="loopback-ip-not-implicit-with-list"),
    ],
)
def test_unlisted_host_is_rejected_400(host: str, scheme: str):
    policy = HostPolicy(ALLOWED, loopback_bound=True)
    assert policy.check((host,), scheme) == Reject(  # type: ignore[arg-type]
        400, "Bad Request", "host_not_allowed"
    )


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("localhost", id="localhost"),
        pytest.param("LOCALHOST.:8080", id="localhost-normalised-port"),
        pytest.param("127.0.0.1:1234", id="ipv4-any-port"),
        pytest.param("[::1]:80", id="ipv6"),
        pytest.param("[0::1]", id="ipv6-long-form"),
    ],
)
def test_loopback_bound_empty_list_allows_loopback_names_on_any_port(host: str):
    assert isinstance(HostPolicy((), loopback_bound=True).check((host,), "http"), HostPort)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("evil.test", id="dns-rebinding-name"),
        pytest.param("127.0.0.2", id="other-loopback-address"),
        pytest.param("app.localhost", id="subdomain-of-localhost"),
        pytest.param("0.0.0.0", id="unspecified"),  # noqa: S104 - a Host value, not a bind
    ],
)
def test_loopback_bound_empty_list_refuses_other_names(host: str):
    result = HostPolicy((), loopback_bound=True).check((host,), "http")
    assert result == Reject(400, "Bad Request", "host_not_allowed")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "example.com"])
def test_public_empty_list_refuses_everything(host: str):
    result = HostPolicy((), loopback_bound=False).check((host,), "https")
    assert result == Reject(400, "Bad Request", "host_not_allowed")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        pytest.param((), "missing_host", id="absent"),
        pytest.param(("",), "missing_host", id="empty"),
        pytest.param(("app.example.com", "app.example.com"), "duplicate_header", id="two"),
        pytest.param(("app.example.com:99999",), "host_malformed", id="bad-port"),
        pytest.param(("user@app.example.com",), "host_malformed", id="userinfo"),
    ],
)
def test_missing_duplicate_or_malformed_host_is_rejected_400(values: tuple[str, ...], reason: str):
    policy = HostPolicy(ALLOWED, loopback_bound=False)
    assert policy.check(values, "https") == Reject(400, "Bad Request", reason)


def test_invalid_allowed_host_entry_fails_policy_construction():
    with pytest.raises(ValueError, match="leftmost label"):
        HostPolicy(("a.*.com",), loopback_bound=False)
