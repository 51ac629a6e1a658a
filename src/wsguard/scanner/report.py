"""Report writers for ``wsguard scan``: JSON, SARIF 2.1.0, a self-contained HTML page and a rich
terminal table.

Rules every writer here follows:

* Findings are listed most severe first (:meth:`ScanResult.sorted_findings`).
* Remote-derived text (summaries, evidence, skipped reasons, the target) is hostile. The terminal
  table passes it through :func:`~wsguard.scanner.model.printable` and wraps it in
  :class:`rich.text.Text`, so neither ANSI escapes nor rich markup from a server is interpreted.
  The HTML page runs it through :func:`printable` (with a generous limit, so bidi and control
  characters become visible escapes) and then :func:`html.escape`; the page has a
  Content-Security-Policy that forbids scripts and every external resource, and only
  ``http(s)`` reference URLs become links.
* JSON keeps the data as stored (machine readers escape for their own medium); SARIF messages
  are meant for display, so evidence in them goes through :func:`printable`.
* The writers do no I/O except :func:`write_report`, which writes to a file or the console.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wsguard.scanner.model import Check, Finding, ScanResult, Severity, printable

__all__ = [
    "FORMATS",
    "fingerprint",
    "render_table",
    "to_html",
    "to_json",
    "to_sarif",
    "write_report",
]

FORMATS: Final = ("table", "json", "sarif", "html")

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI: Final = "https://github.com/wsguard/wsguard"
FINGERPRINT_KEY: Final = "wsguardFinding/v1"

# Most severe first: the order of the JSON summary and of the HTML badges.
_ORDER: Final = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)

# Per severity: SARIF level, SARIF security-severity, rich style, HTML badge colour. GitHub code
# scanning bands security-severity as critical >= 9.0, high >= 7.0, medium >= 4.0, low > 0, so
# each value sits inside the band of the same name.
_STYLE: Final[dict[Severity, tuple[str, str, str, str]]] = {
    Severity.CRITICAL: ("error", "9.0", "bold white on red", "#8b0000"),
    Severity.HIGH: ("error", "7.5", "bold red", "#d32f2f"),
    Severity.MEDIUM: ("warning", "5.0", "yellow", "#b26a00"),
    Severity.LOW: ("note", "3.0", "cyan", "#1565c0"),
}
_SARIF_LEVEL: Final = {severity: style[0] for severity, style in _STYLE.items()}
_SECURITY_SEVERITY: Final = {severity: style[1] for severity, style in _STYLE.items()}
_RICH_STYLE: Final = {severity: style[2] for severity, style in _STYLE.items()}
_HTML_COLOUR: Final = {severity: style[3] for severity, style in _STYLE.items()}

# A whole http(s) URL with no whitespace or control characters: browsers strip leading
# whitespace and control characters before reading the scheme, so anything looser could let
# " javascript:..." through.
_SAFE_URL: Final = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)

# Generous: a page can show far more than a terminal line, but a hostile server must not be
# able to make the report arbitrarily large.
_HTML_LIMIT: Final = 20_000


def _counts(result: ScanResult) -> dict[str, int]:
    counts = {severity.label: 0 for severity in _ORDER}
    for finding in result.findings:
        counts[finding.level.label] += 1
    return counts


# --- JSON -------------------------------------------------------------------------------------


def _finding_json(finding: Finding) -> dict[str, Any]:
    check = finding.check
    return {
        "id": check.id,
        "title": check.title,
        "severity": finding.level.label,
        "group": check.group,
        "summary": finding.summary,
        "why": check.why,
        "remedy": check.remedy,
        "config": check.config,
        "cwe": check.cwe,
        "references": [{"label": ref.label, "url": ref.url} for ref in check.references],
        "evidence": [
            {"label": ev.label, "sent": ev.sent, "received": ev.received} for ev in finding.evidence
        ],
    }


def to_json(result: ScanResult) -> str:
    """Render the scan as a stable JSON document (keys in a fixed order, two-space indent).

    Args:
        result: the finished scan.

    Returns:
        The JSON text, without a trailing newline.
    """
    document = {
        "tool": "wsguard",
        "version": result.version,
        "target": result.target,
        "started": result.started,
        "duration": result.duration,
        "requests": result.requests,
        "summary": _counts(result),
        "findings": [_finding_json(f) for f in result.sorted_findings()],
        "passed": list(result.passed),
        "skipped": dict(result.skipped),
        "inconclusive": list(result.inconclusive),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


# --- SARIF ------------------------------------------------------------------------------------


def _rule_name(check_id: str) -> str:
    """``"origin-foreign"`` → ``"OriginForeign"`` (SARIF rule names are identifiers)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", check_id))


