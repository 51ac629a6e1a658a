"""The scan report writers: exact JSON, SARIF valid against the official 2.1.0 schema, an HTML
page and a terminal table where hostile remote text (ANSI escapes, markup, script tags, bidi
overrides) is shown as text and never interpreted."""

from __future__ import annotations

import hashlib
import io
import json
import re

import pytest
from rich.console import Console

from support.sarif import sarif_validator
from wsguard.scanner.model import Check, Evidence, Finding, Reference, ScanResult, Severity
from wsguard.scanner.report import (
    render_table,
    to_html,
    to_json,
    to_sarif,
    write_report,
)

TARGET = "wss://chat.example.test/ws"
ANSI = "\x1b[31mred\x1b]0;title\x07"
SCRIPT = "<script>alert(1)</script>"
MARKUP = "[bold]markup[/bold]"
RTL = "\u202eRTL"

ORIGIN = Check(
    id="origin-foreign",
    group="origin",
    title="Foreign Origin accepted",
    severity=Severity.CRITICAL,
    why="Any web page can open a socket with the victim's cookies (CSWSH).",
    remedy="Check the Origin header against an allow-list.",
    config='[origins]\nallow = ["https://app.example"]',
    references=(
        Reference("OWASP WebSocket Cheat Sheet", "https://cheatsheetseries.owasp.org/ws.html"),
        Reference("evil", "javascript:alert(document.domain)"),
    ),
    cwe=1385,
)
FRAMES = Check(
    id="limits-frame-size",
    group="limits",
    title="Huge frames accepted",
    severity=Severity.HIGH,
    why="One client can exhaust the server's memory.",
    remedy="Cap the frame size.",
    config="[limits]\nmax_frame = 65536",
    references=(Reference("sneaky", "javascript:alert(2)"),),
    cwe=770,
)
BANNER = Check(
    id="disclosure-server-header",
    group="disclosure",
    title="Server header reveals the version",
    severity=Severity.LOW,
    why="Version numbers help an attacker pick exploits.",
    remedy="Drop or genericise the Server header.",
    config="",
)
PASSING = Check(
    id="tls-plain",
    group="tls",
    title="Plain ws:// accepted",
    severity=Severity.HIGH,
    why="Traffic can be read and changed.",
    remedy="Serve wss:// only.",
    config="[tls]\nrequired = true",
    references=(Reference("RFC 6455 section 10.6", "https://www.rfc-editor.org/rfc/rfc6455"),),
    cwe=319,
)
CHECKS = (ORIGIN, FRAMES, BANNER, PASSING)


def make_result() -> ScanResult:
    """Three findings (low, critical, medium: deliberately not in severity order)."""
    return ScanResult(
        target=TARGET,
        started="2026-12-02T11:00:00Z",
        duration=3.25,
        findings=[
            Finding(BANNER, "Server: evil/1.0 " + MARKUP, (Evidence("Server header", "", MARKUP),)),
            Finding(
                ORIGIN,
                "handshake with Origin https://evil.example accepted " + ANSI,
                (
                    Evidence("foreign origin", "Origin: https://evil.example", ANSI),
                    Evidence("echo", SCRIPT, SCRIPT),
                    Evidence("markup", MARKUP, RTL),
                ),
            ),
            # The check says high; the probe saw a milder case and overrides it.
            Finding(FRAMES, "16 MiB frame accepted", (), severity=Severity.MEDIUM),
        ],
        passed=["tls-plain", "host-foreign"],
        skipped={"auth-ticket": "no ticket endpoint " + ANSI},
        requests=17,
        version="0.1.0",
    )


