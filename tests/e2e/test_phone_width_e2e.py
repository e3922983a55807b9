"""Every page at phone width (390x844) and on a laptop (1366x768): the page never scrolls sideways, and the
navigation, the user name and Sign out are on screen.

Screenshots go to test-artifacts/phone-width/<phone|laptop>-<page>.png (the screen) and -full.png (the page).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot, signed_in_page

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "laptop": {"width": 1366, "height": 768}}

# What sticks out past the right edge, for the failure message.
WIDEST = """() => {
  const w = window.innerWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > w + 1 && getComputedStyle(e).position !== 'fixed')
    .slice(0, 6)
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
      + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '')
      + ' right=' + Math.round(e.getBoundingClientRect().right));
}"""


def _trace(page: Any, query: str) -> str:
    page.goto(f"/runs/?{query}")
    link = page.locator("table.runs tbody a[href^='/runs/']").first
    return str(link.get_attribute("href"))


def _schedule(page: Any) -> str:
    """A schedule to look at (made once per server): a daily one, so it starts no runs during the test."""
    page.goto("/schedules/phone-daily/")
    if page.locator("#schedule-state").count():
        return "/schedules/phone-daily/"
    page.goto("/schedules/new/")
    page.get_by_label("Name").fill("phone-daily")
    page.locator("#id_graph").select_option("t-count")
    page.get_by_label("Every").check()
    page.get_by_label("Interval in seconds").fill("86400")
    page.get_by_label("Input (JSON, checked against the graph's input schema)").fill('{"target": 1}')
    page.get_by_role("button", name="Save schedule").click()
    page.wait_for_url(re.compile(r"/schedules/phone-daily/$"))
    return "/schedules/phone-daily/"


def _hook(page: Any) -> str:
    """A hook to look at (made once per server; it is never called, so it starts no runs)."""
    page.goto("/hooks/phone-hook/")
    if page.locator("#hook-url").count():
        return "/hooks/phone-hook/"
    page.goto("/hooks/new/")
    page.get_by_label("Name").fill("phone-hook")
    page.get_by_label("Graph").select_option("t-count")
    page.get_by_role("button", name="Create hook").click()
    playwright_sync.expect(page.locator("#hook-url")).to_be_visible()  # the page with the secret, once
    return "/hooks/phone-hook/"


def _fits(page: Any, name: str, viewport: str, problems: list[str]) -> None:
    width, scroll = page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]")
    shot(page, f"{viewport}-{name}", folder="phone-width")
    shot(page, f"{viewport}-{name}-full", folder="phone-width", full_page=True)
    if scroll > width:
        problems.append(f"{viewport} {name}: {scroll}px wide in {width}px; {page.evaluate(WIDEST)}")
    for label in ("Sign out", "Runs"):
        target = page.get_by_role("button" if label == "Sign out" else "link", name=label, exact=True)
        if not target.count():
            continue
        box = target.first.bounding_box()
        if box is None or box["x"] < 0 or box["x"] + box["width"] > width:
            problems.append(f"{viewport} {name}: {label} is off screen ({box})")


def every_page(page: Any) -> dict[str, str]:
    """Every dashboard page an admin sees, name -> path, found (or made) with ``page`` signed in as admin; the
    signed-out and forbidden pages are in OTHER_ROLES. The accessibility test visits the same list."""
    # The demo runs settle (one waits for an approval, one fails) before their pages are looked at.
    playwright_sync.expect(page.locator("a[href^='/runs/']").first).to_be_visible()
    page.wait_for_timeout(1500)
    completed = _trace(page, "status=COMPLETED")
    failed = _trace(page, "status=FAILED")
    waiting = _trace(page, "status=WAITING")
    trace_a, trace_b = completed.strip("/").rsplit("/", 1)[-1], _trace(page, "status=COMPLETED&sort=created")
    trace_b = trace_b.strip("/").rsplit("/", 1)[-1]
    page.goto("/approvals/")
    approval = page.locator("a[href^='/approvals/'][href$='/']").filter(has_text=re.compile(r"#?\d+|Review|Open"))
    approval_href = approval.first.get_attribute("href") if approval.count() else None
    pages = {
        "home": "/",
        "runs": "/runs/",
        "run-completed": completed,
        "run-failed": failed,
        "run-waiting": waiting,
        "run-fork": f"/runs/{trace_a}/fork/",
        "run-verify": f"/runs/{trace_a}/verify/",
        "run-abort": f"{waiting}abort/",
        "graphs": "/graphs/",
        "graph-detail": "/graphs/incident-healing/",
        "compare-empty": "/compare/",
        "compare": f"/compare/?left={trace_a}&right={trace_b}",
        "approvals-inbox": "/approvals/",
        "approvals-history": "/approvals/history/",
        "run-new": "/runs/new/",
        "import": "/runs/import/",
        "schedules": "/schedules/",
        "schedule-new": "/schedules/new/",
        "schedule-detail": _schedule(page),
        "hooks": "/hooks/",
        "hook-new": "/hooks/new/",
        "hook-detail": _hook(page),
        "not-found": "/runs/ffffffffffffffffffffffffffffffff/",
    }
    if approval_href:
        pages["approval-detail"] = approval_href
    return pages


# Pages seen as another role than admin (None: signed out): name -> (role, path).
OTHER_ROLES: dict[str, tuple[str | None, str]] = {"forbidden": ("viewer", "/runs/new/"), "login": (None, "/login/")}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_page_is_wider_than_the_screen(chromium_browser: Any, server: dict[str, Any], viewport: str) -> None:
    page = signed_in_page(chromium_browser, server, "admin")
    page.set_viewport_size(VIEWPORTS[viewport])
    pages = every_page(page)
    problems: list[str] = []
    for name, path in pages.items():
        page.goto(path)
        _fits(page, name, viewport, problems)

    viewer = signed_in_page(chromium_browser, server, "viewer")
    viewer.set_viewport_size(VIEWPORTS[viewport])
    viewer.goto(OTHER_ROLES["forbidden"][1])
    _fits(viewer, "forbidden", viewport, problems)
    anonymous = chromium_browser.new_page(viewport=VIEWPORTS[viewport])
    anonymous.goto(server["url"] + OTHER_ROLES["login"][1])
    _fits(anonymous, "login", viewport, problems)
    anonymous.close()
    assert not problems, "\n".join(problems)
    assert not page.js_errors
