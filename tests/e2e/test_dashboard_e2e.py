"""The dashboard in a real Chromium against `cmo_serve` (daphne + a worker) in a child process.

Screenshots of each page (1366x768) go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def test_operator_starts_a_run_watches_it_live_and_steps_through_it(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    login = chromium_browser.new_page(viewport={"width": 1366, "height": 768})
    login.goto(server["url"] + "/runs/")
    expect(login.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(login, "01-login")
    login.close()

    page = _page(chromium_browser, server, "operator")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shot(page, "02-home")
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    shot(page, "03-runs-list")

    page.get_by_role("link", name="Start a run").first.click()
    # Loaded, so the deferred script that submits on change is listening (a change made before is not seen).
    page.wait_for_url(re.compile(r"/runs/new/"))
    page.get_by_label("Graph", exact=True).select_option("incident-healing")
    page.wait_for_url(re.compile(r"graph=incident-healing"))
    page.get_by_label("Graph", exact=True).select_option("e2e-live")
    page.wait_for_url(re.compile(r"graph=e2e-live"))
    page.get_by_label(re.compile("^Input")).fill(json.dumps({"marker": 5}))
    page.get_by_role("button", name="Start run").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The input is not valid")
    expect(alert).to_contain_text("'target' is a required property")
    expect(alert).to_contain_text("$.marker")
    shot(page, "04-start-form-errors")

    marker = server["var"] / "e2e-marker"
    page.get_by_label(re.compile("^Input")).fill(json.dumps({"marker": str(marker), "target": 4}))
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}/$"))
    status = page.locator("#run-status .status")
    expect(status).to_have_text(re.compile("PENDING|RUNNING"))
    expect(page.get_by_role("button", name="Abort run")).to_be_visible()
    trace = page.url.rstrip("/").rsplit("/", 1)[-1]
    runs_list = page.context.new_page()
    runs_list.goto("/runs/")
    listed = runs_list.locator(f"tr:has(a[href='/runs/{trace}/']) .status")
    expect(listed).to_have_text(re.compile("PENDING|RUNNING"))
    expect(runs_list.locator("#live-note")).to_contain_text("Live")
    page.evaluate("window.__notReloaded = true")
    marker.write_text("go")
    expect(status).to_have_text("COMPLETED", timeout=20_000)
    expect(listed).to_have_text("COMPLETED")  # the list's row changed without a reload too
    runs_list.close()
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded"
    expect(page.locator("[data-fact=steps]")).to_have_text("5")
    expect(page.locator("#step-position")).to_have_text("Step 4 of steps 0 to 4")
    expect(page.get_by_role("button", name="Abort run")).to_have_count(0)
    shot(page, "05-run-completed-live")
    run_url = page.url

    page.get_by_role("link", name="Runs", exact=True).click()
    page.locator(f"a[href='{run_url.removeprefix(server['url'])}']").click()
    page.wait_for_url(run_url)
    page.locator("#scrubber").focus()
    page.keyboard.press("Home")
    expect(page.locator("#step-position")).to_have_text("Step 0 of steps 0 to 4")
    page.get_by_role("button", name="Next step").click()
    page.get_by_role("button", name="Next step").click()
    expect(page.locator("#step-position")).to_have_text("Step 2 of steps 0 to 4")
    page.get_by_role("heading", name="Step through").click()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#step-position")).to_have_text("Step 3 of steps 0 to 4")
    assert page.url.endswith("?step=3")
    _assert_step_three(page, expect)
    shot(page, "06-run-step-3")
    shot(page, "06b-run-step-3-full", full_page=True)

    page.goto(run_url + "?step=3")
    expect(page.locator("#scrubber")).to_have_value("3")
    _assert_step_three(page, expect)
    page.get_by_role("button", name="Play").click()
    expect(page.locator("#step-position")).to_have_text("Step 4 of steps 0 to 4", timeout=5_000)
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    page.get_by_role("button", name="Previous step").click()
    expect(page.locator("#step-position")).to_have_text("Step 3 of steps 0 to 4")

    page.get_by_role("link", name="Graphs").click()
    shot(page, "07-graphs")
    page.get_by_role("link", name="incident-healing").first.click()
    nodes = page.evaluate("JSON.parse(document.getElementById('graph-data').textContent).nodes.length")
    expect(page.locator("#diagram .node")).to_have_count(nodes + 1)  # and END
    shot(page, "08-graph-detail")
    demo_failed = page.get_by_role("link", name=re.compile("^[0-9a-f]{12}$")).first
    demo_failed.click()
    expect(page.locator("#diagram .node.current")).to_have_count(1)
    shot(page, "09-demo-run")
    assert page.js_errors == []


def _assert_step_three(page: Any, expect: Any) -> None:
    expect(page.locator("#step-title")).to_have_text("Step 3 · t_count")
    expect(page.locator("#step-state")).to_contain_text('"n": 3')
    diff = page.locator("#step-diff")
    expect(diff).to_contain_text("$.n")
    expect(diff.locator("tbody tr").first).to_contain_text("changed")
    expect(page.locator("#step-input")).to_contain_text('"n": 2')
    expect(page.locator("#diagram .node.current")).to_contain_text("t_count")
    expect(page.locator("#diagram .edge.taken")).to_have_count(2)


def test_a_viewer_finds_no_start_or_abort_control_and_is_refused(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto("/runs/")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_role("link", name="Start a run")).to_have_count(0)
    shot(page, "10-viewer-runs")
    page.locator("table.runs tbody a.mono").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Run "))).to_be_visible()
    expect(page.get_by_role("button", name="Abort run")).to_have_count(0)
    shot(page, "11-viewer-run")
    trace = page.url.rstrip("/").rsplit("/", 1)[-1]
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": server["url"] + "/runs/"}
    started = page.request.post("/runs/new/", form={"graph": "incident-healing", "input": "{}"}, headers=headers)
    aborted = page.request.post(f"/runs/{trace}/abort/", headers=headers)
    assert (started.status, aborted.status) == (403, 403)
    assert page.goto("/runs/new/").status == 403


def test_a_graph_chosen_before_the_start_form_script_loads_still_switches_the_form(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    """On a slow page the choice comes before the deferred script listens; the script catches up when it runs."""
    page = _page(chromium_browser, server, "operator")
    held: list[Any] = []

    def hold_first(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/static/js/run_new\.js"), hold_first)
    page.goto("/runs/new/?graph=incident-healing", wait_until="commit")  # deferred scripts block DOMContentLoaded
    page.get_by_label("Graph", exact=True).select_option("e2e-live")
    page.wait_for_timeout(300)
    assert "graph=incident-healing" in page.url  # nothing listened to the change
    held[0].continue_()
    page.wait_for_url(re.compile(r"graph=e2e-live"))
    playwright_sync.expect(page.get_by_label("Graph", exact=True)).to_have_value("e2e-live")
    assert page.js_errors == []