def plain_table(result: ScanResult) -> str:
    console = Console(file=io.StringIO(), color_system=None, width=120)
    render_table(result, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


# --- JSON -------------------------------------------------------------------------------------


def test_json_document_fields_order_and_counts():
    text = to_json(make_result())
    assert text.startswith('{\n  "tool": "wsguard",\n  "version": "0.1.0",\n')
    doc = json.loads(text)
    assert list(doc) == [
        "tool",
        "version",
        "target",
        "started",
        "duration",
        "requests",
        "summary",
        "findings",
        "passed",
        "skipped",
        "inconclusive",
    ]
    assert doc["target"] == TARGET
    assert doc["started"] == "2026-12-02T11:00:00Z"
    assert doc["duration"] == 3.25
    assert doc["requests"] == 17
    assert doc["summary"] == {"critical": 1, "high": 0, "medium": 1, "low": 1}
    assert list(doc["summary"]) == ["critical", "high", "medium", "low"]
    assert [f["id"] for f in doc["findings"]] == [
        "origin-foreign",
        "limits-frame-size",
        "disclosure-server-header",
    ]
    assert [f["severity"] for f in doc["findings"]] == ["critical", "medium", "low"]
    origin = doc["findings"][0]
    assert list(origin) == [
        "id",
        "title",
        "severity",
        "group",
        "summary",
        "why",
        "remedy",
        "config",
        "cwe",
        "references",
        "evidence",
    ]
    assert origin["group"] == "origin"
    assert origin["cwe"] == 1385
    assert origin["config"] == '[origins]\nallow = ["https://app.example"]'
    assert origin["references"] == [
        {
            "label": "OWASP WebSocket Cheat Sheet",
            "url": "https://cheatsheetseries.owasp.org/ws.html",
        },
        {"label": "evil", "url": "javascript:alert(document.domain)"},
    ]
    # JSON keeps remote data exactly as received: machine readers escape for their medium.
    assert origin["evidence"] == [
        {"label": "foreign origin", "sent": "Origin: https://evil.example", "received": ANSI},
        {"label": "echo", "sent": SCRIPT, "received": SCRIPT},
        {"label": "markup", "sent": MARKUP, "received": RTL},
    ]
    assert doc["findings"][2]["cwe"] is None
    assert doc["findings"][2]["references"] == []
    assert doc["passed"] == ["tls-plain", "host-foreign"]
    assert doc["skipped"] == {"auth-ticket": "no ticket endpoint " + ANSI}


# --- terminal table ---------------------------------------------------------------------------


def test_table_shows_hostile_text_literally():
    output = plain_table(make_result())
    assert "\x1b" not in output
    assert "\x07" not in output
    assert "\u202e" not in output
    assert "\\x1b[31mred\\x1b]0;title\\x07" in output
    assert MARKUP in output  # shown, not interpreted as rich markup
    assert "\\u202eRTL" in output
    assert SCRIPT in output
    # Our own TOML config is not eaten as markup either.
    assert "    [origins]" in output
    assert '    allow = ["https://app.example"]' in output
    assert "2 checks passed, 1 skipped" in output
    assert "  skipped auth-ticket: no ticket endpoint \\x1b[31mred\\x1b]0;title\\x07" in output
    lines = output.splitlines()
    assert lines[0] == (f"wsguard scan {TARGET}  started 2026-12-02T11:00:00Z, 3.2s, 17 requests")
    # The table lists the findings most severe first.
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│ ")]
    assert [cell for cell in cells if cell] == ["CRITICAL", "MEDIUM", "LOW"]
    order = [
        output.index(f"{sev} {cid}")
        for sev, cid in (
            ("CRITICAL", "origin-foreign"),
            ("MEDIUM", "limits-frame-size"),
            ("LOW", "disclosure-server-header"),
        )
    ]
    assert order == sorted(order)
    assert "    sent:     <script>alert(1)</script>" in output
    assert "  remedy: Check the Origin header against an allow-list." in output


def test_table_in_colour_emits_only_rich_styling():
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=120)
    render_table(make_result(), console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in output  # rich did style it
    without_styles = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert "\x1b" not in without_styles
    assert "\x07" not in without_styles
    assert "\\x1b[31mred\\x1b]0;title\\x07" in without_styles
    assert MARKUP in without_styles


def test_table_without_findings():
    result = ScanResult(target=TARGET, started="2026-12-02T11:00:00Z", passed=["a", "b", "c"])
    output = plain_table(result)
    assert output.splitlines()[1] == "no findings"
    assert "3 checks passed, 0 skipped" in output
    assert "┃" not in output  # no table drawn


# --- HTML -------------------------------------------------------------------------------------


def test_html_escapes_everything_remote():
    page = to_html(make_result())
    assert page.startswith("<!DOCTYPE html>\n")
    assert (
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    ) in page
    assert f"<title>wsguard scan: {TARGET}</title>" in page
    assert SCRIPT not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in page
    assert "\u202e" not in page
    assert "\\x1b[31mred\\x1b]0;title\\x07" in page
    assert "\\u202eRTL" in page
    assert page.count('<section class="finding"') == 3
    ids = [m.group(1) for m in re.finditer(r'<section class="finding" id="finding-([^"]+)"', page)]
    assert ids == ["origin-foreign", "limits-frame-size", "disclosure-server-header"]
    assert '<span class="badge critical">1 critical</span>' in page
    assert '<span class="badge high">0 high</span>' in page
    assert '<span class="badge medium">1 medium</span>' in page
    assert '<span class="badge low">1 low</span>' in page
    assert '<pre class="config">[origins]\nallow = [&quot;https://app.example&quot;]</pre>' in page
    assert "<dt>Requests</dt><dd>17</dd>" in page
    assert "<dt>Duration</dt><dd>3.25 s</dd>" in page
    # No external resource of any kind.
    assert "<link" not in page
    assert "src=" not in page
    assert "<li><code>tls-plain</code></li>" in page
    assert "<li><code>auth-ticket</code>: no ticket endpoint \\x1b[31mred" in page


def test_html_links_only_http_urls():
    page = to_html(make_result())
    assert (
        '<a href="https://cheatsheetseries.owasp.org/ws.html" rel="noreferrer noopener">'
        "OWASP WebSocket Cheat Sheet</a>"
    ) in page
    assert "javascript:" not in "".join(re.findall(r'href="[^"]*"', page))
    assert "evil <code>javascript:alert(document.domain)</code>" in page
    assert "sneaky <code>javascript:alert(2)</code>" in page
    assert len(re.findall(r"<a href=", page)) == 1


def test_html_escapes_a_hostile_target():
    target = 'wss://x.test/"><img src=x onerror=alert(1)>'
    page = to_html(ScanResult(target=target, started="now"))
    assert "<img" not in page
    assert (
        "<title>wsguard scan: wss://x.test/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</title>"
        in page
    )
    assert '<p class="ok">no findings</p>' in page


# --- SARIF ------------------------------------------------------------------------------------


def test_sarif_is_valid_and_exact():
    text = to_sarif(make_result(), CHECKS)
    log = json.loads(text)
    errors = [error.message for error in sarif_validator().iter_errors(log)]
    assert errors == []
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "wsguard scan"
    assert driver["version"] == "0.1.0"
    assert driver["informationUri"] == "https://github.com/wsguard/wsguard"
    assert [rule["id"] for rule in driver["rules"]] == [
        "origin-foreign",
        "limits-frame-size",
        "disclosure-server-header",
        "tls-plain",
    ]
    assert [rule["name"] for rule in driver["rules"]] == [
        "OriginForeign",
        "LimitsFrameSize",
        "DisclosureServerHeader",
        "TlsPlain",
    ]
    origin = driver["rules"][0]
    assert origin == {
        "id": "origin-foreign",
        "name": "OriginForeign",
        "shortDescription": {"text": "Foreign Origin accepted"},
        "fullDescription": {
            "text": "Any web page can open a socket with the victim's cookies (CSWSH)."
        },
        "help": {
            "text": "Check the Origin header against an allow-list.\n\nwsguard configuration:\n"
            '[origins]\nallow = ["https://app.example"]',
            "markdown": "Check the Origin header against an allow-list.\n\n"
            "**wsguard configuration:**\n\n```toml\n"
            '[origins]\nallow = ["https://app.example"]\n```',
        },
        "helpUri": "https://cheatsheetseries.owasp.org/ws.html",
        "properties": {
            "tags": ["origin", "security", "external/cwe/cwe-1385"],
            "security-severity": "9.0",
            "precision": "high",
        },
        "defaultConfiguration": {"level": "error"},
    }
    frames, banner, tls = driver["rules"][1:]
    assert "helpUri" not in frames  # its only reference is javascript:
    assert frames["properties"]["security-severity"] == "7.5"
    assert frames["defaultConfiguration"] == {"level": "error"}
    assert banner["properties"] == {
        "tags": ["disclosure", "security"],
        "security-severity": "3.0",
        "precision": "high",
    }
    assert banner["defaultConfiguration"] == {"level": "note"}
    assert banner["help"] == {
        "text": "Drop or genericise the Server header.",
        "markdown": "Drop or genericise the Server header.",
    }
    assert tls["helpUri"] == "https://www.rfc-editor.org/rfc/rfc6455"

    results = run["results"]
    assert [r["ruleId"] for r in results] == [
        "origin-foreign",
        "limits-frame-size",
        "disclosure-server-header",
    ]
    assert [r["ruleIndex"] for r in results] == [0, 1, 2]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    for result in results:
        assert result["locations"] == [{"physicalLocation": {"artifactLocation": {"uri": TARGET}}}]
    summary = "handshake with Origin https://evil.example accepted " + ANSI
    expected = hashlib.sha256(f"origin-foreign\0{TARGET}\0{summary}".encode()).hexdigest()
    assert results[0]["partialFingerprints"] == {"wsguardFinding/v1": expected}
    assert results[2]["partialFingerprints"]["wsguardFinding/v1"] != expected
    assert results[0]["message"]["text"] == (
        f"{summary}\n\nEvidence:\n"
        "- foreign origin\n  sent: Origin: https://evil.example\n"
        "  received: \\x1b[31mred\\x1b]0;title\\x07\n"
        f"- echo\n  sent: {SCRIPT}\n  received: {SCRIPT}\n"
        f"- markup\n  sent: {MARKUP}\n  received: \\u202eRTL"
    )
    assert results[1]["message"]["text"] == "16 MiB frame accepted"
    assert run["invocations"] == [
        {
            "executionSuccessful": True,
            "startTimeUtc": "2026-12-02T11:00:00Z",
            "toolExecutionNotifications": [
                {
                    "descriptor": {"id": "auth-ticket"},
                    "level": "note",
                    "message": {"text": "no ticket endpoint " + ANSI},
                }
            ],
        }
    ]


def test_sarif_without_findings_is_valid():
    result = ScanResult(target=TARGET, started="2026-12-02T11:00:00Z", passed=["tls-plain"])
    log = json.loads(to_sarif(result, CHECKS))
    assert [error.message for error in sarif_validator().iter_errors(log)] == []
    run = log["runs"][0]
    assert run["results"] == []
    assert len(run["tool"]["driver"]["rules"]) == 4
    assert "version" not in run["tool"]["driver"]  # the result carries no version
    assert run["invocations"] == [
        {"executionSuccessful": True, "startTimeUtc": "2026-12-02T11:00:00Z"}
    ]


def test_sarif_adds_a_rule_for_a_check_outside_the_catalogue():
    log = json.loads(to_sarif(make_result(), [PASSING]))
    assert sarif_validator().is_valid(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [
        "tls-plain",
        "disclosure-server-header",
        "origin-foreign",
        "limits-frame-size",
    ]
    results = log["runs"][0]["results"]
    assert [(r["ruleId"], r["ruleIndex"]) for r in results] == [
        ("origin-foreign", 2),
        ("limits-frame-size", 3),
        ("disclosure-server-header", 1),
    ]


def test_the_validator_rejects_a_broken_log():
    """Guards the SARIF tests: the schema really constrains the output."""
    log = json.loads(to_sarif(make_result(), CHECKS))
    log["runs"][0]["results"][0]["level"] = "critical"
    assert not sarif_validator().is_valid(log)


# --- write_report -----------------------------------------------------------------------------


def test_write_report_rejects_unknown_format():
    console = Console(file=io.StringIO())
    with pytest.raises(ValueError, match=r"unknown report format 'xml' \(choose from table, "):
        write_report(make_result(), "xml", CHECKS, None, console)
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["json", "sarif", "html"])
def test_write_report_to_file(tmp_path, fmt):
    result = make_result()
    out = tmp_path / f"report.{fmt}"
    console = Console(file=io.StringIO())
    write_report(result, fmt, CHECKS, out, console)
    expected = {"json": to_json, "html": to_html}.get(fmt, lambda r: to_sarif(r, CHECKS))(result)
    assert out.read_text(encoding="utf-8") == expected + "\n"
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_write_report_to_console():
    console = Console(file=io.StringIO(), width=40)
    write_report(make_result(), "json", CHECKS, None, console)
    # Written byte for byte: not wrapped at the console's 40 columns, not highlighted.
    assert console.file.getvalue() == to_json(make_result()) + "\n"  # type: ignore[attr-defined]


def test_write_report_table_to_console_and_plain_file(tmp_path):
    out = tmp_path / "report.txt"
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=120)
    write_report(make_result(), "table", CHECKS, out, console)
    assert "\x1b[" in console.file.getvalue()  # type: ignore[attr-defined]
    text = out.read_text(encoding="utf-8")
    assert "\x1b" not in text
    assert text == plain_table(make_result())
    assert "2 checks passed, 1 skipped" in text
