"""A hook in a real Chromium against `cmo_serve` (daphne + a worker): an operator creates it from the page, reads
its secret once and how to call it, a Python sender signs a delivery, and the hook page shows the delivery with
its run (and a forged delivery as a refusal). Screenshots at 1366x768 and 390x844 go to test-artifacts/hooks/."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from hooks import signing
from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def _both_sizes(page: Any, name: str) -> None:
    shot(page, f"{name}-1366", folder="hooks", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, f"{name}-390", folder="hooks", full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})


def test_an_operator_creates_a_hook_on_the_page_and_sees_a_signed_delivery_and_its_run(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "operator")

    page.get_by_role("link", name="Hooks").click()
    expect(page.get_by_role("heading", name="Hooks")).to_be_visible()
    page.get_by_role("link", name="New hook").click()
    page.get_by_label("Name").fill("deploy-events")
    page.get_by_label("Description").fill("deploys from CI <b>not bold</b>")
    page.get_by_label("Graph").select_option("t-count")
    page.get_by_label("Idempotency key").select_option("header")
    page.get_by_label("Key header or JSON path").fill("X-Delivery-Id")
    _both_sizes(page, "new")
    page.get_by_role("button", name="Create hook").click()

    expect(page.get_by_role("heading", name="Hook deploy-events")).to_be_visible()
    secret = page.locator("#hook-secret").inner_text().strip()
    assert len(secret) >= 43
    expect(page.get_by_text("deploys from CI <b>not bold</b>")).to_be_visible()  # escaped, shown as typed
    url = page.locator("#hook-url").inner_text().strip()
    assert url == f"{server['url']}/api/hooks/deploy-events"
    expect(page.locator("#hook-curl")).to_contain_text("openssl dgst -sha256 -hmac")
    expect(page.locator("#hook-python")).to_contain_text('"X-Delivery-Id": str(uuid.uuid4())')
    _both_sizes(page, "created")

    body = json.dumps({"target": 2}).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Delivery-Id": "ci-run-1",
        signing.TIMESTAMP_HEADER: stamp,
        signing.SIGNATURE_HEADER: signing.signature(secret=secret, timestamp=stamp, body=body),
    }
    accepted = httpx.post(url, content=body, headers=headers, timeout=30)
    assert accepted.status_code == 202, accepted.text
    trace_id = accepted.json()["trace_id"]
    again = httpx.post(url, content=body, headers=headers, timeout=30)
    assert again.status_code == 200 and again.json()["trace_id"] == trace_id
    forged = httpx.post(url, content=body, headers={**headers, signing.SIGNATURE_HEADER: "sha256=" + "0" * 64})
    assert forged.status_code == 401

    page.goto("/hooks/deploy-events/")
    assert secret not in page.content()  # shown once, on creation only
    run_link = page.get_by_role("link", name=trace_id[:12])
    expect(run_link).to_be_visible()
    expect(page.get_by_text("ci-run-1")).to_be_visible()
    expect(page.get_by_text("the signature does not match")).to_be_visible()
    _both_sizes(page, "deliveries")

    run_link.click()
    page.wait_for_url(re.compile(rf"/runs/{trace_id}/"))
    expect(page.locator(".status").first).to_have_text(re.compile("COMPLETED"), timeout=30_000)
    page.goto("/hooks/")
    expect(page.get_by_role("link", name="deploy-events")).to_be_visible()
    _both_sizes(page, "list")
    assert page.js_errors == []


def test_a_viewer_sees_the_hook_page_without_its_secret_or_the_operator_buttons(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    page = _page(chromium_browser, server, "viewer")
    page.goto("/hooks/")
    assert page.get_by_role("link", name="New hook").count() == 0
    response = page.goto("/hooks/new/")
    assert response is not None and response.status == 403
