"""The probes' pure rules: the look-alike origins they try, what counts as a refusal rather
than service, and the disclosure judgement over recorded responses and close reasons (wsguard's
own generic close reasons must never be flagged)."""

from __future__ import annotations

import pytest

from wsguard.scanner import frames, probes
from wsguard.scanner.model import Evidence, Finding
from wsguard.scanner.probes import ATTACKER_HOST
from wsguard.scanner.session import ScanSession
from wsguard.scanner.target import ScanOptions, parse_target
from wsguard.scanner.wire import Handshake, Received

# ---------------------------------------------------------------- look-alike origins


def test_attacker_host_is_under_reserved_test_tld():
    assert ATTACKER_HOST == "attacker.wsguard-scan.test"


def test_lookalikes_of_a_dns_origin():
    assert probes._lookalikes("https://app.example.com") == [
        ("prefix match", "https://app.example.com.attacker.wsguard-scan.test"),
        ("suffix match", "https://wsgscanapp.example.com"),
        ("substring match", "https://attacker.wsguard-scan.test/app.example.com"),
        ("unescaped regex dot", "https://appxexample.com"),
        ("host inside another host", "https://app.example.com-attacker.wsguard-scan.test"),
    ]


def test_lookalikes_of_an_ip_origin_keep_the_port_and_replace_the_first_dot():
    assert probes._lookalikes("http://127.0.0.1:8080") == [
        ("prefix match", "http://127.0.0.1.attacker.wsguard-scan.test:8080"),
        ("suffix match", "http://wsgscan127.0.0.1:8080"),
        ("substring match", "http://attacker.wsguard-scan.test:8080/127.0.0.1"),
        ("unescaped regex dot", "http://127x0.0.1:8080"),
        ("host inside another host", "http://127.0.0.1-attacker.wsguard-scan.test:8080"),
    ]


def test_lookalikes_of_a_dotless_host_have_no_regex_dot_variant():
    assert [label for label, _ in probes._lookalikes("http://localhost:3000")] == [
        "prefix match",
        "suffix match",
        "substring match",
        "host inside another host",
    ]


def test_lookalikes_never_equal_the_trusted_origin():
    origin = "https://app.example.com"
    assert origin not in [value for _, value in probes._lookalikes(origin)]


@pytest.mark.parametrize(
    ("origin", "parts"),
    [
        ("https://app.example.com:8443", ("https", "app.example.com", ":8443")),
        ("https://app.example.com", ("https", "app.example.com", "")),
        ("http://App.Example.COM", ("http", "app.example.com", "")),
    ],
)
def test_split_origin(origin: str, parts: tuple[str, str, str]):
    assert probes._split_origin(origin) == parts


def test_split_origin_keeps_ipv6_brackets():
    # The variants are built as f"{scheme}://{host}{port}": without brackets an IPv6 trusted
    # origin yields "http://::1:8080" (not an origin at all), so the subdomain, scheme and port
    # probes would pass because of the malformed Origin, not because the server checks it.
    assert probes._split_origin("http://[::1]:8080") == ("http", "[::1]", ":8080")


# ---------------------------------------------------------------- refusal or service


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"id":1,"ok":false,"error":{"code":"auth_required"}}', id="wsguard-error"),
        pytest.param('{"error": "x"}', id="error-key"),
        pytest.param('{"ok": false}', id="ok-false"),
        pytest.param("401 Unauthorized", id="401"),
        pytest.param("Forbidden", id="forbidden"),
        pytest.param("please log in: authentication required", id="auth-required"),
        pytest.param("close 4401", id="4401"),
        pytest.param("UNAUTHORISED", id="british"),
    ],
)
def test_refusal(text: str):
    assert probes._refusal(text) is True


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hello", id="greeting"),
        pytest.param('{"id": 1, "ok": true, "data": "pong"}', id="ok-true"),
        pytest.param('["error"]', id="json-list"),
        pytest.param("14010 users online", id="digits-inside-a-number"),
        pytest.param("", id="empty"),
    ],
)
def test_not_a_refusal(text: str):
    assert probes._refusal(text) is False


