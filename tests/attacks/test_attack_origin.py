"""Group ORG: Origin checks and Cross-Site WebSocket Hijacking (CSWSH).

The server compares the ``Origin`` of every handshake with ``origins.allowed`` as serialized
origins (RFC 6454 §6.2): exact scheme, host and port, never by prefix, suffix, substring or
regex. Missing and ``null`` origins are refused by default; a request with ambient credentials
(a cookie or HTTP Basic) and no Origin is always refused; two Origin fields are a 400; anything
that is not ``scheme://host[:port]`` is ``origin_malformed``. The origin stage runs before
authentication, so a valid credential never rescues a foreign Origin (docs/reference/codes.md:
"Checks run cheapest first; the first refusal wins"). Proxy headers from an untrusted peer change
nothing. Every refusal is checked for its exact status, its audit reason, no 101, and a closed
connection with nothing after the response.

Cases (catalog ids of ../shared/research/security-references.md §4):

    ORG-01  control: the trusted origin with a ticket is accepted (101, welcome)
    ORG-02  no Origin                                      403 origin_missing
    ORG-03  Origin: null                                   403 origin_null ("NULL": malformed)
    ORG-04  a foreign origin                               403 origin_not_allowed
    ORG-05  suffix look-alike (app.example.test.evil...)   403 origin_not_allowed
    ORG-06  prefix look-alike (evilapp.example.test)       403 origin_not_allowed
    ORG-07  trusted host inside a foreign origin (path, userinfo, query, fragment)
                                                           403 origin_malformed
    ORG-08  unescaped regex dot (appXexampleXtest)         403 origin_not_allowed
    ORG-09  scheme flip (http://, ws://, wss://)           403 origin_not_allowed / malformed
    ORG-10  another port (:8443, :80, :444)                403 origin_not_allowed
    ORG-11  arbitrary subdomain (x.app.example.test)       403 origin_not_allowed
    ORG-12  whitespace, control characters, NUL            400 malformed_request / 403 ...
    ORG-13  two Origin fields (RFC 6454 §7.3)              400 duplicate_header
            (a second one under a mangled name 400 malformed_request; a list 403 malformed)
    ORG-14  not a serialized origin (path, '/', no scheme) 403 origin_malformed
    ORG-15  equivalent spellings of the trusted origin (case, :443, trailing dot) are that
            origin: accepted, and Access-Control-Allow-Origin is the serialized origin
    ORG-16  Safari odd characters after the host (WS-2020-0443)  403 origin_malformed
    ORG-17  IDN homograph: punycode not_allowed, raw Unicode malformed
    ORG-18  a 7 KiB Origin 403 origin_malformed; a 9 KiB one 431 request_too_large
    ORG-19  substitutes for Origin (Sec-WebSocket-Origin of hybi-08, Referer) are ignored:
            403 origin_missing / origin_not_allowed; a whole hybi-08 handshake 426 bad_version
    ORG-20  same-origin mode (origins.allowed = []): the Origin derived from the Host is
            trusted only once the Host passed its allow-list (CVE-2018-7160 class)
    ORG-21  full CSWSH with ambient credentials (cookie, Basic): foreign or missing Origin
            403 before authentication (CVE-2023-0957, CVE-2024-23898, CVE-2020-14368),
            also with origins.allow_missing / allow_null on (403
            origin_missing_with_credentials / origin_null)
    ORG-22  X-Forwarded-Host / Forwarded / X-Forwarded-Proto from an untrusted peer change
            nothing (GHSA-mx8g-39q3-5c79)

Extra servers (module-scoped): ``same_origin`` (``origins.allowed = []``, ORG-20/22) and
``relaxed`` (``origins.allow_missing`` and ``allow_null`` on, ORG-21).

Harness note: ``refused()`` (tests/support/attack.py) reads the handshake audit event of the
connection's own source address (``peer``) from the log, a stricter form of
``target.audit_reasons``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.attack import (
    TRUSTED,
    AttackTarget,
    handshake_event,
    next_ip,
    open_session,
    query_ticket,
    refused,
    request,
    serve,
)

pytestmark = pytest.mark.integration

EVIL = "https://evil.example"
COOKIE = "__Host-session"
PLACEHOLDER = "ORIGIN-PLACEHOLDER"


# -- helpers ---------------------------------------------------------------------------------


def attack(target: AttackTarget, origin: str | None, **kwargs: Any) -> bytes:
    """BASE with ``origin``, carrying a valid ticket: only the Origin can be the reason."""
    kwargs.setdefault("query", query_ticket(target))
    return request(origin=origin, **kwargs)


def with_origin_bytes(target: AttackTarget, value: bytes) -> bytes:
    """BASE whose Origin value is exactly ``value`` (bytes no ``str`` header could carry)."""
    raw = attack(target, PLACEHOLDER)
    assert raw.count(PLACEHOLDER.encode()) == 1
    return raw.replace(PLACEHOLDER.encode(), value)


# -- ORG-01..11: the allow-list --------------------------------------------------------------


async def test_org_01_trusted_origin_is_accepted(target: AttackTarget) -> None:
    """Control: the trusted origin with a valid ticket gets 101, so every 403 below is the
    Origin's doing."""
    ip = next_ip()
    since = target.log_size()
    session = await open_session(target, "alice", ip=ip)
    assert session.response.header("access-control-allow-origin") == TRUSTED
    assert session.response.header("vary") == "Origin"
    event = await handshake_event(target, ip, since)
    assert event["event"] == "handshake_accepted", event
    assert (event["origin"], event["user"]) == (TRUSTED, "alice"), event
    assert (await session.call("ping"))["ok"] is True


