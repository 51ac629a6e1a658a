"""Origin serialization, allow-list patterns and the origin stage (the CSWSH defence)."""

from __future__ import annotations

import pytest

from wsguard.core.decisions import Reject
from wsguard.core.host import Scheme
from wsguard.core.origin import (
    Origin,
    OriginPattern,
    OriginPolicy,
    has_ambient_credentials,
    parse_origin_pattern,
    serialize_origin,
)
from wsguard.core.upgrade import Headers
from wsguard.settings import OriginsConfig

# ---------------------------------------------------------------- serialize_origin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("https://app.example.com", "https://app.example.com", id="plain"),
        pytest.param("HTTPS://App.Example.COM.:443", "https://app.example.com", id="spec-example"),
        pytest.param("http://example.com:80", "http://example.com", id="http-default-port"),
        pytest.param("https://example.com:8443", "https://example.com:8443", id="custom-port"),
        pytest.param("http://example.com:443", "http://example.com:443", id="https-port-on-http"),
        pytest.param("https://example.com:80", "https://example.com:80", id="http-port-on-https"),
        pytest.param("http://127.0.0.1:8080", "http://127.0.0.1:8080", id="ipv4"),
        pytest.param("http://[::1]:8080", "http://[::1]:8080", id="ipv6"),
        pytest.param("http://[0:0::1]:80", "http://[::1]", id="ipv6-normalised"),
        pytest.param("https://xn--bcher-kva.example", "https://xn--bcher-kva.example", id="idn"),
        pytest.param("http://localhost:3000", "http://localhost:3000", id="localhost"),
    ],
)
def test_origin_is_serialized_per_rfc6454(value: str, expected: str):
    assert serialize_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("null", id="null-is-not-parsed-here"),
        pytest.param("app.example.com", id="no-scheme"),
        pytest.param("//app.example.com", id="scheme-relative"),
        pytest.param("ftp://app.example.com", id="ftp"),
        pytest.param("ws://app.example.com", id="ws-scheme"),
        pytest.param("file://", id="file"),
        pytest.param("https://", id="no-host"),
        pytest.param("https://app.example.com/", id="trailing-slash"),
        pytest.param("https://app.example.com/path", id="path"),
        pytest.param("https://app.example.com?x", id="query"),
        pytest.param("https://app.example.com#x", id="fragment"),
        pytest.param("https://app.example.com@evil.test", id="userinfo"),
        pytest.param("https://user:pw@app.example.com", id="userinfo-password"),
        pytest.param(" https://app.example.com", id="leading-space"),
        pytest.param("https://app.example.com ", id="trailing-space"),
        pytest.param("https://app.example.com\t", id="trailing-tab"),
        pytest.param("https://app .example.com", id="inner-space"),
        pytest.param("https://bücher.example", id="idn-unicode"),
        pytest.param("https://\u0430pp.example.com", id="cyrillic-homoglyph"),
        pytest.param("https://app.example.com:", id="empty-port"),
        pytest.param("https://app.example.com:0", id="port-zero"),
        pytest.param("https://app.example.com:65536", id="port-too-large"),
        pytest.param("https://app.example.com..", id="two-trailing-dots"),
        pytest.param("https://*.example.com", id="wildcard-is-not-an-origin"),
        pytest.param("https://127.1", id="short-ipv4"),
        pytest.param("https://app.example.com, https://evil.test", id="list"),
    ],
)
def test_malformed_origin_raises_value_error(value: str):
    with pytest.raises(ValueError, match=r"\S"):
        serialize_origin(value)


