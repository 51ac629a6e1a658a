"""Headless Chromium (Debian's package) driven by Playwright, for real browser behaviour."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        if os.environ.get("WSGUARD_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (WSGUARD_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed (scripts/system-deps installs it)")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=path, args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield context
            finally:
                await context.close()
