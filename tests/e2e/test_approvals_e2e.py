"""The approvals inbox in a real Chromium against `cmo_serve` (daphne + a worker) in a child process.

The demo's "reports" run waits for approval of a rollback (high risk); a second run of the demo graph with
the same seed is started from the command line while the inboxes are open. Screenshots go to
test-artifacts/approvals/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page
from tests.e2e.conftest import GRAPH_MODULES
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")

REPORTS_PLAN = "DELETE /v1/services/reports/releases/current"
CATALOG_PLAN = "DELETE /v1/services/catalog/releases/current"


def start_run(server: dict[str, Any], graph: str, data: dict[str, Any], seed: int) -> str:
    """Start a run from the command line, as an operator would, against the served app's database."""
    env = {
        **os.environ,
        "CMO_VAR_DIR": str(server["var"]),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "CMO_GRAPH_MODULES": GRAPH_MODULES,
    }
    command = ["start_run", graph, "--input", json.dumps(data), "--seed", str(seed), "--json"]
    done = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return str(json.loads(done.stdout)["trace_id"])


def start_rollback_run(server: dict[str, Any], service: str) -> str:
    """An incident-healing run whose plan is a rollback (seed 7: "bad deploy"): high risk, it waits."""
    data = {"service": service, "symptom": "5xx after deploy", "severity": "high", "max_heal_attempts": 1}
    return start_run(server, "incident-healing", data, seed=7)


def test_an_approver_decides_in_the_inbox_while_another_inbox_follows_live(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect

    # The admin keeps the inbox open the whole time and never reloads it.
    watcher = _page(chromium_browser, server, "admin")
    watcher.goto("/approvals/")
    watcher_rows = watcher.locator("article[data-approval]")
    reports_row_w = watcher_rows.filter(has_text=REPORTS_PLAN)
    expect(reports_row_w).to_have_count(1, timeout=30_000)  # the demo run reaches its approval step
    expect(watcher.locator("#live-note")).to_contain_text("Live")
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("1")
    watcher.evaluate("window.__notReloaded = true")

    viewer = _page(chromium_browser, server, "viewer")
    viewer.goto("/approvals/")
    expect(viewer.locator("article[data-approval]").filter(has_text=REPORTS_PLAN)).to_have_count(1)
    expect(viewer.get_by_role("button", name="Approve")).to_have_count(0)
    expect(viewer.get_by_text("Your role can look at them")).to_be_visible()
    shot(viewer, "01-inbox-viewer-no-controls", folder="approvals")
    viewer.context.close()

    # Two more requests arrive while the admin's inbox is open: a high one, then a critical one that goes first.
    catalog_trace = start_rollback_run(server, "catalog")
    catalog_row_w = watcher_rows.filter(has_text=CATALOG_PLAN)
    expect(catalog_row_w).to_have_count(1, timeout=30_000)
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("2")
    start_run(server, "e2e-config-change", {}, seed=1)
    config_row_w = watcher_rows.filter(has_text=".env")
    expect(config_row_w).to_have_count(1, timeout=30_000)
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("3")
    expect(watcher.locator("#waiting-count")).to_have_text("3")
    assert watcher.evaluate("window.__notReloaded === true"), "the admin's inbox reloaded"
    order = [watcher_rows.nth(i).inner_text() for i in range(3)]
    assert "CRITICAL" in order[0].upper() and ".env" in order[0], "critical first"
    assert REPORTS_PLAN in order[1] and CATALOG_PLAN in order[2], "same risk: the sooner to expire first"
    shot(watcher, "02-inbox-admin-live-arrivals", folder="approvals", full_page=True)

    page = _page(chromium_browser, server, "approver")
    page.goto("/approvals/")
    rows = page.locator("article[data-approval]")
    expect(rows).to_have_count(3)
    reports_row = rows.filter(has_text=REPORTS_PLAN)
    expect(reports_row.locator("mark").first).to_have_text(re.compile("DELETE", re.I))
    expect(reports_row).to_contain_text("deletes a remote resource")
    run_href = reports_row.get_by_role("link", name=re.compile("^[0-9a-f]{12}$")).get_attribute("href")
    assert run_href and re.fullmatch(r"/runs/[0-9a-f]{32}/", run_href)
    config_row = rows.first
    expect(config_row.locator(".pl-add")).to_have_text("+DEBUG=1")
    expect(config_row.locator(".pl-del")).to_have_text("-DEBUG=0")
    expect(config_row.locator(".approval-preview mark").first).to_have_text(".env")
    expect(config_row.locator(".findings")).to_contain_text("evaluates a string as code")
    shot(page, "03-inbox-approver", folder="approvals", full_page=True)

    # Reject without a reason: refused, with the message beside the field.
    config_row.get_by_role("button", name="Reject").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("A reason is required to reject.")
    expect(page.get_by_role("heading", name=re.compile(r"^Approval #\d+$"))).to_be_visible()
    expect(page).to_have_url(re.compile(r"/approvals/\d+/$"))  # POST-redirect-GET: not the decide URL
    expect(page.locator(".pl-add")).to_have_text("+DEBUG=1")
    reason = page.get_by_label(re.compile("^Reason"))
    expect(reason).to_have_attribute("aria-invalid", "true")
    shot(page, "04-reject-needs-a-reason", folder="approvals")
    reason.fill("no eval in configuration")
    page.get_by_role("button", name="Reject").click()
    page.wait_for_url(re.compile(r"/approvals/$"))
    expect(page.get_by_role("status").filter(has_text="rejected")).to_be_visible()
    expect(config_row_w).to_have_count(0)  # gone from the admin's open inbox
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("2")

    # Reject with a reason, right in the inbox row.
    catalog_row = page.locator("article[data-approval]").filter(has_text=CATALOG_PLAN)
    catalog_row.get_by_label(re.compile("^Reason")).fill("change freeze until Monday")
    catalog_row.get_by_role("button", name="Reject").click()
    page.wait_for_url(re.compile(r"/approvals/$"))
    expect(page.locator("article[data-approval]")).to_have_count(1)
    expect(catalog_row_w).to_have_count(0)
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("1")

    # Approve the rollback and watch the run finish: its page is open in another tab.
    run_page = page.context.new_page()
    run_page.goto(run_href)
    run_status = run_page.locator("#run-status .status")
    expect(run_status).to_have_text("WAITING")
    expect(run_page.locator("[data-approvals-badge]")).to_have_text("1")
    run_page.evaluate("window.__notReloaded = true")
    page.bring_to_front()
    asked: list[str] = []  # a high-risk request: Approve asks first
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator("article[data-approval]").filter(has_text=REPORTS_PLAN).get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"/approvals/$"))
    assert len(asked) == 1 and "a high request?" in asked[0]
    expect(page.get_by_role("status").filter(has_text="approved")).to_be_visible()
    expect(page.locator("article[data-approval]")).to_have_count(0)
    expect(reports_row_w).to_have_count(0)
    expect(watcher.locator("[data-approvals-badge]")).to_have_text("0")
    expect(watcher.locator("#approvals-empty")).to_be_visible()
    assert watcher.evaluate("window.__notReloaded === true"), "the admin's inbox reloaded"
    assert watcher.js_errors == [] and page.js_errors == []
    shot(watcher, "05-inbox-admin-emptied-live", folder="approvals")

    run_page.bring_to_front()
    expect(run_page.locator("[data-approvals-badge]")).to_have_text("0")  # live on a page that is not the inbox
    expect(run_status).to_have_text("COMPLETED", timeout=30_000)
    expect(run_page.locator("#events")).to_contain_text("approved by approver")
    assert run_page.evaluate("window.__notReloaded === true"), "the run page reloaded"
    shot(run_page, "06-run-completed-after-approval", folder="approvals")
    run_page.close()

    page.goto("/approvals/history/")
    history = page.locator("table.approval-history tbody tr")
    approved = history.filter(has_text=REPORTS_PLAN[:40])
    expect(approved).to_contain_text("approved")
    expect(approved).to_contain_text("approver")
    expect(approved).to_contain_text("127.0.0.1")
    rejected = history.filter(has_text="change freeze until Monday")
    expect(rejected).to_contain_text("rejected")
    expect(rejected.locator(f"a[href='/runs/{catalog_trace}/']")).to_have_count(1)
    expect(history.filter(has_text="no eval in configuration")).to_contain_text("critical")
    expect(history.filter(has_text="auto-approved").first).to_contain_text("risk engine")
    shot(page, "07-history", folder="approvals", full_page=True)
    approved.get_by_role("link", name=re.compile(r"^#\d+$")).click()
    facts = page.locator(".decision-facts")
    expect(facts).to_contain_text("approver")
    expect(facts).to_contain_text("127.0.0.1")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    shot(page, "08-decided-request", folder="approvals")
    page.context.close()
    watcher.context.close()


