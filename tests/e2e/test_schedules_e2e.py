"""Schedules in a real Chromium: an operator creates one from the page, sees its next fire times and its first
runs (fired by the served scheduler), pauses it; a viewer reads but cannot create. Screenshots go to
test-artifacts/schedules/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def test_an_operator_creates_a_schedule_sees_its_fire_times_and_runs_and_pauses_it(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "operator")
    page.get_by_role("link", name="Schedules").click()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Name").fill("e2e-every-2s")
    page.locator("#id_graph").select_option("t-count")
    page.get_by_label("Every").check()
    page.get_by_label("Interval in seconds").fill("2")
    page.get_by_label("Input (JSON, checked against the graph's input schema)").fill('{"target": 1}')
    page.get_by_role("button", name="Save schedule").click()
    expect(page).to_have_url(re.compile(r"/schedules/e2e-every-2s/$"))
    expect(page.locator("#schedule-state")).to_have_text("active")
    expect(page.locator("#next-fires li time")).to_have_count(5)
    for _ in range(20):  # the served scheduler fires a slot every 2 s
        page.reload()
        if page.locator("#fires a.mono").count() >= 1:
            break
        page.wait_for_timeout(500)
    first = page.locator("#fires a.mono").first
    expect(first).to_be_visible()
    shot(page, "schedule-active", folder="schedules", full_page=True)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#schedule-state")).to_have_text("paused")
    expect(page.locator("#next-fires")).to_contain_text("none while paused")
    first.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]{32}/$"))
    assert page.js_errors == []


def test_a_viewer_reads_schedules_but_cannot_create_or_pause(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto("/schedules/")
    expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
    expect(page.get_by_role("link", name="New schedule")).to_have_count(0)
    response = page.goto("/schedules/new/")
    assert response is not None and response.status == 403