async def test_org_02_missing_origin(target: AttackTarget) -> None:
    """No Origin is refused by default (gorilla CheckOrigin default; PYSEC-2026-3483;
    CVE-2025-52882: loopback is not a mitigation)."""
    event = await refused(target, attack(target, None), 403, "origin_missing")
    assert "origin" not in event


@pytest.mark.parametrize(
    ("value", "reason"),
    [("null", "origin_null"), ("NULL", "origin_malformed"), ("null, null", "origin_malformed")],
    ids=["ORG-03", "ORG-03-uppercase", "ORG-03-list"],
)
async def test_org_03_null_origin(target: AttackTarget, value: str, reason: str) -> None:
    """``Origin: null`` (sandboxed iframe, file: page — any site can produce it) is refused;
    spellings that are not exactly ``null`` are not an origin either."""
    await refused(target, attack(target, value), 403, reason)


@pytest.mark.parametrize(
    "origin",
    [
        EVIL,
        "http://evil.example",
        "https://evil.example:8443",
        "http://127.0.0.1",
        "http://localhost",
        "http://[::1]:8080",
    ],
    ids=[
        "ORG-04-https",
        "ORG-04-http",
        "ORG-04-port",
        "ORG-04-loopback-ip",
        "ORG-04-localhost",
        "ORG-04-ipv6",
    ],
)
async def test_org_04_foreign_origin(target: AttackTarget, origin: str) -> None:
    """A foreign page's origin is refused (CVE-2020-28481, CVE-2019-13611, CVE-2023-0957,
    CVE-2023-26114, CVE-2018-14732, CVE-2026-44211, CVE-2023-30856)."""
    event = await refused(target, attack(target, origin), 403, "origin_not_allowed")
    assert event["origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.test.evil.example",
        "https://app.example.test.example",
        "https://app.example.testevil.example",
        "https://app.example.tes",
    ],
    ids=["ORG-05-dot-suffix", "ORG-05-tld-suffix", "ORG-05-glued", "ORG-05-truncated"],
)
async def test_org_05_suffix_lookalike(target: AttackTarget, origin: str) -> None:
    """The trusted origin as a prefix of a foreign host (startswith matching; STEWS)."""
    await refused(target, attack(target, origin), 403, "origin_not_allowed")


