"""The demo in real Chromium: two users chat, a stored-XSS payload from one is shown to the other
as text and never runs, the ticker table updates live, a forbidden publish shows its 403, and
the attacker's page shows both of its hijack attempts blocked."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from wsguard.audit import AuditLog
from wsguard.demo import running_demo

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XSS = '<img src=x onerror="window.__xss=1">'
HELLO = "hello bob, 1 < 2 & 'quotes' stay \"text\""
SUBSCRIBED_TO_CHAT = """() => Array.from(document.querySelectorAll('#log li')).some((li) =>
  li.textContent.includes('"ok":true') && li.textContent.endsWith('(subscribe chat:lobby)'))"""


# Every page script below is a function: a bare expression would need eval, which the demo's
# Content-Security-Policy forbids (Playwright then fails whenever it has to poll).


async def open_as(browser: Any, url: str, user: str, errors: list[str]) -> Any:
    page = await browser.new_page()
    page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
    page.on("dialog", lambda dialog: errors.append(f"{user}: dialog {dialog.message}"))
    await page.goto(f"{url}?user={user}")
    await page.wait_for_function(
        f"() => document.getElementById('who').textContent === {user!r}", timeout=10_000
    )
    await page.wait_for_function(SUBSCRIBED_TO_CHAT, timeout=10_000)
    return page


async def chat_texts(page: Any) -> list[str]:
    texts: list[str] = await page.eval_on_selector_all(
        "#chat li .text", "items => items.map((item) => item.textContent)"
    )
    return texts


async def test_demo_chat_ticker_and_attacker_in_chromium(browser, audit, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="wsguard.demo")
    logger = logging.Logger("demo-browser-audit")
    logger.addHandler(audit)
    errors: list[str] = []
    async with running_demo(
        0, attacker_port=0, ticker_interval=0.25, audit=AuditLog(logger=logger)
    ) as demo:
        alice = await open_as(browser, demo.url, "alice", errors)
        bob = await open_as(browser, demo.url, "bob", errors)

        # Alice types the stored-XSS payload, then a plain line, into the chat form.
        for text in (XSS, HELLO):
            await alice.fill("#chat-text", text)
            await alice.click("#chat-form button[type=submit]")
        # And the page's own payload button (onerror=alert(1): a dialog, if it ever ran).
        await alice.click("#xss-button")
        await bob.wait_for_function(
            "() => document.querySelectorAll('#chat li').length >= 3", timeout=10_000
        )
        assert await chat_texts(bob) == [XSS, HELLO, "<img src=x onerror=alert(1)>"]
        for page in (alice, bob):
            assert await page.evaluate("() => typeof window.__xss") == "undefined"
            assert await page.evaluate("() => document.querySelectorAll('#chat img').length") == 0
        # Alice's own lines come back to her marked as hers.
        await alice.wait_for_function(
            "() => document.querySelectorAll('#chat li.mine').length === 3", timeout=10_000
        )

        # The ticker table fills and keeps updating.
        await bob.wait_for_function(
            "() => Number(document.getElementById('ticker-updates').textContent) >= 2",
            timeout=10_000,
        )
        symbols = await bob.eval_on_selector_all(
            "#ticker-body tr", "rows => rows.map((row) => row.cells[0].textContent).sort()"
        )
        assert symbols == ["ACME", "GLOBEX"]
        first_price = await bob.text_content("#ticker-body tr td:nth-child(2)")
        assert first_price is not None
        assert float(first_price) > 0

        # A read-only channel: the publish is refused with 403, shown in the log.
        await alice.click("#publish-ticker")
        await alice.wait_for_function(
            """() => Array.from(document.querySelectorAll('#log li.error')).some(
              (li) => li.textContent.includes('"code":403')
                && li.textContent.endsWith('(publish ticker:ACME)'))""",
            timeout=10_000,
        )

        # The attacker's page, on another origin, aimed at the demo server.
        attacker = await browser.new_page()
        target = f"ws://127.0.0.1:{demo.server.port}/ws"
        await attacker.goto(f"{demo.attacker_url}?target={target}")
        await attacker.wait_for_function(
            """() => ['result', 'ticket-result'].every(
              (id) => document.getElementById(id).className !== '')""",
            timeout=10_000,
        )
        socket_result = await attacker.text_content("#result")
        ticket_result = await attacker.text_content("#ticket-result")
        await alice.screenshot(path=str(tmp_path / "alice.png"), full_page=True)
        await attacker.screenshot(path=str(tmp_path / "attacker.png"))
        assert socket_result is not None
        assert socket_result.startswith("BLOCKED"), socket_result
        assert ticket_result is not None
        assert ticket_result.startswith("BLOCKED"), ticket_result
        assert await attacker.get_attribute("#result", "class") == "blocked"
        assert await attacker.get_attribute("#ticket-result", "class") == "blocked"

    assert errors == []
    attacker_origin = demo.attacker_url.rstrip("/")
    refused = [
        (e["path"], e["status"], e["reason"])
        for e in audit.rejected()
        if e.get("origin") == attacker_origin and e["path"] == "/ws"
    ]
    assert refused == [("/ws", 403, "origin_not_allowed")]
    # The ticket endpoint itself refused the attacker's fetch (CORS alone would also hide the
    # response from the page, but the ticket is never minted).
    demo_log = [r.getMessage() for r in caplog.records if r.name == "wsguard.demo"]
    assert [m for m in demo_log if "refused" in m] == [
        f"demo ticket refused: 403 cross_site (Origin {attacker_origin}, Sec-Fetch-Site same-site)"
    ]
    assert sorted(m for m in demo_log if "minted" in m) == [
        f"demo ticket minted for {user} at http://127.0.0.1:{demo.server.port}"
        for user in ("alice", "bob")
    ]
