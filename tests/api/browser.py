"""Driving the page in Debian's headless Chromium: where the browser is, where screenshots go,
signing in, and waiting on the page's state."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "api"


def wait_js(page: Page, expression: str, timeout: float = 20) -> None:
    """Poll a JS expression from here: the page's CSP forbids the eval that wait_for_function
    would run inside it (which is the point of the CSP)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(100)


def sign_in(page: Page, url: str, token: str, role: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#who-role")).to_have_text(role)