@pytest.mark.parametrize(
    "origin",
    ["https://evilapp.example.test", "https://evil-app.example.test", "https://pp.example.test"],
    ids=["ORG-06-glued", "ORG-06-hyphen", "ORG-06-shorter"],
)
async def test_org_06_prefix_lookalike(target: AttackTarget, origin: str) -> None:
    """A foreign host ending with the trusted host (endswith matching)."""
    await refused(target, attack(target, origin), 403, "origin_not_allowed")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example/app.example.test",
        "https://app.example.test@evil.example",
        "https://evil.example?app.example.test",
        "https://evil.example#app.example.test",
        "https://evil.example/https://app.example.test",
    ],
    ids=["ORG-07-path", "ORG-07-userinfo", "ORG-07-query", "ORG-07-fragment", "ORG-07-nested"],
)
async def test_org_07_trusted_host_inside_foreign_origin(target: AttackTarget, origin: str) -> None:
    """The trusted host as a substring of a foreign origin (substring / URL-parser confusion)."""
    await refused(target, attack(target, origin), 403, "origin_malformed")


@pytest.mark.parametrize(
    "origin",
    ["https://appXexampleXtest", "https://appAexample.test", "https://app-example.test"],
    ids=["ORG-08-both-dots", "ORG-08-first-dot", "ORG-08-hyphen"],
)
async def test_org_08_unescaped_regex_dot(target: AttackTarget, origin: str) -> None:
    """Dots of the trusted host replaced (a regex allow-list with an unescaped '.'; STEWS)."""
    await refused(target, attack(target, origin), 403, "origin_not_allowed")


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("http://app.example.test", "origin_not_allowed"),
        ("ws://app.example.test", "origin_malformed"),
        ("wss://app.example.test", "origin_malformed"),
        ("ftp://app.example.test", "origin_malformed"),
    ],
    ids=["ORG-09-http", "ORG-09-ws", "ORG-09-wss", "ORG-09-ftp"],
)
async def test_org_09_scheme_flip(target: AttackTarget, origin: str, reason: str) -> None:
    """The trusted host over another scheme: a plaintext page is another origin (MITM)."""
    await refused(target, attack(target, origin), 403, reason)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.test:8443",
        "https://app.example.test:80",
        "https://app.example.test:444",
    ],
    ids=["ORG-10-8443", "ORG-10-80", "ORG-10-444"],
)
async def test_org_10_another_port(target: AttackTarget, origin: str) -> None:
    """The trusted host on another port is another origin (RFC 6454 §4: the port counts)."""
    await refused(target, attack(target, origin), 403, "origin_not_allowed")


@pytest.mark.parametrize(
    "origin",
    ["https://x.app.example.test", "https://a.b.app.example.test", "https://example.test"],
    ids=["ORG-11-subdomain", "ORG-11-deep-subdomain", "ORG-11-parent"],
)
async def test_org_11_arbitrary_subdomain(target: AttackTarget, origin: str) -> None:
    """A subdomain (or the parent) of the trusted host is not listed (STEWS test.<host>)."""
    await refused(target, attack(target, origin), 403, "origin_not_allowed")


# -- ORG-12..19: parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (b"https://app.example.test\x00", 400, "malformed_request"),
        (b"https://app.example.test\x00.evil.example", 400, "malformed_request"),
        (b"https://app.example.test\x0b", 400, "malformed_request"),
        (b"https://app.example.test\x1b[2J", 400, "malformed_request"),
        (b"https://app.example.test\x7f", 400, "malformed_request"),
        (b"https://app.example.test\rX-Evil: 1", 400, "malformed_request"),
        (b"https://evil.example\nX-Evil: 1", 400, "malformed_request"),
        (b"https://evil.example\r\n https://app.example.test", 400, "malformed_request"),
        (b"https://app.example.test evil.example", 403, "origin_malformed"),
        (b"https://app.example.test\t.evil.example", 403, "origin_malformed"),
        (b"https://app.example.test%00.evil.example", 403, "origin_malformed"),
        (b"https://app.example.test\xff", 403, "origin_malformed"),
    ],
    ids=[
        "ORG-12-nul",
        "ORG-12-nul-mid",
        "ORG-12-vt",
        "ORG-12-esc",
        "ORG-12-del",
        "ORG-12-bare-cr",
        "ORG-12-bare-lf",
        "ORG-12-obs-fold",
        "ORG-12-space",
        "ORG-12-tab",
        "ORG-12-pct-nul",
        "ORG-12-obs-text",
    ],
)
async def test_org_12_control_characters(
    target: AttackTarget, value: bytes, status: int, reason: str
) -> None:
    """Whitespace, control characters and NUL in the Origin are refused without a crash
    (CVE-2026-14631: a malformed Origin raised an uncaught exception)."""
    await refused(target, with_origin_bytes(target, value), status, reason)


