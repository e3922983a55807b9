"""Every page through axe-core (from npm, served by the app from static/vendor/, no CDN): no 'serious' or
'critical' violation, at 1366x900 and, for the key pages, at 390x844.

The pages are the phone-width test's list (one list of "every page"), as admin, plus a few as the other roles
(what a viewer, operator or approver sees differs), signed out, and the third-party pages (Django admin, Swagger
UI). A page with violations is saved to test-artifacts/accessibility/<viewport>-<page>.png with them outlined.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser import shot, signed_in_page
from tests.e2e.test_phone_width_e2e import OTHER_ROLES, every_page
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")

AXE = "/static/vendor/axe.min.js"
BLOCKING = ("serious", "critical")
VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
# At phone width, the pages whose layout changes most (tables, the diagram, forms).
PHONE_PAGES = ("home", "runs", "run-completed", "run-waiting", "graph-detail", "compare", "approval-detail", "run-new")
# Pages that look different to another role (fewer buttons and forms): role -> pages of every_page().
AS_ROLE = {
    "viewer": ("home", "runs", "run-completed", "approvals-inbox", "schedule-detail", "hook-detail"),
    "operator": ("run-new", "run-fork", "import", "run-waiting"),
    "approver": ("approvals-inbox", "approval-detail"),
}
# Pages whose markup is not ours, as admin.
THIRD_PARTY = {
    "django-admin": "/admin/",
    "django-admin-specialists": "/admin/runs/specialist/",
    "api-docs": "/api/docs",
}
# Rules left out on one page only, each with why (markup we cannot change): page -> {rule id: reason}.
EXCLUDED: dict[str, dict[str, str]] = {
    "django-admin-specialists": {
        "label": "Django's changelist renders list_editable inputs (registered, enabled, max_in_flight) without labels",
        "label-title-only": "the same list_editable inputs: Django names them only by the column header",
        "link-in-text-block": "Django admin's breadcrumbs: links told apart by colour only (admin/css/base.css)",
    },
    "api-docs": {
        "html-has-lang": "django-ninja's Swagger UI page (ninja/swagger.html) has <html> without lang",
        # Swagger UI's own operation buttons (swagger-ui.css); seen once in CI while the page was still rendering.
        "color-contrast": "Swagger UI's opblock-summary-control buttons, styled by its bundled swagger-ui.css",
    },
}

RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.map(String).join(' '), html: n.html})),
  }));
}"""

OUTLINE = """targets => targets.forEach(t => {
  try { document.querySelectorAll(t).forEach(e => { e.style.outline = '3px solid red'; }); } catch (err) {}
})"""


def _check(page: Any, name: str, viewport: str, problems: list[str]) -> None:
    """Run axe on the page as it is now; add a readable line per serious/critical violation to ``problems``."""
    page.wait_for_load_state("load")
    page.add_script_tag(url=AXE)
    excluded = EXCLUDED.get(name, {})
    found = [v for v in page.evaluate(RUN_AXE) if v["impact"] in BLOCKING and v["id"] not in excluded]
    for v in found:
        nodes = v["nodes"]
        where = "; ".join(f"{n['target']} -> {n['html'][:200]}" for n in nodes[:3])
        more = f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else ""
        problems.append(f"{viewport} {name} [{page.url}]: {v['id']} ({v['impact']}) {v['help']}: {where}{more}")
    if found:
        page.evaluate(OUTLINE, [n["target"] for v in found for n in v["nodes"]])
        shot(page, f"{viewport}-{name}", folder="accessibility", full_page=True)


def _as(chromium_browser: Any, server: dict[str, Any], role: str | None, viewport: str) -> Any:
    if role is None:
        context = chromium_browser.new_context(viewport=VIEWPORTS[viewport], base_url=server["url"])
        return context.new_page()
    page = signed_in_page(chromium_browser, server, role)
    page.set_viewport_size(VIEWPORTS[viewport])
    return page


def test_axe_serves_from_our_static_files() -> None:
    vendored = ROOT / "static" / "vendor" / "axe.min.js"
    assert vendored.exists(), "static/vendor/axe.min.js is missing: run `make install-dev` (npm ci copies it)"
    assert re.match(r"/\*! axe v4\.", vendored.read_text(encoding="utf-8")[:20])
    assert (ROOT / "static" / "vendor" / "axe-core.LICENSE.txt").exists()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_page_has_a_serious_or_critical_accessibility_violation(
    chromium_browser: Any, server: dict[str, Any], viewport: str
) -> None:
    admin = _as(chromium_browser, server, "admin", viewport)
    pages = every_page(admin)
    names = list(pages) if viewport == "laptop" else [n for n in PHONE_PAGES if n in pages]
    problems: list[str] = []
    for name in names:
        admin.goto(pages[name])
        _check(admin, name, viewport, problems)
    if viewport == "laptop":
        # The run page after "Verify run" (the report is put into the page by its script).
        admin.goto(pages["run-completed"])
        admin.locator("#verify-button").click()
        playwright_sync.expect(admin.locator("#verify-result")).not_to_be_empty()
        _check(admin, "run-completed-verified", viewport, problems)
        for name, path in THIRD_PARTY.items():
            admin.goto(path)
            _check(admin, name, viewport, problems)
        for role, role_pages in AS_ROLE.items():
            page = _as(chromium_browser, server, role, viewport)
            for name in role_pages:
                if name in pages:
                    page.goto(pages[name])
                    _check(page, f"{name}-as-{role}", viewport, problems)
            page.context.close()
    for name, (who, path) in OTHER_ROLES.items():
        page = _as(chromium_browser, server, who, viewport)
        page.goto(path)
        _check(page, name, viewport, problems)
        page.context.close()
    assert not problems, f"{len(problems)} serious/critical accessibility violation(s):\n" + "\n".join(problems)
    assert not admin.js_errors