def _rule(check: Check) -> dict[str, Any]:
    text = check.remedy
    markdown = check.remedy
    if check.config:
        text += f"\n\nwsguard configuration:\n{check.config}"
        markdown += f"\n\n**wsguard configuration:**\n\n```toml\n{check.config}\n```"
    tags = [check.group, "security"]
    if check.cwe is not None:
        tags.append(f"external/cwe/cwe-{check.cwe}")
    rule: dict[str, Any] = {
        "id": check.id,
        "name": _rule_name(check.id),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": check.why},
        "help": {"text": text, "markdown": markdown},
    }
    # helpUri must be an absolute URI; only the first http(s) reference qualifies.
    if check.references and _SAFE_URL.fullmatch(check.references[0].url):
        rule["helpUri"] = check.references[0].url
    rule["properties"] = {
        "tags": tags,
        "security-severity": _SECURITY_SEVERITY[check.severity],
        "precision": "high",
    }
    rule["defaultConfiguration"] = {"level": _SARIF_LEVEL[check.severity]}
    return rule


def _message(finding: Finding) -> str:
    lines = [finding.summary]
    if finding.evidence:
        lines.append("")
        lines.append("Evidence:")
    for ev in finding.evidence:
        lines.append(f"- {printable(ev.label)}")
        if ev.sent:
            lines.append(f"  sent: {printable(ev.sent)}")
        if ev.received:
            lines.append(f"  received: {printable(ev.received)}")
    return "\n".join(lines)


def fingerprint(rule_id: str, target: str, summary: str) -> str:
    """The SARIF ``partialFingerprints`` value: SHA-256 hex of the three fields NUL-joined.

    NUL cannot occur in a check id or a URL, so two different triples never hash the same
    input; the same finding on the same target keeps its fingerprint across scans.
    """
    return hashlib.sha256(f"{rule_id}\0{target}\0{summary}".encode()).hexdigest()


def to_sarif(result: ScanResult, checks: Sequence[Check]) -> str:
    """Render the scan as a SARIF 2.1.0 log with one run.

    Args:
        result: the finished scan.
        checks: the catalogue that ran; one rule per check, in this order. A finding whose
            check is missing from it gets its rule appended, so every ``ruleIndex`` is valid.

    Returns:
        The SARIF JSON text, without a trailing newline.
    """
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for check in [*checks, *(f.check for f in result.findings)]:
        if check.id not in index:
            index[check.id] = len(rules)
            rules.append(_rule(check))
    results = [
        {
            "ruleId": finding.check.id,
            "ruleIndex": index[finding.check.id],
            "level": _SARIF_LEVEL[finding.level],
            "message": {"text": _message(finding)},
            # No file exists for a URL; an artifactLocation whose uri is the target is valid
            # SARIF and is what code-scanning UIs accept for non-file targets.
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": result.target}}}],
            "partialFingerprints": {
                FINGERPRINT_KEY: fingerprint(finding.check.id, result.target, finding.summary)
            },
        }
        for finding in result.sorted_findings()
    ]
    driver: dict[str, Any] = {"name": "wsguard scan"}
    if result.version:
        driver["version"] = result.version
    driver["informationUri"] = INFORMATION_URI
    driver["rules"] = rules
    invocation: dict[str, Any] = {"executionSuccessful": True, "startTimeUtc": result.started}
    if result.skipped:
        # Skipped checks are not results; SARIF's place for "could not run" is a notification.
        invocation["toolExecutionNotifications"] = [
            {"descriptor": {"id": check_id}, "level": "note", "message": {"text": reason}}
            for check_id, reason in result.skipped.items()
        ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "invocations": [invocation], "results": results}],
    }
    return orjson.dumps(log, option=orjson.OPT_INDENT_2).decode()


# --- HTML -------------------------------------------------------------------------------------


