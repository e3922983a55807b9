"""Browser helpers for the e2e tests: sign in as a role, take a screenshot."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.processes import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def signed_in_page(chromium_browser: Any, server: dict[str, Any], role: str) -> Any:
    """A fresh browser context signed in as the demo user of ``role``; page.js_errors collects page errors."""
    context = chromium_browser.new_context(viewport={"width": 1366, "height": 768}, base_url=server["url"])
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    page.goto("/login/")
    page.get_by_label("Username").fill(role)
    page.get_by_label("Password").fill(server["passwords"][role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))
    return page


def shot(page: Any, name: str, *, folder: str = "dashboard", full_page: bool = False) -> None:
    """Save a 1366x768 screenshot to test-artifacts/<folder>/<name>.png (kept by CI for people to look at)."""
    (ARTIFACTS / folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / folder / f"{name}.png"), full_page=full_page)