def test_an_inbox_whose_socket_connects_late_catches_up_with_what_it_missed(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    """The page is rendered, then a request is decided before its socket reaches the server: the snapshot the
    socket sends on connecting tells the page, which re-reads its list."""
    expect = playwright_sync.expect
    admin = _page(chromium_browser, server, "admin")
    admin.goto("/approvals/")
    start_run(server, "e2e-config-change", {}, seed=2)
    admin_row = admin.locator("article[data-approval]").filter(has_text=".env")
    expect(admin_row).to_have_count(1, timeout=30_000)

    held: list[Any] = []
    late = _page(chromium_browser, server, "approver")

    def hold(route: Any) -> None:
        held.append(route)  # the page's socket opens, but not to the server (yet)

    late.route_web_socket(re.compile(r"/ws/approvals/$"), hold)
    late.goto("/approvals/")
    late_row = late.locator("article[data-approval]").filter(has_text=".env")
    expect(late_row).to_have_count(1)
    expect(late.locator("[data-approvals-badge]")).to_have_text("1")
    late.evaluate("window.__notReloaded = true")

    admin_row.get_by_label(re.compile("^Reason")).fill("not on a Friday")
    admin_row.get_by_role("button", name="Reject").click()
    admin.wait_for_url(re.compile(r"/approvals/$"))
    expect(admin.locator("article[data-approval]")).to_have_count(0)
    expect(late_row).to_have_count(1)  # the late page has heard nothing yet

    assert len(held) == 1
    held[0].connect_to_server()
    expect(late_row).to_have_count(0)
    expect(late.locator("#approvals-empty")).to_be_visible()
    expect(late.locator("[data-approvals-badge]")).to_have_text("0")
    assert late.evaluate("window.__notReloaded === true"), "the page reloaded instead of re-reading its list"
    assert late.js_errors == [] and admin.js_errors == []
    late.context.close()
    admin.context.close()