def _e(text: str) -> str:
    """Escape our own (catalogue) text for HTML."""
    return html.escape(text, quote=True)


def _r(text: str) -> str:
    """Escape remote text for HTML: control and bidi characters made visible first."""
    return html.escape(printable(text, limit=_HTML_LIMIT), quote=True)


def _badge(severity: Severity, text: str | None = None) -> str:
    label = _e(text if text is not None else severity.label)
    return f'<span class="badge {severity.label}">{label}</span>'


def _link(label: str, url: str) -> str:
    if _SAFE_URL.fullmatch(url):
        return f'<a href="{_e(url)}" rel="noreferrer noopener">{_e(label)}</a>'
    # Not http(s): show it as text so a javascript: or data: URL can never be followed.
    return f"{_e(label)} <code>{_e(url)}</code>"


_CSS: Final = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;"
    "color:#222;background:#fafafa}"
    "header,section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem 1.5rem;"
    "margin-bottom:1rem}"
    "h1{font-size:1.5rem;word-break:break-all}h2{font-size:1.2rem}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}"
    "dd{margin:0;word-break:break-all}"
    ".badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;color:#fff;"
    "font-weight:600;font-size:.85rem;margin-right:.4rem}"
    + "".join(f".badge.{s.label}{{background:{c}}}" for s, c in _HTML_COLOUR.items())
    + "pre{background:#f3f3f3;padding:.5rem;border-radius:4px;white-space:pre-wrap;"
    "word-break:break-all;margin:0;unicode-bidi:isolate;direction:ltr}"
    "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:.4rem;"
    "vertical-align:top;text-align:left}code{word-break:break-all}"
    ".ok{color:#2e7d32;font-weight:600}"
)