def test_served_when_open_with_a_real_reply():
    assert probes._served(Received(data=["hello"])) is True


def test_not_served_when_closed():
    assert probes._served(Received(data=["hello"], closed=True)) is False


def test_not_served_without_data():
    assert probes._served(Received()) is False


def test_not_served_when_every_reply_refuses():
    assert probes._served(Received(data=['{"error": "x"}', "401 Unauthorized"])) is False


def test_served_when_one_reply_is_not_a_refusal():
    assert probes._served(Received(data=['{"error": "x"}', "welcome"])) is True


# ---------------------------------------------------------------- disclosure


def session() -> ScanSession:
    return ScanSession(
        ScanOptions(target=parse_target("ws://127.0.0.1:9/ws"), origin="http://127.0.0.1:9")
    )


def with_headers(*headers: tuple[str, str]) -> ScanSession:
    s = session()
    s.handshakes.append(("origin: trusted origin", Handshake(403, "Forbidden", list(headers))))
    return s


def with_closes(*reasons: tuple[int, str]) -> ScanSession:
    s = with_headers()  # one plain response: the handshake-level probes ran
    for code, reason in reasons:
        s.closes.append((f"case {code}", Received(close_code=code, close_reason=reason,
                                                  closed=True)))  # fmt: skip
    return s


def verdict(s: ScanSession, check_id: str) -> str:
    if check_id in s.verdicts.passed:
        return "pass"
    if check_id in s.verdicts.skipped:
        return "skip"
    assert [f.check.id for f in s.verdicts.findings].count(check_id) == 1
    return "fail"


def finding(s: ScanSession, check_id: str) -> Finding:
    return next(f for f in s.verdicts.findings if f.check.id == check_id)


def test_versioned_server_header_is_a_finding():
    s = with_headers(("Server", "Python/3.11 aiohttp/3.9"))
    frames.probe_disclosure(s)
    result = finding(s, "disclosure-server-header")
    assert result.summary == (
        "Response headers name software versions: Server: Python/3.11 aiohttp/3.9."
    )
    assert result.evidence == (
        Evidence("origin: trusted origin", "", "Server: Python/3.11 aiohttp/3.9"),
    )


@pytest.mark.parametrize(
    "header",
    [
        ("X-Powered-By", "PHP/8.1.2"),
        ("x-aspnet-version", "4.0.30319"),
        ("X-Runtime", "0.012345"),
        ("server", "nginx/1.25.3"),
    ],
)
def test_other_versioned_banners_are_findings(header: tuple[str, str]):
    s = with_headers(header)
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-server-header") == "fail"


