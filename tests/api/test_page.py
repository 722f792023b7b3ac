"""The page in Debian's headless Chromium (Playwright, never a downloaded browser): a viewer
signs in, finds a call, plays it to its end and seeks; an auditor downloads it and then sees
those accesses in the audit log. Screenshots go to build/test-artifacts/api/."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from callrec.api.tokens import Role
from tests.api.browser import ARTIFACTS, CHROMIUM, sign_in, wait_js
from tests.api.conftest import Seeded
from tests.api.harness import Replica, get_json


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: ./run installs Debian's chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()


def find(page: Page, seeded: Seeded, party: str) -> None:
    page.fill("#f-party", party)
    page.click("#search summary")
    page.fill("#f-cluster", seeded.cluster)
    page.click("#search button[type=submit]")
    expect(page.locator("#result-count")).to_have_text("2 calls")


def test_viewer_plays_and_seeks_auditor_downloads_and_sees_it(
    browser: Browser, replica: Replica, seeded: Seeded, tokens: dict[Role, str]
) -> None:
    key = seeded.key(1001)
    context = browser.new_context(viewport={"width": 1440, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers.get("range", ""))
            if "/recording" in r.url else None)
    page.goto(replica.url)
    page.screenshot(path=ARTIFACTS / "0-sign-in.png")
    sign_in(page, replica.url, tokens[Role.viewer], "viewer")
    page.click(".tab[data-view=live]")
    expect(page.locator("#live-list .parties", has_text="1003")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "1-live.png")
    page.click(".tab[data-view=calls]")
    find(page, seeded, "1001")
    page.click(f"tr[data-key='{key}']")
    expect(page.locator("#player")).to_be_visible()
    expect(page.locator("#download")).to_be_hidden()  # viewers play, auditors download
    wait_js(page, "document.getElementById('audio').readyState >= 1")
    wave = page.locator("#wave")
    box = wave.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)  # seek
    wait_js(page, "Math.abs(document.getElementById('audio').currentTime - 30) < 1")
    page.click("#speed")  # 1.5x
    page.click("#speed")  # 2x
    page.click("#play")
    wait_js(page, "document.getElementById('audio').ended", timeout=30)
    page.screenshot(path=ARTIFACTS / "2-played.png")
    seeks = [r for r in ranges if r.startswith("bytes=") and not r.startswith("bytes=0-")]
    assert seeks, f"the seek made no Range request past the start: {ranges}"
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=ARTIFACTS / "3-phone.png", full_page=True)
    context.close()

    context = browser.new_context(viewport={"width": 1440, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    sign_in(page, replica.url, tokens[Role.auditor], "auditor")
    find(page, seeded, "1001")
    page.click(f"tr[data-key='{key}']")
    with page.expect_download() as download:
        page.click("#download")
    saved = download.value.path()
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == seeded.recordings[key].sha256
    page.click("#verify")
    expect(page.locator("#verify-result")).to_contain_text("Integrity verified")
    page.screenshot(path=ARTIFACTS / "4-auditor-verified.png")
    page.fill("#f-party", "")
    page.select_option("#f-status", "ABNORMAL")
    page.click("#search button[type=submit]")
    expect(page.locator("#result-count")).to_have_text("1 call")
    page.click(f"tr[data-key='{seeded.key(1002)}']")
    expect(page.locator("#d-badges")).to_contain_text("recorder lost")
    expect(page.locator("#d-badges")).to_contain_text("partial")
    expect(page.locator("#d-gaps")).to_contain_text("lost packets")
    page.wait_for_timeout(500)  # the waveform's peaks
    page.screenshot(path=ARTIFACTS / "4-abnormal-partial.png")
    page.click(".tab[data-view=audit]")
    page.fill("#a-call", key)
    page.click("#audit-form button")
    viewer_rows = page.locator("#audit-rows tr", has_text="viewer")
    expect(viewer_rows.first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "5-audit.png")
    context.close()

    # The server saw the browser's Range requests: every access is in the audit log.
    status, log = get_json(f"{replica.url}/api/v1/audit?call_key={key}", tokens[Role.auditor])
    assert status == 200
    entries = log["data"]
    actions = {(e["action"], e["role"]) for e in entries}  # type: ignore[index, union-attr]
    assert {("PLAY", "viewer"), ("DOWNLOAD", "auditor"), ("VERIFY", "auditor")} <= actions
    assert any(e["role"] == "viewer" and e["range_start"] > 0  # type: ignore[index]
               for e in entries), "the server saw no Range request of the seek"