# ---------------------------------------------------------------- parse_origin_pattern


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param("https://app.example.com", OriginPattern("https", "app.example.com"), id="x"),
        pytest.param(
            "HTTP://LOCALHOST:3000", OriginPattern("http", "localhost", 3000), id="normalised"
        ),
        pytest.param(
            "https://app.example.com:443", OriginPattern("https", "app.example.com"), id="default"
        ),
        pytest.param(
            "https://*.example.com", OriginPattern("https", "example.com", None, True), id="wc"
        ),
        pytest.param(
            "HTTPS://*.Example.com:8443",
            OriginPattern("https", "example.com", 8443, True),
            id="wildcard-port",
        ),
    ],
)
def test_valid_origin_pattern_is_parsed(entry: str, expected: OriginPattern):
    assert parse_origin_pattern(entry) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param("*", "origins.allow_any_origin", id="bare-star"),
        pytest.param(" * ", "origins.allow_any_origin", id="bare-star-spaced"),
        pytest.param("null", "origins.allow_null", id="null"),
        pytest.param("http://*.example.com", "need https", id="http-wildcard"),
        pytest.param("https://*example.com", "leftmost label", id="partial-label"),
        pytest.param("https://a.*.example.com", "leftmost label", id="inner-label"),
        pytest.param("*.example.com", "leftmost label", id="no-scheme"),
        pytest.param("https://*.*.example.com", "invalid label", id="double-wildcard"),
        pytest.param("https://*.com", "whole TLD", id="tld"),
        pytest.param("https://*.10.0.0.1", "IP address", id="ip"),
        pytest.param("https://*.example.com/", "path", id="wildcard-path"),
        pytest.param("https://app.example.com/", "path", id="trailing-slash"),
        pytest.param("app.example.com", "scheme://host", id="host-only"),
        pytest.param("wss://app.example.com", "http or https", id="wss"),
    ],
)
def test_invalid_origin_pattern_raises_value_error_saying_why(entry: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_origin_pattern(entry)


# ---------------------------------------------------------------- OriginPolicy


def check(
    config: OriginsConfig,
    *values: str,
    scheme: Scheme = "https",
    host: str = "app.example.com",
    port: int | None = None,
    credentials: bool = False,
) -> Origin | Reject | None:
    return OriginPolicy(config).check(
        values, scheme=scheme, host=host, port=port, credentials=credentials
    )


def forbidden(reason: str) -> Reject:
    return Reject(403, "Forbidden", reason)


EXACT = OriginsConfig(allowed=("https://app.example.com",))
WILDCARD = OriginsConfig(allowed=("https://*.example.com",))


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        pytest.param("https://app.example.com.evil.test", "origin_not_allowed", id="as-prefix"),
        pytest.param("https://evilapp.example.com", "origin_not_allowed", id="as-suffix"),
        pytest.param("https://app.example.co", "origin_not_allowed", id="truncated"),
        pytest.param("https://example.com", "origin_not_allowed", id="parent"),
        pytest.param("https://x.app.example.com", "origin_not_allowed", id="subdomain"),
        pytest.param("http://app.example.com", "origin_not_allowed", id="scheme-flip"),
        pytest.param("https://app.example.com:8443", "origin_not_allowed", id="port-mismatch"),
        pytest.param("http://app.example.com:443", "origin_not_allowed", id="https-port-on-http"),
        pytest.param("https://app.example.com@evil.test", "origin_malformed", id="userinfo"),
        pytest.param("https://evil.test@app.example.com", "origin_malformed", id="userinfo-2"),
        pytest.param("https://app.example.com/", "origin_malformed", id="trailing-slash"),
        pytest.param("https://app.example.com/path", "origin_malformed", id="path"),
        pytest.param(" https://app.example.com", "origin_malformed", id="whitespace"),
        pytest.param("https://app.example.com\r", "origin_malformed", id="carriage-return"),
        pytest.param("https://\u0430pp.example.com", "origin_malformed", id="homoglyph"),
        pytest.param("https://app.ex\u0430mple.com", "origin_malformed", id="non-ascii"),
        pytest.param("https://app.example.com.evil.test/", "origin_malformed", id="prefix-path"),
        pytest.param("NULL", "origin_malformed", id="null-uppercase"),
        pytest.param("null", "origin_null", id="null"),
        pytest.param("file://", "origin_malformed", id="file"),
    ],
)
def test_bypass_shape_is_refused_against_exact_allowed_origin(origin: str, reason: str):
    assert check(EXACT, origin) == forbidden(reason)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        pytest.param("https://app.example.com", "https://app.example.com", id="exact"),
        pytest.param("HTTPS://APP.EXAMPLE.COM", "https://app.example.com", id="uppercase"),
        pytest.param("https://app.example.com.", "https://app.example.com", id="trailing-dot"),
        pytest.param("https://app.example.com:443", "https://app.example.com", id="default-port"),
    ],
)
def test_normalised_spelling_of_allowed_origin_is_accepted(origin: str, expected: str):
    assert check(EXACT, origin) == expected


def test_punycode_origin_is_accepted_when_listed():
    config = OriginsConfig(allowed=("https://xn--bcher-kva.example",))
    assert check(config, "https://xn--bcher-kva.example") == "https://xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        pytest.param("https://evilexample.com", "origin_not_allowed", id="suffix-not-label"),
        pytest.param("https://example.com", "origin_not_allowed", id="apex"),
        pytest.param("https://example.com.evil.test", "origin_not_allowed", id="as-prefix"),
        pytest.param("https://app.example.com.evil.test", "origin_not_allowed", id="sub-prefix"),
        pytest.param("http://app.example.com", "origin_not_allowed", id="http"),
        pytest.param("https://app.example.com:8443", "origin_not_allowed", id="port"),
        pytest.param("https://app.example.com@evil.test", "origin_malformed", id="userinfo"),
    ],
)
def test_bypass_shape_is_refused_against_wildcard(origin: str, reason: str):
    assert check(WILDCARD, origin) == forbidden(reason)


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://app.example.com", id="one-label"),
        pytest.param("https://a.b.example.com", id="two-labels"),
        pytest.param("https://APP.example.com.:443", id="normalised"),
    ],
)
def test_wildcard_matches_one_or_more_whole_labels(origin: str):
    assert check(WILDCARD, origin) == serialize_origin(origin)


