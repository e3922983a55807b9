"""The run page opened before its run has a step: Play and Verify start disabled and are enabled live, and the
player's numbering agrees with the Steps fact.

Screenshots go to test-artifacts/run-page-state/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot, signed_in_page
from tests.e2e.test_approvals_e2e import start_run

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def test_verify_is_enabled_live_once_a_run_opened_before_its_first_step_completes(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    marker = server["var"] / "run-page-state-marker"
    trace = start_run(server, "e2e-live", {"marker": str(marker), "target": 3}, seed=1)
    page = signed_in_page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{trace}/")
    expect(page.locator("#step-position")).to_have_text("No steps yet")
    expect(page.get_by_role("button", name="Verify run")).to_be_disabled()
    expect(page.get_by_role("button", name="Play")).to_be_disabled()
    page.evaluate("window.__notReloaded = true")
    marker.write_text("go")
    expect(page.locator("#run-status .status")).to_have_text("COMPLETED", timeout=20_000)
    expect(page.locator("#step-position")).to_have_text("Step 3 of steps 0 to 3")
    expect(page.locator("[data-fact=steps]")).to_have_text("4")
    expect(page.get_by_role("button", name="Verify run")).to_be_enabled()
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded"
    page.get_by_role("button", name="Verify run").click()
    expect(page.locator("#verify-panel").get_by_role("status")).to_contain_text("All 4 steps were re-executed")
    shot(page, "verified-live", folder="run-page-state")
    page.goto("/runs/?trace=" + trace[:12])
    expect(page.locator(f"tr:has(a[href='/runs/{trace}/']) td").nth(3)).to_have_text(re.compile(r"^4"))
    assert page.js_errors == []


def test_a_run_opens_by_the_12_character_id_the_lists_show(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    page = signed_in_page(chromium_browser, server, "viewer")
    page.goto("/runs/")
    short = page.locator("table.runs tbody a.mono").first.inner_text()
    assert len(short) == 12
    page.goto(f"/runs/{short}/")
    expect(page).to_have_url(re.compile(rf"/runs/{short}[0-9a-f]{{20}}/$"))
    expect(page.get_by_role("heading", name=re.compile("^Run "))).to_be_visible()
    response = page.goto("/runs/000000000000/")
    assert response is not None and response.status == 404
    expect(page.locator("#not-found-reason")).to_have_text("No run's id starts with 000000000000.")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
