"""Group HST: the Host header and DNS rebinding.

The server answers only for the names in ``origins.allowed_hosts`` (here ``app.example.test``
and ``app.example.test:8443``; an entry without a port also matches the scheme's default port).
It never resolves names, so a name an attacker made resolve to the server (DNS rebinding) is
refused because it is not listed. The Host is checked before the Origin (docs/reference/codes.md,
"Checks run cheapest first"), so an attacker's Host can never make its own Origin look
same-origin. Missing, duplicate or unparseable Host values are a 400 (RFC 9112 §3.2); IP spellings
that browsers read as addresses (``127.1``, ``0177.0.0.1``, ``2130706433``) are malformed, and
loopback names are simply not listed. Proxy headers from an untrusted peer are ignored. Every
refusal is checked for its exact status, its audit reason, no 101, and a closed connection.

Cases (catalog ids of ../shared/research/security-references.md §4):

    HST-01  no Host / an empty Host                          400 missing_host
    HST-02  a foreign Host, a subdomain, another port        400 host_not_allowed
            (and: case, trailing dot and the default port are the allowed host: 101)
    HST-03  DNS rebinding: Host evil.example with its own Origin
                                                             400 host_not_allowed (CVE-2018-7160)
    HST-04  loopback names and IP spellings (Node inspector CVEs: localhost6, octal, decimal,
            short forms)                                     400 host_not_allowed / host_malformed
    HST-05  userinfo, path, bad ports, empty labels, zone ids  400 host_malformed
    HST-06  two Host fields                                  400 duplicate_header
    HST-07  absolute-form request target naming another host  404 unknown_path
    HST-08  X-Forwarded-Host / Forwarded from an untrusted peer are ignored
    HST-09  a batch of hostile Host values: each a clean 400, never a 500; the server lives and
            the canary stays connected and fast (CVE-2026-14631, CVE-2022-41940 class)

Harness note: ``refused()`` (tests/support/attack.py) reads the handshake audit event of the
connection's own source address (``peer``) from the log, a stricter form of
``target.audit_reasons``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from support.attack import (
    TRUSTED,
    AttackTarget,
    canary,
    handshake_event,
    next_ip,
    open_session,
    query_ticket,
    refused,
    request,
)

pytestmark = pytest.mark.integration

PLACEHOLDER = "HOST-PLACEHOLDER"


# -- helpers ---------------------------------------------------------------------------------


def attack(target: AttackTarget, host: str | None, **kwargs: Any) -> bytes:
    """BASE with ``host``, the trusted Origin and a valid ticket: only the Host can be the
    reason for a refusal."""
    kwargs.setdefault("query", query_ticket(target))
    return request(host=host, **kwargs)


def with_host_bytes(target: AttackTarget, value: bytes, **kwargs: Any) -> bytes:
    """BASE whose Host value is exactly ``value`` (bytes no ``str`` header could carry)."""
    raw = attack(target, PLACEHOLDER, **kwargs)
    assert raw.count(PLACEHOLDER.encode()) == 1
    return raw.replace(PLACEHOLDER.encode(), value)


# -- HST-01..03 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, b"", b"   ", b"\t"],
    ids=["HST-01-absent", "HST-01-empty", "HST-01-spaces", "HST-01-tab"],
)
async def test_hst_01_missing_host(target: AttackTarget, value: bytes | None) -> None:
    """No Host (RFC 9112 §3.2: a server MUST answer 400); an empty or blank one is none."""
    raw = attack(target, None) if value is None else with_host_bytes(target, value)
    await refused(target, raw, 400, "missing_host")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "x.app.example.test",
        "example.test",
        "app.example.test.evil.example",
        "evilapp.example.test",
        "app.example.test:9999",
        "app.example.test:443",
        "app.example.test:8080",
        "appxexample.test",
    ],
    ids=[
        "HST-02-foreign",
        "HST-02-subdomain",
        "HST-02-parent",
        "HST-02-suffix-lookalike",
        "HST-02-prefix-lookalike",
        "HST-02-port-9999",
        "HST-02-port-443-over-http",
        "HST-02-port-8080",
        "HST-02-regex-dot",
    ],
)
async def test_hst_02_host_not_allowed(target: AttackTarget, host: str) -> None:
    """A Host not in ``origins.allowed_hosts`` (exact names, exact ports; the listener is plain
    http, so only no port, :80 and the listed :8443 are this server) — PYSEC-2026-3483."""
    event = await refused(target, attack(target, host), 400, "host_not_allowed")
    assert event["host"] == host


@pytest.mark.parametrize(
    "host",
    ["APP.EXAMPLE.TEST", "App.Example.Test:8443", "app.example.test.", "app.example.test:80"],
    ids=[
        "HST-02-uppercase",
        "HST-02-mixed-case-port",
        "HST-02-trailing-dot",
        "HST-02-default-port",
    ],
)
async def test_hst_02_spellings_of_the_allowed_host_are_accepted(
    target: AttackTarget, host: str
) -> None:
    """Control: host names are case-insensitive, one trailing dot names the same DNS name
    (RFC 1034 §3.1) and :80 is the default port of this plain listener — all the allowed host,
    so the refusals above are about the name, not its spelling."""
    ip = next_ip()
    since = target.log_size()
    session = await open_session(target, "alice", ip=ip, host=host)
    event = await handshake_event(target, ip, since)
    assert event["event"] == "handshake_accepted", event
    assert (await session.call("ping"))["ok"] is True


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("evil.example", "http://evil.example"),
        ("evil.example:8443", "http://evil.example:8443"),
        ("evil.example", TRUSTED),
        ("rebind.evil.example", None),
    ],
    ids=[
        "HST-03-own-origin",
        "HST-03-own-origin-port",
        "HST-03-trusted-origin",
        "HST-03-no-origin",
    ],
)
async def test_hst_03_dns_rebinding(target: AttackTarget, host: str, origin: str | None) -> None:
    """DNS rebinding: evil.example now resolves to this server, so the victim's browser sends
    Host evil.example with the Origin of the attacker's page. Refused at the Host stage, before
    the Origin is even looked at (CVE-2018-7160, Node.js inspector)."""
    event = await refused(target, attack(target, host, origin=origin), 400, "host_not_allowed")
    assert event["host"] == host


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "host_not_allowed"),
        ("localhost6", "host_not_allowed"),
        ("localhost.localdomain", "host_not_allowed"),
        ("127.0.0.1", "host_not_allowed"),
        ("127.0.0.1:8443", "host_not_allowed"),
        ("0.0.0.0", "host_not_allowed"),  # noqa: S104 - a Host value, not a bind address
        ("[::1]", "host_not_allowed"),
        ("[::ffff:127.0.0.1]", "host_not_allowed"),
        ("[0:0:0:0:0:0:0:1]", "host_not_allowed"),
        ("2130706433", "host_malformed"),
        ("0177.0.0.1", "host_malformed"),
        ("0x7f.0.0.1", "host_malformed"),
        ("0x7f000001", "host_malformed"),
        ("127.1", "host_malformed"),
        ("127.0.1", "host_malformed"),
        ("127.0.0.1.", "host_not_allowed"),
        ("[::1]:8443", "host_not_allowed"),
        ("256.0.0.1", "host_malformed"),
    ],
    ids=[
        "HST-04-localhost",
        "HST-04-localhost6",
        "HST-04-localhost-localdomain",
        "HST-04-ipv4",
        "HST-04-ipv4-port",
        "HST-04-any",
        "HST-04-ipv6",
        "HST-04-ipv4-mapped",
        "HST-04-ipv6-long",
        "HST-04-decimal",
        "HST-04-octal",
        "HST-04-hex-octet",
        "HST-04-hex",
        "HST-04-short-127-1",
        "HST-04-short-127-0-1",
        "HST-04-ipv4-trailing-dot",
        "HST-04-ipv6-port",
        "HST-04-octet-overflow",
    ],
)
async def test_hst_04_loopback_names_and_ip_spellings(
    target: AttackTarget, host: str, reason: str
) -> None:
    """Loopback names and IP spellings that bypassed the Node.js inspector's host allow-list
    (CVE-2021-22884 localhost6, CVE-2022-32212 / CVE-2022-43548 invalid and octal IPs): the
    list names app.example.test only, so every one is refused; spellings a browser would read
    as an address but that are not a dotted quad are malformed, never guessed."""
    await refused(target, attack(target, host), 400, reason)


@pytest.mark.parametrize(
    "value",
    [
        "alice@app.example.test",
        "evil.example@app.example.test",
        "app.example.test/ws",
        "app.example.test/@evil.example",
        "app.example.test?x=1",
        "app.example.test#x",
        "app.example.test:99999",
        "app.example.test:65536",
        "app.example.test:0",
        "app.example.test:abc",
        "app.example.test:",
        "app.example.test:-1",
        "app.example.test:+80",
        "app.example.test:8443:8443",
        "app.example.test..",
        "app..example.test",
        ".app.example.test",
        "-app.example.test",
        "app_example.test",
        "app example.test",
        "[::1",
        "[fe80::1%25eth0]",
        "[v1.app]",
        ":8443",
    ],
    ids=[
        "HST-05-userinfo",
        "HST-05-userinfo-foreign",
        "HST-05-path",
        "HST-05-path-at",
        "HST-05-query",
        "HST-05-fragment",
        "HST-05-port-99999",
        "HST-05-port-65536",
        "HST-05-port-0",
        "HST-05-port-abc",
        "HST-05-port-empty",
        "HST-05-port-negative",
        "HST-05-port-plus",
        "HST-05-two-ports",
        "HST-05-two-trailing-dots",
        "HST-05-empty-label",
        "HST-05-leading-dot",
        "HST-05-leading-hyphen",
        "HST-05-underscore",
        "HST-05-space",
        "HST-05-unclosed-ipv6",
        "HST-05-zone-id",
        "HST-05-ipvfuture",
        "HST-05-port-only",
    ],
)
async def test_hst_05_malformed_host(target: AttackTarget, value: str) -> None:
    """Anything but ``host[:port]`` (RFC 3986 §3.2.2 narrowed to what browsers send) is a 400:
    a lax parser would read the allowed name out of ``evil@app...`` or ``app.../evil``."""
    await refused(target, attack(target, value), 400, "host_malformed")


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("app.example.test", ("Host", "evil.example")),
        ("evil.example", ("Host", "app.example.test")),
        ("app.example.test", ("Host", "app.example.test")),
        ("app.example.test", ("host", "evil.example")),
    ],
    ids=["HST-06-evil-second", "HST-06-evil-first", "HST-06-same-twice", "HST-06-lowercase-name"],
)
async def test_hst_06_two_host_fields(
    target: AttackTarget, host: str, extra: tuple[str, str]
) -> None:
    """Two Host fields (RFC 9112 §3.2 MUST 400): a proxy and the server could each pick one."""
    await refused(target, attack(target, host, headers=[extra]), 400, "duplicate_header")


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("http://evil.example/ws", "app.example.test"),
        ("http://app.example.test/ws", "evil.example"),
        ("http://app.example.test/ws", "app.example.test"),
        ("ws://evil.example/ws", "app.example.test"),
        ("//evil.example/ws", "app.example.test"),
    ],
    ids=[
        "HST-07-absolute-evil-target",
        "HST-07-absolute-trusted-target-evil-host",
        "HST-07-absolute-trusted",
        "HST-07-absolute-ws-scheme",
        "HST-07-network-path",
    ],
)
async def test_hst_07_absolute_form_target(target: AttackTarget, path: str, host: str) -> None:
    """An absolute-form request target (``GET http://evil.example/ws``) is not the WebSocket
    path: a server that took the authority from it would bypass the Host check (RFC 9112
    §3.2.2 lets it override Host). wsguard answers 404 ``unknown_path`` and never upgrades."""
    event = await refused(target, attack(target, host, path=path), 404, "unknown_path")
    assert event["path"] == path


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-Host", "app.example.test")],
        [("Forwarded", "host=app.example.test;proto=https")],
        [("X-Original-Host", "app.example.test"), ("X-Host", "app.example.test")],
        [("X-Forwarded-Server", "app.example.test"), ("X-Forwarded-Port", "8443")],
    ],
    ids=[
        "HST-08-x-forwarded-host",
        "HST-08-forwarded",
        "HST-08-x-host",
        "HST-08-x-forwarded-server",
    ],
)
async def test_hst_08_proxy_headers_do_not_vouch_for_a_host(
    target: AttackTarget, headers: list[tuple[str, str]]
) -> None:
    """Proxy headers from an untrusted peer naming the allowed host do not replace a foreign
    Host (``trusted_proxies`` is empty; ``Forwarded`` is never read; GHSA-mx8g-39q3-5c79)."""
    raw = attack(target, "evil.example", headers=headers)
    await refused(target, raw, 400, "host_not_allowed")


async def test_hst_08_foreign_forwarded_host_is_ignored(target: AttackTarget) -> None:
    """An X-Forwarded-Host naming a foreign host beside the allowed Host changes nothing: the
    decision and the audited host come from Host alone."""
    ip = next_ip()
    since = target.log_size()
    headers = [("X-Forwarded-Host", "evil.example"), ("Forwarded", "host=evil.example")]
    session = await open_session(target, "alice", ip=ip, headers=headers)
    event = await handshake_event(target, ip, since)
    assert event["event"] == "handshake_accepted", event
    assert event["host"] == "app.example.test", event
    assert (await session.call("ping"))["ok"] is True


# -- HST-09 ----------------------------------------------------------------------------------

HOSTILE: list[tuple[bytes, int, str]] = [
    (b"a" * 7000, 400, "host_malformed"),
    (b"a" * 64 + b".example.test", 400, "host_malformed"),
    (b"a." * 130 + b"test", 400, "host_malformed"),
    (b"[" + b":" * 2000 + b"]", 400, "host_malformed"),
    (b"[" * 500, 400, "host_malformed"),
    (b"app.example.test:" + b"9" * 3000, 400, "host_malformed"),
    (b":", 400, "host_malformed"),
    (b".", 400, "host_malformed"),
    (b"..", 400, "host_malformed"),
    (b"[]", 400, "host_malformed"),
    (b"[::1]]", 400, "host_malformed"),
    (b"[::1]x", 400, "host_malformed"),
    (b"@", 400, "host_malformed"),
    (b"%00", 400, "host_malformed"),
    (b"app.example.test%2eevil", 400, "host_malformed"),
    (b"0x", 400, "host_malformed"),
    (b"1e3", 400, "host_not_allowed"),
    (b"xn--", 400, "host_malformed"),
    (b"\xff\xfe", 400, "host_malformed"),
    ("\u0430pp.example.test".encode(), 400, "host_malformed"),
    ("app\uff0eexample\uff0etest".encode(), 400, "host_malformed"),
    (b"app.example.test\x00", 400, "malformed_request"),
    (b"app.example.test\x00.evil.example", 400, "malformed_request"),
    (b"app.example.test\rX: y", 400, "malformed_request"),
    (b"app.example.test\x7f", 400, "malformed_request"),
    (b"app.example.test\x1b[0m", 400, "malformed_request"),
    (b'"app.example.test"', 400, "host_malformed"),
    (b"app.example.test, evil.example", 400, "host_malformed"),
]


async def test_hst_09_hostile_host_values_never_crash(target: AttackTarget) -> None:
    """HST-09: a batch of hostile Host values — huge, numeric, unbalanced brackets, non-ASCII,
    control bytes — each gets a clean 400 with its documented reason (never 500
    ``internal_error``, never 101) while the canary stays connected and fast, and the server
    lives on (CVE-2026-14631 webpack-dev-server, CVE-2022-41940 / CVE-2023-31125 Engine.IO:
    a malformed header raised an uncaught exception and crashed the process)."""
    began = time.monotonic()
    async with canary(target):
        for value, status, reason in HOSTILE:
            await refused(target, with_host_bytes(target, value), status, reason)
    assert target.alive()
    assert time.monotonic() - began < 15.0
    # The server still serves a legitimate handshake afterwards.
    session = await open_session(target, "alice")
    assert (await session.call("ping"))["ok"] is True