def test_wildcard_with_port_matches_only_that_port():
    config = OriginsConfig(allowed=("https://*.example.com:8443",))
    assert check(config, "https://a.example.com:8443") == "https://a.example.com:8443"
    assert check(config, "https://a.example.com") == forbidden("origin_not_allowed")


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "port", "expected"),
    [
        pytest.param("https://app.example.com", "https", "app.example.com", None, True, id="ok"),
        pytest.param("https://app.example.com", "https", "app.example.com", 443, True, id="443"),
        pytest.param("https://app.example.com:443", "https", "app.example.com", None, True, id="o"),
        pytest.param("http://127.0.0.1:8080", "http", "127.0.0.1", 8080, True, id="loopback"),
        pytest.param("http://app.example.com", "http", "app.example.com", 80, True, id="http-80"),
        pytest.param("http://app.example.com", "https", "app.example.com", None, False, id="sch"),
        pytest.param("https://app.example.com", "http", "app.example.com", None, False, id="sc2"),
        pytest.param("http://127.0.0.1:9999", "http", "127.0.0.1", 8080, False, id="port"),
        pytest.param("http://127.0.0.1", "http", "127.0.0.1", 8080, False, id="port-missing"),
        pytest.param("http://localhost:8080", "http", "127.0.0.1", 8080, False, id="other-name"),
        pytest.param("https://evil.test", "https", "app.example.com", None, False, id="foreign"),
        pytest.param(
            "https://app.example.com:8443", "https", "app.example.com", None, False, id="extra"
        ),
    ],
)
def test_empty_allow_list_means_same_origin(
    origin: str, scheme: Scheme, host: str, port: int | None, expected: bool
):
    result = check(OriginsConfig(), origin, scheme=scheme, host=host, port=port)
    assert result == (serialize_origin(origin) if expected else forbidden("origin_not_allowed"))


@pytest.mark.parametrize(
    ("config", "credentials", "expected"),
    [
        pytest.param(OriginsConfig(), False, forbidden("origin_missing"), id="default"),
        pytest.param(OriginsConfig(allow_missing=True), False, None, id="allowed"),
        pytest.param(
            OriginsConfig(allow_missing=True),
            True,
            forbidden("origin_missing_with_credentials"),
            id="allowed-but-credentials",
        ),
        pytest.param(
            OriginsConfig(),
            True,
            forbidden("origin_missing_with_credentials"),
            id="default-with-credentials",
        ),
        pytest.param(
            OriginsConfig(allow_any_origin=True), False, forbidden("origin_missing"), id="any"
        ),
    ],
)
def test_missing_origin_follows_allow_missing_but_never_with_credentials(
    config: OriginsConfig, credentials: bool, expected: Reject | None
):
    assert check(config, credentials=credentials) == expected


@pytest.mark.parametrize(
    ("config", "credentials", "expected"),
    [
        pytest.param(OriginsConfig(), False, forbidden("origin_null"), id="default"),
        pytest.param(OriginsConfig(allow_null=True), False, "null", id="allowed"),
        pytest.param(
            OriginsConfig(allow_null=True), True, forbidden("origin_null"), id="credentials"
        ),
        pytest.param(
            OriginsConfig(allow_any_origin=True), False, forbidden("origin_null"), id="any-origin"
        ),
    ],
)
def test_null_origin_follows_allow_null_but_never_with_credentials(
    config: OriginsConfig, credentials: bool, expected: Reject | str
):
    assert check(config, "null", credentials=credentials) == expected


def test_two_origin_fields_are_rejected_as_duplicate_header():
    result = check(EXACT, "https://app.example.com", "https://app.example.com")
    assert result == Reject(400, "Bad Request", "duplicate_header")


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        pytest.param("https://evil.test", "https://evil.test", id="foreign"),
        pytest.param("HTTP://Evil.Test.:80", "http://evil.test", id="serialized"),
        pytest.param("https://evil.test/", forbidden("origin_malformed"), id="malformed"),
    ],
)
def test_allow_any_origin_accepts_any_well_formed_origin(origin: str, expected: str | Reject):
    assert check(OriginsConfig(allow_any_origin=True), origin) == expected


def test_invalid_allowed_origin_entry_fails_policy_construction():
    with pytest.raises(ValueError, match="need https"):
        OriginPolicy(OriginsConfig(allowed=("http://*.example.com",)))


# ---------------------------------------------------------------- ambient credentials


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param([], False, id="none"),
        pytest.param([("Cookie", "sid=1")], True, id="cookie"),
        pytest.param([("cookie", "")], True, id="empty-cookie"),
        pytest.param([("Authorization", "Basic dTpw")], True, id="basic"),
        pytest.param([("Authorization", "basic dTpw")], True, id="basic-lowercase"),
        pytest.param([("Authorization", "Bearer x"), ("Authorization", "Basic y")], True, id="2"),
        pytest.param([("Authorization", "Bearer eyJ")], False, id="bearer"),
        pytest.param([("Authorization", "")], False, id="empty-authorization"),
        pytest.param([("X-Cookie", "a")], False, id="other-header"),
    ],
)
def test_ambient_credentials_are_cookies_and_basic_auth(
    fields: list[tuple[str, str]], expected: bool
):
    assert has_ambient_credentials(Headers(fields)) is expected