@pytest.mark.parametrize(
    ("headers", "origin"),
    [
        ([("Origin", EVIL)], TRUSTED),
        ([("Origin", TRUSTED)], EVIL),
        ([("Origin", TRUSTED)], TRUSTED),
        ([("origin", EVIL)], TRUSTED),
        ([("ORIGIN", EVIL)], TRUSTED),
    ],
    ids=[
        "ORG-13-trusted-first",
        "ORG-13-evil-first",
        "ORG-13-same-twice",
        "ORG-13-lowercase",
        "ORG-13-uppercase",
    ],
)
async def test_org_13_two_origin_fields(
    target: AttackTarget, headers: list[tuple[str, str]], origin: str
) -> None:
    """Two Origin fields (RFC 6454 §7.3): a proxy and the server could each read another."""
    await refused(target, attack(target, origin, headers=headers), 400, "duplicate_header")


@pytest.mark.parametrize(
    "name",
    ["Origin ", "Origin\t", " Origin"],
    ids=["ORG-13-space-before-colon", "ORG-13-tab-before-colon", "ORG-13-leading-space"],
)
async def test_org_13_mangled_second_origin_name(target: AttackTarget, name: str) -> None:
    """A second Origin under a mangled field name, which a lenient proxy may normalise into
    Origin while the server does not (or the reverse): the request is malformed."""
    raw = attack(target, TRUSTED, headers=[(name, EVIL)])
    await refused(target, raw, 400, "malformed_request")


async def test_org_13_origin_list_in_one_field(target: AttackTarget) -> None:
    """An origin list in one field (the RFC 6454 §7 list form) is not one serialized origin."""
    raw = attack(target, f"{TRUSTED} {EVIL}")
    await refused(target, raw, 403, "origin_malformed")
    await refused(target, attack(target, f"{EVIL}, {TRUSTED}"), 403, "origin_malformed")


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.test/",
        "https://app.example.test/ws",
        "https://app.example.test?",
        "https://app.example.test#",
        "",
        "app.example.test",
        "//app.example.test",
        "https:app.example.test",
        "https:///app.example.test",
        "https://",
        "https://:443",
        "https://app.example.test:",
        "https://app.example.test:443:443",
        "javascript://app.example.test",
        "file://app.example.test",
    ],
    ids=[
        "ORG-14-trailing-slash",
        "ORG-14-path",
        "ORG-14-empty-query",
        "ORG-14-empty-fragment",
        "ORG-14-empty",
        "ORG-14-no-scheme",
        "ORG-14-scheme-relative",
        "ORG-14-no-slashes",
        "ORG-14-three-slashes",
        "ORG-14-no-host",
        "ORG-14-port-only",
        "ORG-14-empty-port",
        "ORG-14-two-ports",
        "ORG-14-javascript",
        "ORG-14-file",
    ],
)
async def test_org_14_not_a_serialized_origin(target: AttackTarget, origin: str) -> None:
    """Only ``scheme://host[:port]`` is an origin; browsers never send a path, not even '/'."""
    await refused(target, attack(target, origin), 403, "origin_malformed")


