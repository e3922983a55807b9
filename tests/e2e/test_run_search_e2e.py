"""The runs list's field and error search in Chromium: the demo's incident-healing runs by ``service=search``,
the URL keeps the search, a bad path is explained above the list; at 1366x900 and at phone width (390x844).

Screenshots go to test-artifacts/run-search/.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.browser import shot, signed_in_page

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def _rows(page: Any) -> list[str]:
    """The trace ids the table lists (the href of each row's first link)."""
    hrefs = page.locator("table.runs tbody tr[data-run] td:first-child > a.mono").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return [h.strip("/").rsplit("/", 1)[-1] for h in hrefs]


def _search(page: Any, field: str, *, graph: str = "") -> None:
    page.get_by_label("Input/state field").fill(field)
    if graph:
        page.locator("select[name=graph]").select_option(graph)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"field="))


def _fits(page: Any) -> None:
    width, scroll = page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, f"the runs list is {scroll}px wide in {width}px"


def test_runs_are_found_by_an_input_field_and_the_url_keeps_the_search(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    page = signed_in_page(chromium_browser, server, "viewer")  # a viewer may search
    page.set_viewport_size(DESKTOP)
    page.goto("/runs/?graph=incident-healing")
    expect(page.locator("table.runs tbody tr[data-run]").first).to_be_visible()
    everything = _rows(page)
    assert len(everything) >= 4, everything  # the demo's four incidents (and the research run's child)

    _search(page, "service=search", graph="incident-healing")
    query = parse_qs(urlparse(page.url).query)
    assert query["field"] == ["service=search"] and query["graph"] == ["incident-healing"], page.url
    found = _rows(page)
    assert found and set(found) < set(everything), (found, everything)
    for trace in found:
        run = page.request.get(f"/api/runs/{trace}").json()
        assert run["graph"] == "incident-healing" and run["input"]["service"] == "search", run
    expect(page.get_by_label("Input/state field")).to_have_value("service=search")
    shot(page, "desktop-service-search", folder="run-search")
    page.get_by_text("How the field search works").click()
    expect(page.locator("#search-help p")).to_contain_text("attempts=3 finds 3")
    shot(page, "desktop-search-help", folder="run-search")

    # The URL is the saved search: opened again (a bookmark), it lists the same runs and fills the form.
    saved = page.url
    page.goto("/runs/")
    page.goto(saved)
    assert _rows(page) == found
    expect(page.get_by_label("Input/state field")).to_have_value("service=search")
    expect(page.locator("select[name=graph]")).to_have_value("incident-healing")

    # A second condition (the empty box after the first) and the error text narrow it further.
    page.locator("input[name=field]").nth(1).fill("severity~MED")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"severity"))
    assert parse_qs(urlparse(page.url).query)["field"] == ["service=search", "severity~MED"]
    assert set(_rows(page)) <= set(found) and _rows(page)

    page.goto("/runs/")
    page.get_by_label("Error contains").fill("UNREACHABLE")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"error=UNREACHABLE"))
    for _ in range(60):  # the worker may still be on its way to the failure
        if _rows(page):
            break
        page.wait_for_timeout(500)
        page.reload()
    failed = _rows(page)
    assert len(failed) == 1, failed  # the ledger incident: its pager is unreachable
    assert page.request.get(f"/api/runs/{failed[0]}").json()["input"]["service"] == "ledger"
    expect(page.locator(".counts a.status-failed b")).to_have_text("1")
    shot(page, "desktop-error-search", folder="run-search")

    _search(page, "incident..service=search")
    alert = page.locator("#search-problems")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Not searched:")
    expect(alert).to_contain_text("an empty key")
    expect(page.get_by_label("Input/state field")).to_have_value("incident..service=search")
    shot(page, "desktop-bad-path", folder="run-search")

    page.set_viewport_size(PHONE)
    page.goto(saved)
    assert _rows(page) == found
    _fits(page)
    shot(page, "phone-service-search", folder="run-search")
    page.get_by_text("How the field search works").click()
    expect(page.locator("#search-help p")).to_be_visible()
    _fits(page)
    shot(page, "phone-service-search-full", folder="run-search", full_page=True)
    _search(page, "incident..service=search")
    expect(page.locator("#search-problems")).to_be_visible()
    _fits(page)
    shot(page, "phone-bad-path", folder="run-search", full_page=True)
    assert not page.js_errors, page.js_errors