@pytest.mark.parametrize(
    "header",
    [
        ("Server", "uvicorn"),
        ("X-Powered-By", "Express"),
        ("X-Request-Id", "1.2.3"),  # not a banner header
        ("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
def test_unversioned_or_other_headers_pass(header: tuple[str, str]):
    s = with_headers(header)
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-server-header") == "pass"


def test_via_protocol_version_alone_is_not_a_software_version():
    # "1.1" in Via is the HTTP version the proxy received (RFC 9110 §7.6.3), present in every
    # Via header; only a product version after the pseudonym discloses software.
    s = with_headers(("Via", "1.1 google"))
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-server-header") == "pass"


def test_same_banner_across_responses_is_reported_once():
    s = with_headers(("Server", "nginx/1.25.3"))
    s.handshakes.append(("second", Handshake(403, "", [("Server", "nginx/1.25.3")])))
    frames.probe_disclosure(s)
    assert len(finding(s, "disclosure-server-header").evidence) == 1


def test_banner_evidence_is_capped_at_three():
    s = with_headers(*[("Server", f"srv/{n}.0") for n in range(5)])
    frames.probe_disclosure(s)
    assert len(finding(s, "disclosure-server-header").evidence) == 3


def test_no_handshakes_skip_both_checks():
    s = session()
    s.closes.append(("x", Received(close_code=1002, close_reason="must be 0", closed=True)))
    frames.probe_disclosure(s)
    reason = "no handshake was sent (select another group)"
    assert (s.verdicts.skipped, s.verdicts.findings, s.verdicts.passed) == (
        {"disclosure-server-header": reason, "disclosure-close-reason": reason},
        [],
        [],
    )


def test_handshake_without_banners_passes_the_header_check():
    s = with_headers(("Content-Length", "0"))
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-server-header") == "pass"


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("reserved bits must be 0", id="rsv"),
        pytest.param("incorrect masking", id="masking"),
        pytest.param("invalid start byte at position 3", id="utf8-position"),
        pytest.param("expected a continuation frame", id="continuation"),
        pytest.param("Traceback (most recent call last):", id="traceback"),
        pytest.param("KeyError: 'user'", id="exception-name"),
        pytest.param("/app/server.py line 42", id="source-file"),
        pytest.param("bad byte 0xff", id="hex"),
        pytest.param("protocol 1.2 unsupported", id="version"),
    ],
)
def test_verbose_close_reason_is_a_finding(reason: str):
    s = with_closes((1002, reason))
    frames.probe_disclosure(s)
    result = finding(s, "disclosure-close-reason")
    assert result.summary == "1 close reason(s) carry implementation details."
    assert result.evidence == (Evidence("case 1002", "", f"close 1002 {reason!r}"),)


@pytest.mark.parametrize(
    "reason",
    [
        # websockets' PayloadTooBig text, as the size and 2^63-length probes elicit it: it names
        # the server's exact limit, which GENERIC_REASONS exists to hide.
        pytest.param("frame with 1048577 bytes exceeds limit of 1048576 bytes", id="too-big"),
        pytest.param(
            "frame with 9223372036854775808 bytes exceeds limit of 65536 bytes", id="2^63"
        ),
        pytest.param("over size limit (70000 > 65536 bytes)", id="over-size-limit"),
    ],
)
def test_close_reason_disclosing_the_size_limit_is_a_finding(reason: str):
    s = with_closes((1009, reason))
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-close-reason") == "fail"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1002, "protocol error"),
        (1007, "invalid UTF-8"),
        (1009, "message too big"),
        (1008, "policy violation"),
        (1009, "too many fragments"),
        (1011, "internal error"),
        (1000, ""),
        (1001, "going away"),
    ],
)
def test_wsguard_generic_close_reasons_pass(code: int, reason: str):
    s = with_closes((code, reason))
    frames.probe_disclosure(s)
    assert verdict(s, "disclosure-close-reason") == "pass"


def test_all_of_wsguards_reasons_together_pass():
    s = with_closes(
        (1002, "protocol error"),
        (1007, "invalid UTF-8"),
        (1009, "message too big"),
        (1008, "policy violation"),
        (1009, "too many fragments"),
        (1011, "internal error"),
    )
    frames.probe_disclosure(s)
    assert (s.verdicts.findings, s.verdicts.passed) == (
        [],
        ["disclosure-server-header", "disclosure-close-reason"],
    )


def test_verbose_reasons_counted_and_evidence_capped_at_four():
    s = with_closes(*[(1002, f"must be {n}") for n in range(6)], (1002, "protocol error"))
    frames.probe_disclosure(s)
    result = finding(s, "disclosure-close-reason")
    assert result.summary == "6 close reason(s) carry implementation details."
    assert len(result.evidence) == 4


def test_no_closes_skip_the_close_reason_check():
    s = with_headers()
    frames.probe_disclosure(s)
    assert s.verdicts.skipped == {
        "disclosure-close-reason": "the server sent no close frame to judge"
    }
