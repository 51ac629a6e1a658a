"""The HTML scan report in real Chromium: hostile evidence is shown as text, no script runs, and a
full-page screenshot is kept in test-artifacts/ for a human to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsguard.scanner.model import Check, Evidence, Finding, Reference, ScanResult, Severity
from wsguard.scanner.report import to_html

pytestmark = [pytest.mark.browser]

TARGET = "wss://chat.example.test/ws"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
ANSI = "\x1b[31mred\x1b]0;title\x07"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def check(check_id: str, severity: Severity, *references: Reference) -> Check:
    return Check(
        id=check_id,
        group=check_id.split("-")[0],
        title=f"{check_id} failed",
        severity=severity,
        why="An attacker gains something.",
        remedy="Fix the server.",
        config=f"[{check_id.split('-')[0]}]\nenabled = true",
        references=references,
        cwe=1385,
    )


def hostile_result() -> ScanResult:
    origin = check(
        "origin-foreign",
        Severity.CRITICAL,
        Reference("OWASP", "https://cheatsheetseries.owasp.org/"),
        Reference("evil", "javascript:alert(3)"),
    )
    return ScanResult(
        target=TARGET,
        started="2026-12-02T11:00:00Z",
        duration=2.5,
        findings=[
            Finding(check("disclosure-banner", Severity.LOW), "Server: x/1.0 [bold]markup[/bold]"),
            Finding(
                origin,
                "foreign origin accepted " + ANSI,
                (Evidence("echo", SCRIPT, SCRIPT), Evidence("image", IMG, "\u202eRTL")),
            ),
            Finding(check("limits-frame-size", Severity.MEDIUM), "16 MiB frame accepted"),
        ],
        passed=["tls-plain"],
        skipped={"auth-ticket": "no ticket endpoint " + SCRIPT},
        requests=9,
        version="0.1.0",
    )


async def test_hostile_report_renders_as_text(browser, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(to_html(hostile_result()), encoding="utf-8")
    events: list[str] = []
    page = await browser.new_page()
    page.on("dialog", lambda dialog: events.append(f"dialog {dialog.message}"))
    page.on("pageerror", lambda error: events.append(f"pageerror {error}"))
    # Any request other than the page itself would be an external resource.
    page.on("request", lambda request: events.append(f"request {request.url}"))
    await page.goto(path.as_uri())

    assert await page.title() == f"wsguard scan: {TARGET}"
    assert await page.locator("section.finding").count() == 3
    ids = await page.locator("section.finding").evaluate_all("els => els.map((el) => el.id)")
    assert ids == [
        "finding-origin-foreign",
        "finding-limits-frame-size",
        "finding-disclosure-banner",
    ]
    evidence = page.locator("section#finding-origin-foreign table.evidence pre")
    assert await evidence.all_text_contents() == [SCRIPT, SCRIPT, IMG, "\\u202eRTL"]
    assert await page.locator("script").count() == 0
    assert await page.locator("img").count() == 0
    # Only the https reference is a link; the javascript: one is text.
    hrefs = await page.locator("a").evaluate_all("els => els.map((el) => el.href)")
    assert hrefs == ["https://cheatsheetseries.owasp.org/"]
    skipped = await page.locator("section.skipped li").all_text_contents()
    assert skipped == [f"auth-ticket: no ticket endpoint {SCRIPT}"]

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "scan-report.png"
    shot.unlink(missing_ok=True)
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    # Nothing ran and nothing was fetched: the only request is the file itself.
    assert events == [f"request {path.as_uri()}"]
    await page.close()
