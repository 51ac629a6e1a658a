"""Cross-Site WebSocket Hijacking in a real browser: the allowed origin connects, a foreign
origin's page running the hijack script is refused, and the audit log shows the 403."""

from __future__ import annotations

import logging

import pytest

from wsguard.audit import AuditLog
from wsguard.demo import attacker_pages, demo_pages, start_static_site
from wsguard.server.lifecycle import Server
from wsguard.testing import loopback_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_allowed_origin_connects_and_foreign_origin_is_refused(browser, audit, tmp_path):
    logger = logging.Logger("browser-audit")
    logger.addHandler(audit)
    settings = loopback_settings(auth={"required": False})
    async with Server(settings, pages=demo_pages(), audit=AuditLog(logger=logger)) as server:
        # Port 0: a port "next to" the server's may be anyone's.
        foreign = await start_static_site(attacker_pages(), 0)
        foreign_port = foreign.addresses[0][1]
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/")
            await page.wait_for_function(
                "() => document.getElementById('status').textContent === 'open'", timeout=10_000
            )
            await page.wait_for_function(
                "() => document.querySelectorAll('#log li').length >= 1", timeout=10_000
            )
            first = await page.text_content("#log li")
            assert first is not None
            assert '"push":"welcome"' in first

            attacker = await browser.new_page()
            await attacker.goto(
                f"http://127.0.0.1:{foreign_port}/?target=ws://127.0.0.1:{server.port}/ws"
            )
            await attacker.wait_for_function(
                "() => document.getElementById('result').className !== ''", timeout=10_000
            )
            result = await attacker.text_content("#result")
            assert result is not None
            assert result.startswith("BLOCKED")
            await attacker.screenshot(path=str(tmp_path / "attacker.png"))
        finally:
            await foreign.cleanup()
    # Only WebSocket handshakes count here (the browser also asks for /favicon.ico: a 404).
    rejected = [e for e in audit.rejected() if e["path"] == "/ws"]
    assert [(e["status"], e["reason"], e["origin"]) for e in rejected] == [
        (403, "origin_not_allowed", f"http://127.0.0.1:{foreign_port}")
    ]
