"""Destructive actions ask first, with and without JavaScript: Abort on the run page, and Approve on a high-risk
request. Refused posts redirect, so the address bar never holds a POST URL.

Screenshots go to test-artifacts/confirmations/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot, signed_in_page
from tests.e2e.test_approvals_e2e import start_rollback_run

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def _no_script_page(chromium_browser: Any, server: dict[str, Any], role: str) -> Any:
    """Signed in as ``role`` in a context with JavaScript off: what the server does on its own."""
    context = chromium_browser.new_context(
        viewport={"width": 1366, "height": 768}, base_url=server["url"], java_script_enabled=False
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login/")
    page.get_by_label("Username").fill(role)
    page.get_by_label("Password").fill(server["passwords"][role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))
    return page


def _waiting(page: Any, trace: str) -> None:
    page.goto(f"/runs/{trace}/")
    for _ in range(60):
        if page.locator("#run-status .status").inner_text() == "WAITING":
            return
        page.wait_for_timeout(500)
        page.reload()
    raise AssertionError(f"run {trace} never waited")


def test_abort_asks_in_a_dialog_and_cancelling_keeps_the_run(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    trace = start_rollback_run(server, "abort-dialog")
    page = signed_in_page(chromium_browser, server, "operator")
    _waiting(page, trace)
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Abort run").click()
    page.wait_for_timeout(500)
    assert len(asked) == 1 and asked[0].startswith(f"Abort run {trace[:12]}")
    expect(page.locator("#run-status .status")).to_have_text("WAITING")
    expect(page).to_have_url(re.compile(rf"/runs/{trace}/$"))

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Abort run").click()
    page.wait_for_url(re.compile(rf"/runs/{trace}/$"))
    expect(page.get_by_role("status").filter(has_text="Abort requested")).to_be_visible()
    expect(page.locator("#run-status .status")).to_have_text("ABORTED", timeout=20_000)
    shot(page, "abort-after-dialog", folder="confirmations")
    assert page.js_errors == []


def test_without_javascript_abort_goes_to_a_confirmation_page(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    trace = start_rollback_run(server, "abort-page")
    page = _no_script_page(chromium_browser, server, "operator")
    _waiting(page, trace)
    page.get_by_role("button", name="Abort run").click()
    expect(page).to_have_url(re.compile(rf"/runs/{trace}/abort/$"))
    expect(page.get_by_role("heading", name=re.compile(rf"^Abort run {trace[:12]}\?"))).to_be_visible()
    shot(page, "abort-confirmation-page", folder="confirmations")
    page.get_by_role("link", name="Keep it running").click()
    expect(page.locator("#run-status .status")).to_have_text("WAITING")
    page.get_by_role("button", name="Abort run").click()
    page.get_by_role("button", name="Abort run").click()
    expect(page).to_have_url(re.compile(rf"/runs/{trace}/$"))
    expect(page.get_by_role("status").filter(has_text="Abort requested")).to_be_visible()


def test_without_javascript_a_high_risk_approval_needs_the_box_ticked(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    trace = start_rollback_run(server, "approve-box")
    page = _no_script_page(chromium_browser, server, "approver")
    _waiting(page, trace)
    page.goto("/approvals/")
    row = page.locator("article[data-approval]").filter(has=page.locator(f"a[href='/runs/{trace}/']"))
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Reject").click()  # no reason: refused, and the address is a GET page
    expect(page).to_have_url(re.compile(r"/approvals/\d+/$"))
    expect(page.get_by_role("alert")).to_have_text("A reason is required to reject.")
    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(re.compile(r"/approvals/\d+/$"))
    expect(page.get_by_role("alert")).to_have_text("Tick the box to confirm approving a high request.")
    shot(page, "approve-needs-the-box", folder="confirmations")
    page.get_by_label(re.compile("approve this high request")).check()
    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(re.compile(r"/approvals/$"))
    expect(page.get_by_role("status").filter(has_text="approved")).to_be_visible()
