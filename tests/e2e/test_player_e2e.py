"""The one replay player (static/js/player.js) on the run page and the compare page, in a real Chromium.

The run page's inspector is the server's fragment for each step (fetched once, then kept); the compare page's
aligned step views are server-rendered too, so stepping there asks the server for nothing. Screenshots go to
test-artifacts/player/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page
from tests.e2e.test_replay_e2e import finished_run

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
TITLE = "Step {} · e2e_count_luck"


@pytest.fixture(scope="module")
def two_runs(server: dict[str, Any]) -> tuple[str, str]:
    return finished_run(server, seed=1), finished_run(server, seed=2)


def fragment_requests(page: Any) -> list[int]:
    """The step indexes whose inspector fragment the page asks for, in order, from now on."""
    asked: list[int] = []

    def seen(request: Any) -> None:
        found = re.search(r"/steps/(\d+)/inspector/$", request.url)
        if found:
            asked.append(int(found[1]))

    page.on("request", seen)
    return asked


def text_of(page: Any, html: str) -> str:
    return str(page.evaluate("h => { const t = document.createElement('template'); t.innerHTML = h; "
                             "return t.content.textContent; }", html))


def test_the_run_page_shows_the_servers_inspector_for_each_step_and_fetches_it_once(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    run = two_runs[0]
    page = _page(chromium_browser, server, "viewer")
    asked = fragment_requests(page)
    page.goto(f"/runs/{run}/?step=0")
    expect(page.locator("#step-title")).to_have_text(TITLE.format(0))
    page.get_by_role("heading", name="Step through").click()
    for index in (1, 2, 3, 4, 3, 2, 1, 0):
        page.keyboard.press("ArrowRight" if index > int(page.url.rsplit("=", 1)[1]) else "ArrowLeft")
        expect(page.locator("#step-title")).to_have_text(TITLE.format(index))
        expect(page.locator("#step-position")).to_have_text(f"Step {index} of steps 0 to 4")
        assert page.url.endswith(f"?step={index}")
    assert sorted(asked) == [1, 2, 3, 4]  # step 0 came with the page; a step seen once is kept

    page.get_by_role("button", name="Play").click()
    expect(page.locator("#step-position")).to_have_text("Step 4 of steps 0 to 4", timeout=10_000)
    expect(page.locator("#step-title")).to_have_text(TITLE.format(4))
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    page.locator("#scrubber").fill("3")
    expect(page.locator("#step-title")).to_have_text(TITLE.format(3))
    expect(page.locator("#step-state")).to_contain_text('"n": 4')
    expect(page.locator("#step-diff")).to_contain_text("$.luck")
    expect(page.locator("#step-activities")).to_contain_text("rand")
    served = page.request.get(f"/runs/{run}/steps/3/inspector/").text()
    assert page.locator("#inspector").text_content() == text_of(page, served)
    assert sorted(asked) == [1, 2, 3, 4]
    shot(page, "01-run-step-3", folder="player", full_page=True)
    assert not page.js_errors, page.js_errors


def test_verdict_badges_follow_the_player_onto_each_steps_inspector(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{two_runs[0]}/?step=3")
    page.get_by_role("button", name="Verify run").click()
    expect(page.locator("#step-title .vbadge")).to_have_text("verified")
    page.get_by_role("button", name="Previous step").click()
    expect(page.locator("#step-title")).to_have_text(TITLE.format(2) + " verified")
    page.get_by_role("button", name="Verify again").click()
    expect(page.get_by_role("button", name="Verify again")).to_be_enabled()
    expect(page.locator("#step-title .vbadge")).to_have_count(1)  # not one more per verification
    assert not page.js_errors, page.js_errors


def test_a_step_that_cannot_be_loaded_says_so_and_never_shows_the_sign_in_page(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{two_runs[0]}/?step=0")
    expect(page.locator("#step-title")).to_have_text(TITLE.format(0))
    page.context.clear_cookies()  # the session ends
    page.locator("#scrubber").fill("4")
    expect(page.locator("#step-position")).to_have_text("Step 4 of steps 0 to 4")
    alert = page.locator("#inspector [role=alert]")
    expect(alert).to_contain_text("Step 4 could not be loaded: signed out")
    expect(page.locator("#inspector form")).to_have_count(0)
    assert not page.js_errors, page.js_errors


def test_the_compare_page_steps_through_server_rendered_views_without_asking_the_server(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    left, right = two_runs
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/compare/?left={left}&right={right}")
    expect(page.locator("#pair-title")).to_have_text("Aligned step 3 · e2e_count_luck")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.get_by_role("heading", name="Step through both runs").click()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#pair-title")).to_have_text("Aligned step 4 · e2e_count_luck")
    expect(page.locator("#pair-meta")).to_have_text("left step 4, right step 4 · the states differ")
    expect(page.locator("#left-state")).to_contain_text('"n": 5')
    expect(page.locator("#pair-diff")).to_contain_text("$.luck")
    expect(page.locator("#pair-title")).to_have_count(1)
    page.locator("#pairs").get_by_role("link", name="1", exact=True).click()
    expect(page.locator("#step-position")).to_have_text("Aligned step 1 of 4")
    expect(page.locator("#pair-diff")).to_contain_text("No difference.")
    expect(page.locator("#pairs tr[aria-current=step]")).to_have_attribute("data-position", "1")
    assert page.url.endswith("step=1")
    page.get_by_role("button", name="Play").click()
    expect(page.locator("#pair-title")).to_have_text("Aligned step 4 · e2e_count_luck", timeout=10_000)
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    page.locator("#scrubber").fill("3")
    expect(page.locator("#pair-title")).to_have_text("Aligned step 3 · e2e_count_luck")
    expect(page.locator("#pair-diff tbody tr")).to_have_count(1)
    assert asked == []
    shot(page, "02-compare-step-3", folder="player")
    assert not page.js_errors, page.js_errors
