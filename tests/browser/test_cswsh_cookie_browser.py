"""The CSWSH proof of concept of the source documents, in real Chromium, against a server that
authenticates with a session cookie: the victim's browser holds the cookie, the attacker's page
(another origin) opens a socket with it — and gets nothing."""

from __future__ import annotations

import logging

import pytest

from wsguard.audit import AuditLog
from wsguard.demo import attacker_pages, demo_pages, start_static_site
from wsguard.server.lifecycle import Server
from wsguard.sessions import issue_session
from wsguard.testing import loopback_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SECRET = "c" * 48
ENV = {"WSGUARD_COOKIE_SECRET": SECRET}
OPEN_WITH_NONCE = """async (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onmessage = (event) => { resolve(event.data); ws.close(); };
  ws.onclose = (event) => resolve(`closed ${event.code}`);
})"""


async def hijack_attempt(browser, attacker_port: int, server_port: int) -> str:
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{attacker_port}/?target=ws://127.0.0.1:{server_port}/ws")
    await page.wait_for_function(
        "() => document.getElementById('result').className !== ''", timeout=10_000
    )
    return await page.text_content("#result") or ""


@pytest.mark.parametrize(
    ("origins", "expected_reason"),
    [
        pytest.param({}, "origin_not_allowed", id="origin-check"),
        # Defence in depth: even a server misconfigured to accept any origin refuses the
        # cookie without the CSRF nonce the attacker cannot read.
        pytest.param({"allow_any_origin": True}, "csrf_missing", id="nonce-check"),
    ],
)
async def test_foreign_page_with_the_victims_cookie_cannot_open_a_socket(
    browser, audit, origins, expected_reason
):
    logger = logging.Logger("cswsh-audit")
    logger.addHandler(audit)
    settings = loopback_settings(auth={"required": True, "methods": ("cookie",)}, origins=origins)
    cookie, nonce = issue_session("victim", secret=SECRET.encode())
    await browser.add_cookies(
        [
            {
                "name": "session",
                "value": cookie,
                "domain": "127.0.0.1",
                "path": "/",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    async with Server(
        settings, pages=demo_pages(), audit=AuditLog(logger=logger), env=ENV
    ) as server:
        # Port 0: a port "next to" the server's may be anyone's.
        attacker_site = await start_static_site(attacker_pages(), 0)
        attacker_port = attacker_site.addresses[0][1]
        try:
            # The victim's own page, with the nonce its backend rendered into it, connects.
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/")
            welcome = await page.evaluate(
                OPEN_WITH_NONCE, f"ws://127.0.0.1:{server.port}/ws?csrf={nonce}"
            )
            assert '"user":"victim"' in welcome
            assert '"auth":"cookie"' in welcome

            result = await hijack_attempt(browser, attacker_port, server.port)
            assert result.startswith("BLOCKED"), result
        finally:
            await attacker_site.cleanup()
    handshakes = [e for e in audit.events if e.get("path") == "/ws"]
    # Pages on this server's own origin open /ws too (the demo page): keep the attacker's.
    attacker = [e for e in handshakes if e.get("origin") == f"http://127.0.0.1:{attacker_port}"]
    assert [(e["event"], e.get("status"), e.get("reason")) for e in attacker] == [
        ("handshake_rejected", 403, expected_reason)
    ]