@pytest.mark.parametrize(
    "origin",
    [
        "HTTPS://APP.EXAMPLE.TEST",
        "Https://App.Example.Test",
        "https://app.example.test:443",
        "https://app.example.test.",
    ],
    ids=["ORG-15-uppercase", "ORG-15-mixed-case", "ORG-15-default-port", "ORG-15-trailing-dot"],
)
async def test_org_15_equivalent_spellings_are_the_trusted_origin(
    target: AttackTarget, origin: str
) -> None:
    """Spellings of the trusted origin that RFC 6454 §6.2 serializes to it are that origin
    (docs: ``HTTPS://App.Example.COM.:443`` becomes ``https://app.example.com``): accepted, and
    the response names the serialized origin, never the raw value (no reflection)."""
    ip = next_ip()
    since = target.log_size()
    session = await open_session(target, "alice", ip=ip, origin=origin)
    assert session.response.header("access-control-allow-origin") == TRUSTED
    event = await handshake_event(target, ip, since)
    assert event["event"] == "handshake_accepted", event
    assert (await session.call("ping"))["ok"] is True


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.test`google.com",
        "https://app.example.test$google.com",
        "https://app.example.test%60google.com",
        "https://app.example.test`.evil.example",
        "https://app.example.test_.evil.example",
        "https://app.example.test&.evil.example",
        "https://app.example.test'.evil.example",
        "https://app.example.test!.evil.example",
        "https://app.example.test;.evil.example",
        "https://app.example.test,.evil.example",
        "https://app.example.test\\.evil.example",
        "https://app.example.test:443`evil.example",
    ],
    ids=[
        "ORG-16-backtick",
        "ORG-16-dollar",
        "ORG-16-pct60",
        "ORG-16-backtick-dot",
        "ORG-16-underscore",
        "ORG-16-ampersand",
        "ORG-16-quote",
        "ORG-16-bang",
        "ORG-16-semicolon",
        "ORG-16-comma",
        "ORG-16-backslash",
        "ORG-16-after-port",
    ],
)
async def test_org_16_safari_odd_characters(target: AttackTarget, origin: str) -> None:
    """Odd characters after the trusted host, which Safari let into an Origin and a lax
    parser stops at (WS-2020-0443, engine.io; STEWS backtick test)."""
    await refused(target, attack(target, origin), 403, "origin_malformed")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://" + "\u0430pp".encode("idna").decode() + ".example.test", "origin_not_allowed"),
        ("https://xn--app.example.test", "origin_not_allowed"),
        ("https://\u0430pp.example.test", "origin_malformed"),
        ("https://app\uff0eexample\uff0etest", "origin_malformed"),
        ("https://app.example.test\u200b", "origin_malformed"),
    ],
    ids=[
        "ORG-17-punycode-homograph",
        "ORG-17-bad-punycode-label",
        "ORG-17-unicode-homograph",
        "ORG-17-fullwidth-dots",
        "ORG-17-zero-width",
    ],
)
async def test_org_17_idn_homograph(target: AttackTarget, value: str, reason: str) -> None:
    """IDN homographs: a punycode look-alike is another host; raw Unicode (which no browser
    sends: it sends punycode) is not an origin."""
    raw = with_origin_bytes(target, value.encode())
    await refused(target, raw, 403, reason)


@pytest.mark.parametrize(
    ("origin", "status", "reason"),
    [
        ("https://app.example.test" + "a" * 7 * 1024, 403, "origin_malformed"),
        ("https://" + ("a" * 63 + ".") * 112 + "app.example.test", 403, "origin_malformed"),
        ("https://" + "a" * 9 * 1024 + ".example.test", 431, "request_too_large"),
    ],
    ids=["ORG-18-7KiB-label", "ORG-18-7KiB-labels", "ORG-18-9KiB-line"],
)
async def test_org_18_huge_origin(
    target: AttackTarget, origin: str, status: int, reason: str
) -> None:
    """A 7 KiB Origin (labels over 63, a name over 253 characters) is malformed; a header
    line over 8 KiB is refused by the parser's limit. Nothing crashes or backtracks."""
    began = time.monotonic()
    await refused(target, attack(target, origin), status, reason)
    assert time.monotonic() - began < 1.0