def _finding_html(finding: Finding) -> str:
    check = finding.check
    parts = [
        f'<section class="finding" id="finding-{_e(check.id)}">',
        f"<h2>{_badge(finding.level)}<code>{_e(check.id)}</code> {_e(check.title)}</h2>",
        f'<p class="summary">{_r(finding.summary)}</p>',
        f"<h3>Why it matters</h3><p>{_e(check.why)}</p>",
        f"<h3>Remedy</h3><p>{_e(check.remedy)}</p>",
    ]
    if check.config:
        parts.append(f'<h3>wsguard configuration</h3><pre class="config">{_e(check.config)}</pre>')
    if check.references or check.cwe is not None:
        items = [f"<li>{_link(ref.label, ref.url)}</li>" for ref in check.references]
        if check.cwe is not None:
            items.append(f"<li>CWE-{check.cwe}</li>")
        parts.append(f"<h3>References</h3><ul>{''.join(items)}</ul>")
    if finding.evidence:
        rows = "".join(
            f"<tr><td>{_r(ev.label)}</td><td><pre>{_r(ev.sent)}</pre></td>"
            f"<td><pre>{_r(ev.received)}</pre></td></tr>"
            for ev in finding.evidence
        )
        parts.append(
            '<h3>Evidence</h3><table class="evidence"><thead><tr><th>Observation</th>'
            f"<th>Sent</th><th>Received</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def to_html(result: ScanResult) -> str:
    """Render the scan as a self-contained HTML5 page (inline CSS, no scripts, no fetches).

    Args:
        result: the finished scan.

    Returns:
        The page's HTML text.
    """
    counts = _counts(result)
    badges = " ".join(_badge(s, f"{counts[s.label]} {s.label}") for s in _ORDER)
    findings = "\n".join(_finding_html(f) for f in result.sorted_findings())
    if not result.findings:
        findings = '<section><p class="ok">no findings</p></section>'
    passed = "".join(f"<li><code>{_e(check_id)}</code></li>" for check_id in result.passed)
    skipped = "".join(
        f"<li><code>{_e(check_id)}</code>: {_r(reason)}</li>"
        for check_id, reason in result.skipped.items()
    )
    version = f" {_e(result.version)}" if result.version else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsguard scan: {_r(result.target)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>wsguard scan: {_r(result.target)}</h1>
<dl>
<dt>Target</dt><dd><code>{_r(result.target)}</code></dd>
<dt>Started</dt><dd>{_r(result.started)}</dd>
<dt>Duration</dt><dd>{result.duration:.2f} s</dd>
<dt>Requests</dt><dd>{result.requests}</dd>
<dt>Tool</dt><dd>wsguard{version}</dd>
</dl>
</header>
<section class="summary"><h2>Summary</h2><p>{badges}</p></section>
{findings}
<section class="passed"><h2>Passed checks ({len(result.passed)})</h2><ul>{passed}</ul></section>
<section class="skipped"><h2>Skipped checks ({len(result.skipped)})</h2><ul>{skipped}</ul>
</section>
</body>
</html>
"""


# --- terminal table ---------------------------------------------------------------------------


def _severity_text(severity: Severity) -> Text:
    return Text(severity.label.upper(), style=_RICH_STYLE[severity])


def render_table(result: ScanResult, console: Console) -> None:
    """Print the scan to a rich console: header, findings table, details, passed/skipped.

    Every string is printed as a :class:`Text`, never as markup: remote strings because a
    server could send ``[bold red]`` or ANSI escapes, our own because TOML config lines such
    as ``[origins]`` would otherwise be read as markup tags.

    Args:
        result: the finished scan.
        console: where to print.
    """

    def say(text: str, style: str = "") -> None:
        # soft_wrap keeps each hostile string on one line, so what is shown is exactly what
        # printable() produced, with no wrapping points inserted into it.
        console.print(Text(text, style=style), soft_wrap=True)

    console.print(
        Text.assemble(
            ("wsguard scan ", "bold"),
            (printable(result.target), "bold"),
            f"  started {printable(result.started)}, {result.duration:.1f}s, "
            f"{result.requests} requests",
        ),
        soft_wrap=True,
    )
    findings = result.sorted_findings()
    if not findings:
        say("no findings", "bold green")
    else:
        table = Table(header_style="bold")
        table.add_column("Severity", no_wrap=True)
        table.add_column("Check", no_wrap=True)
        table.add_column("Title")
        table.add_column("Summary")
        for finding in findings:
            table.add_row(
                _severity_text(finding.level),
                Text(finding.check.id),
                Text(finding.check.title),
                Text(printable(finding.summary)),
            )
        console.print(table)
    for finding in findings:
        console.print()
        heading = Text.assemble(_severity_text(finding.level), " ", (finding.check.id, "bold"))
        console.print(heading, Text(f" {printable(finding.summary)}"), soft_wrap=True)
        for ev in finding.evidence:
            say(f"  evidence: {printable(ev.label)}")
            if ev.sent:
                say(f"    sent:     {printable(ev.sent)}")
            if ev.received:
                say(f"    received: {printable(ev.received)}")
        console.print(Text(f"  remedy: {finding.check.remedy}"))
        if finding.check.config:
            say("  wsguard configuration:")
            for line in finding.check.config.splitlines():
                say(f"    {line}", "green")
    console.print()
    say(f"{len(result.passed)} checks passed, {len(result.skipped)} skipped")
    for check_id, reason in result.skipped.items():
        say(f"  skipped {check_id}: {printable(reason)}")


# --- output -----------------------------------------------------------------------------------


def write_report(
    result: ScanResult,
    fmt: str,
    checks: Sequence[Check],
    out: Path | None,
    console: Console,
) -> None:
    """Write the report in ``fmt`` to ``out`` (UTF-8) or, without ``out``, to the console.

    ``table`` always prints to the console; with ``out`` it also writes a plain-text copy
    (no colour, 120 columns) there.

    Args:
        result: the finished scan.
        fmt: one of :data:`FORMATS`.
        checks: the catalogue that ran (SARIF rules).
        out: the file to write, or ``None``.
        console: the terminal console.

    Raises:
        ValueError: ``fmt`` is not a known format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "table":
        render_table(result, console)
        if out is not None:
            with out.open("w", encoding="utf-8") as handle:
                plain = Console(
                    file=handle, color_system=None, no_color=True, width=120, highlight=False
                )
                render_table(result, plain)
        return
    text = {"json": to_json, "html": to_html}.get(fmt, lambda r: to_sarif(r, checks))(result)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    else:
        # Bypass rich rendering: the document must reach stdout byte for byte, unwrapped.
        console.file.write(text + "\n")
        console.file.flush()