@pytest.mark.parametrize(
    ("headers", "origin", "reason"),
    [
        ([("Sec-WebSocket-Origin", TRUSTED)], None, "origin_missing"),
        ([("Sec-WebSocket-Origin", TRUSTED)], EVIL, "origin_not_allowed"),
        ([("Referer", f"{TRUSTED}/app")], None, "origin_missing"),
        ([("X-Origin", TRUSTED), ("X-Forwarded-Origin", TRUSTED)], None, "origin_missing"),
    ],
    ids=["ORG-19-hybi-08", "ORG-19-hybi-08-and-evil", "ORG-19-referer", "ORG-19-x-origin"],
)
async def test_org_19_substitute_origin_headers_are_ignored(
    target: AttackTarget, headers: list[tuple[str, str]], origin: str | None, reason: str
) -> None:
    """``Sec-WebSocket-Origin`` (hybi-08) and other look-alike fields never stand in for
    Origin: only RFC 6455 ``Origin`` counts."""
    await refused(target, attack(target, origin, headers=headers), 403, reason)


async def test_org_19_hybi_08_handshake(target: AttackTarget) -> None:
    """A whole hybi-08 handshake (version 8, ``Sec-WebSocket-Origin``) is refused at the
    version check with 426 and ``Sec-WebSocket-Version: 13``: no pre-RFC 6455 path exists."""
    raw = attack(
        target,
        None,
        drop=["Sec-WebSocket-Version"],
        headers=[("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Origin", EVIL)],
    )
    await refused(target, raw, 426, "bad_version")


# -- ORG-20..22: Host-derived origins, ambient credentials, proxy headers --------------------


@pytest.fixture(scope="module")
def same_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """A server in same-origin mode: ``origins.allowed = []`` makes the allowed Origin the
    request's own scheme and Host. This is the configuration where a trusted Host matters for
    the Origin check (ORG-20, ORG-22); the Host allow-list stays as in attack.toml."""
    with serve(
        tmp_path_factory.mktemp("attack-same-origin"), overrides=["origins.allowed=[]"]
    ) as server:
        yield server
        assert server.alive()
        assert "Traceback" not in server.log()


OWN = "http://app.example.test"  # the own origin of a plain ws:// request for Host app.example.test


async def test_org_20_same_origin_control(same_origin: AttackTarget) -> None:
    """Control: in same-origin mode the request's own origin is accepted."""
    ticket = query_ticket(same_origin, origin=OWN)
    session = await open_session(same_origin, "alice", origin=OWN, query=ticket)
    assert session.response.header("access-control-allow-origin") == OWN


@pytest.mark.parametrize(
    ("host", "origin", "status", "reason"),
    [
        ("evil.example", "http://evil.example", 400, "host_not_allowed"),
        ("evil.example:8443", "http://evil.example:8443", 400, "host_not_allowed"),
        ("app.example.test", "http://evil.example", 403, "origin_not_allowed"),
        ("app.example.test:8443", OWN, 403, "origin_not_allowed"),
        ("app.example.test", "https://app.example.test", 403, "origin_not_allowed"),
    ],
    ids=[
        "ORG-20-rebound-host",
        "ORG-20-rebound-host-port",
        "ORG-20-foreign-origin",
        "ORG-20-port-differs",
        "ORG-20-scheme-differs",
    ],
)
async def test_org_20_origin_derived_from_host(
    same_origin: AttackTarget, host: str, origin: str, status: int, reason: str
) -> None:
    """Same-origin mode derives the allowed Origin from the Host; an attacker's Host (DNS
    rebinding, CVE-2018-7160) must fail the Host allow-list first, and the Origin must then
    equal the request's own scheme, host and port exactly."""
    raw = request(host=host, origin=origin, query=query_ticket(same_origin, origin=origin))
    await refused(same_origin, raw, status, reason)


async def test_org_20_allow_list_not_host_decides(target: AttackTarget) -> None:
    """With an allow-list, a Host-shaped origin (allowed Host :8443, Origin of that Host) is
    still refused: the Origin is never derived from the Host."""
    raw = attack(target, "https://app.example.test:8443", host="app.example.test:8443")
    await refused(target, raw, 403, "origin_not_allowed")


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """A server with the two insecure Origin switches on (``allow_missing``, ``allow_null``),
    as for non-browser clients: the docs promise that neither ever applies to a request with
    a cookie or HTTP Basic credentials (ORG-21). Only these two switches change."""
    overrides = ["origins.allow_missing=true", "origins.allow_null=true"]
    with serve(tmp_path_factory.mktemp("attack-relaxed-origin"), overrides=overrides) as server:
        yield server
        assert server.alive()
        assert "Traceback" not in server.log()


def _cookie(target: AttackTarget) -> tuple[str, str]:
    value, nonce = target.session("alice")
    return f"{COOKIE}={value}", f"csrf={nonce}"


async def test_org_21_cookie_control(target: AttackTarget) -> None:
    """Control: the session cookie with its nonce from the trusted origin is accepted."""
    cookie, csrf = _cookie(target)
    session = await open_session(target, None, query=csrf, headers=[("Cookie", cookie)])
    welcome = await session.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("alice", "cookie")


@pytest.mark.parametrize(
    ("origin", "nonce", "credential", "reason"),
    [
        (EVIL, False, "cookie", "origin_not_allowed"),
        (EVIL, True, "cookie", "origin_not_allowed"),
        (None, True, "cookie", "origin_missing_with_credentials"),
        (None, False, "cookie", "origin_missing_with_credentials"),
        ("null", True, "cookie", "origin_null"),
        (None, False, "basic", "origin_missing_with_credentials"),
        (EVIL, False, "basic", "origin_not_allowed"),
        ("null", False, "basic", "origin_null"),
    ],
    ids=[
        "ORG-21-cookie-foreign-no-nonce",
        "ORG-21-cookie-foreign-with-nonce",
        "ORG-21-cookie-no-origin",
        "ORG-21-cookie-no-origin-no-nonce",
        "ORG-21-cookie-null",
        "ORG-21-basic-no-origin",
        "ORG-21-basic-foreign",
        "ORG-21-basic-null",
    ],
)
async def test_org_21_cswsh_with_ambient_credentials(
    target: AttackTarget, origin: str | None, nonce: bool, credential: str, reason: str
) -> None:
    """Full CSWSH: the victim's browser attaches its cookie or Basic credentials to a
    handshake a foreign page opened. The origin stage runs before authentication, so the
    refusal names the Origin whatever the nonce (CVE-2023-0957 Gitpod, CVE-2024-23898 Jenkins,
    CVE-2020-14368 Che); nothing after the 403, no session opened, and the victim's own
    page still connects with the same credential afterwards (the attempt had no side effect)."""
    cookie, csrf = _cookie(target)
    if credential == "cookie":
        headers = [("Cookie", cookie)]
        query = csrf if nonce else ""
    else:
        headers = [("Authorization", target.basic("alice"))]
        query = ""
    raw = request(origin=origin, query=query, headers=headers)
    event = await refused(target, raw, 403, reason)
    assert "user" not in event
    victim = await open_session(
        target, None, query=csrf if credential == "cookie" else "", headers=headers
    )
    welcome = await victim.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("alice", credential)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-Host", "app.example.test")],
        [("Forwarded", 'host=app.example.test;proto=https;for="127.0.0.1"')],
        [("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")],
        [("X-Original-Host", "app.example.test"), ("X-Host", "app.example.test")],
    ],
    ids=["ORG-22-x-forwarded-host", "ORG-22-forwarded", "ORG-22-xfh-evil", "ORG-22-x-host"],
)
async def test_org_22_proxy_headers_do_not_vouch_for_an_origin(
    target: AttackTarget, headers: list[tuple[str, str]]
) -> None:
    """Proxy headers from an untrusted peer naming the trusted host do not turn a foreign
    Origin into an allowed one (GHSA-mx8g-39q3-5c79: proxies that bypass Host/Origin checks)."""
    await refused(target, attack(target, EVIL, headers=headers), 403, "origin_not_allowed")


@pytest.mark.parametrize(
    ("headers", "origin"),
    [
        ([("X-Forwarded-Host", "evil.example")], "http://evil.example"),
        ([("X-Forwarded-Proto", "https")], "https://app.example.test"),
        ([("Forwarded", "host=evil.example;proto=https")], "https://evil.example"),
        ([("X-Forwarded-Port", "8443")], "http://app.example.test:8443"),
    ],
    ids=[
        "ORG-22-same-origin-xfh",
        "ORG-22-same-origin-xfp",
        "ORG-22-same-origin-forwarded",
        "ORG-22-same-origin-xf-port",
    ],
)
async def test_org_22_proxy_headers_do_not_change_the_own_origin(
    same_origin: AttackTarget, headers: list[tuple[str, str]], origin: str
) -> None:
    """In same-origin mode, untrusted X-Forwarded-* / Forwarded cannot redefine the request's
    own scheme, host or port (trusted_proxies is empty: they are attacker input)."""
    raw = request(origin=origin, headers=headers, query=query_ticket(same_origin, origin=origin))
    await refused(same_origin, raw, 403, "origin_not_allowed")


@pytest.mark.parametrize(
    "origin",
    [None, "null"],
    ids=["ORG-21-relaxed-control-no-origin", "ORG-21-relaxed-control-null"],
)
async def test_org_21_relaxed_control(relaxed: AttackTarget, origin: str | None) -> None:
    """Control: with ``allow_missing``/``allow_null``, a non-browser client with an explicit,
    non-ambient credential (a Bearer JWT) and no or a null Origin is accepted."""
    bearer = [("Authorization", f"Bearer {relaxed.jwt('alice')}")]
    session = await open_session(relaxed, "alice", origin=origin, query="", headers=bearer)
    assert (await session.call("ping"))["ok"] is True


@pytest.mark.parametrize(
    ("origin", "headers", "reason"),
    [
        (None, "cookie", "origin_missing_with_credentials"),
        (None, "basic", "origin_missing_with_credentials"),
        (None, "basic-upper", "origin_missing_with_credentials"),
        (None, "other-cookie", "origin_missing_with_credentials"),
        (None, "second-authorization", "origin_missing_with_credentials"),
        ("null", "cookie", "origin_null"),
        ("null", "basic", "origin_null"),
    ],
    ids=[
        "ORG-21-relaxed-cookie-no-origin",
        "ORG-21-relaxed-basic-no-origin",
        "ORG-21-relaxed-BASIC-no-origin",
        "ORG-21-relaxed-any-cookie-no-origin",
        "ORG-21-relaxed-basic-behind-bearer",
        "ORG-21-relaxed-cookie-null",
        "ORG-21-relaxed-basic-null",
    ],
)
async def test_org_21_ambient_credentials_override_insecure_switches(
    relaxed: AttackTarget, origin: str | None, headers: str, reason: str
) -> None:
    """CSWSH through the insecure switches: a cross-site page (no Origin after a redirect
    trick, or ``null`` from a sandboxed iframe) riding the victim's cookie or Basic
    credentials is still refused (config.md: allow_missing "Never applies to requests with a
    cookie or HTTP Basic credentials"; CVE-2024-23898, CVE-2020-14368)."""
    cookie, csrf = _cookie(relaxed)
    basic = relaxed.basic("alice")
    fields = {
        "cookie": [("Cookie", cookie)],
        "basic": [("Authorization", basic)],
        "basic-upper": [("Authorization", "BASIC " + basic.split(" ", 1)[1])],
        "other-cookie": [("Cookie", "theme=dark")],
        "second-authorization": [
            ("Authorization", f"Bearer {relaxed.jwt('alice')}"),
            ("Authorization", basic),
        ],
    }[headers]
    raw = request(origin=origin, query=csrf, headers=fields)
    event = await refused(relaxed, raw, 403, reason)
    assert "user" not in event
