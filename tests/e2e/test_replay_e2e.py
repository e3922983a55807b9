"""The replay pages in a real Chromium against `cmo_serve` (daphne + a worker) in a child process.

Runs of the e2e-diverge graph (five counting steps, a seeded random draw at step 3) are started from the
command line against the served app's database: two seeds diverge at step 3. Screenshots go to
test-artifacts/replay/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page
from tests.e2e.conftest import GRAPH_MODULES
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def finished_run(server: dict[str, Any], seed: int) -> str:
    """Start an e2e-diverge run from the command line and wait until the served worker completes it."""
    env = {
        **os.environ,
        "CMO_VAR_DIR": str(server["var"]),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "CMO_GRAPH_MODULES": GRAPH_MODULES,
    }
    command = ["start_run", "e2e-diverge", "--seed", str(seed), "--wait", "--timeout", "60", "--json"]
    done = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    out = json.loads(done.stdout)
    assert out["status"] == "COMPLETED", out
    return str(out["trace_id"])


@pytest.fixture(scope="module")
def two_runs(server: dict[str, Any]) -> tuple[str, str]:
    return finished_run(server, seed=1), finished_run(server, seed=2)


def test_the_compare_page_shows_where_two_runs_diverge_and_steps_through_them(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    left, right = two_runs
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{left}/")
    page.get_by_label("Compare with…").select_option(right)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_url(re.compile(r"/compare/\?left="))
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
    expect(page.locator("#match-percent")).to_have_text("60%")
    first = page.locator("#first-divergence")
    expect(first).to_contain_text("step 3")
    expect(first).to_contain_text("left step 3, right step 3")
    expect(page.locator("#pairs tr.pair-diverged")).to_have_count(2)
    expect(page.locator("#pair-title")).to_have_text("Aligned step 3 · e2e_count_luck")
    expect(page.locator("#pair-diff")).to_contain_text("$.luck")
    shot(page, "01-compare-first-divergence", folder="replay")

    page.get_by_role("button", name="Previous step").click()
    expect(page.locator("#step-position")).to_have_text("Aligned step 2 of 4")
    expect(page.locator("#pair-diff")).to_contain_text("No difference.")
    expect(page.locator("#pairs tr.selected")).to_have_attribute("data-position", "2")
    assert "step=2" in page.url
    page.get_by_role("button", name="Next step").click()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#step-position")).to_have_text("Aligned step 4 of 4")
    expect(page.get_by_role("button", name="Next step")).to_be_disabled()
    page.get_by_role("button", name="Previous step").click()
    page.get_by_role("button", name="Previous step").click()
    page.get_by_role("button", name="Previous step").click()
    page.get_by_role("button", name="Play").click()
    expect(page.get_by_role("button", name="Pause")).to_be_enabled()
    expect(page.locator("#step-position")).to_have_text("Aligned step 4 of 4", timeout=10_000)
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    shot(page, "02-compare-stepped", folder="replay")

    page.goto(f"/compare/?left={left}&right=0123456789abcdef0123456789abcdef")
    expect(page.get_by_role("alert")).to_contain_text("No run has the trace id")
    assert not page.js_errors, page.js_errors


def test_verify_on_a_run_shows_a_verified_badge_per_step(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{two_runs[0]}/?step=3")
    expect(page.locator("#verify-panel")).to_be_hidden()
    page.get_by_role("button", name="Verify run").click()
    panel = page.locator("#verify-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("status")).to_contain_text("All 5 steps were re-executed")
    expect(panel.locator("li[data-status=match]")).to_have_count(5)
    expect(page.locator("#timeline .tl-verdict .vbadge-match")).to_have_count(5)
    expect(page.locator("#step-title .vbadge")).to_have_text("verified")
    expect(page.get_by_role("button", name="Verify again")).to_be_enabled()
    panel.get_by_role("link", name="1 · e2e_count_luck").click()
    expect(page.locator("#step-position")).to_have_text("Step 1 of steps 0 to 4")
    expect(page.locator("#timeline .tl-verdict .vbadge-match")).to_have_count(5)  # kept across steps
    shot(page, "03-verify-badges", folder="replay", full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Export trace bundle").click()
    download = info.value
    assert download.suggested_filename == f"cmo-trace-{two_runs[0]}.json"
    bundle = json.loads(Path(download.path()).read_text())
    assert bundle["run"]["trace_id"] == two_runs[0] and len(bundle["steps"]) == 5
    assert page.get_by_role("link", name=re.compile("^Fork at step")).count() == 0  # a viewer may not fork
    assert not page.js_errors, page.js_errors


def test_an_operator_forks_from_the_player_with_edited_state(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str]
) -> None:
    expect = playwright_sync.expect
    parent = two_runs[0]
    page = _page(chromium_browser, server, "operator")
    page.goto(f"/runs/{parent}/?step=1")
    page.get_by_role("button", name="Next step").click()
    expect(page.locator("#step-position")).to_have_text("Step 2 of steps 0 to 4")
    page.get_by_role("link", name="Fork at step 2").click()
    page.wait_for_url(re.compile(r"/fork/\?step=2$"))
    expect(page.get_by_role("heading", name="Fork after step 2")).to_be_visible()
    editor = page.get_by_label("State to continue with (JSON)")
    assert json.loads(editor.input_value()) == {"n": 3}
    expect(page.get_by_label("Graph version")).to_have_value("1")

    editor.fill('{"n": 3, "note": ')
    page.get_by_role("button", name="Fork run").click()
    expect(page.get_by_role("alert")).to_contain_text("The state is not valid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    shot(page, "04-fork-form-error", folder="replay")

    editor.fill(json.dumps({"n": 3, "note": "edited in the browser"}, indent=2))
    page.get_by_role("button", name="Fork run").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}/$"))
    child = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert child != parent
    expect(page.locator("#forked-from")).to_contain_text(f"forked from {parent[:12]} at step 2")
    expect(page.locator("#run-status .status")).to_have_text("COMPLETED", timeout=20_000)
    expect(page.locator("#step-position")).to_have_text("Step 4 of steps 3 to 4 (0 to 2 in the parent)")
    expect(page.locator("[data-fact=steps]")).to_have_text("5 (3 from the parent)")
    expect(page.locator("#step-state")).to_contain_text("edited in the browser")
    page.get_by_role("button", name="Previous step").click()
    expect(page.locator("#step-position")).to_have_text("Step 3 of steps 3 to 4 (0 to 2 in the parent)")
    expect(page.get_by_role("button", name="Previous step")).to_be_disabled()  # the fork's first own step
    shot(page, "05-fork-run", folder="replay", full_page=True)

    page.locator("#forked-from a").click()
    page.wait_for_url(re.compile(parent))
    expect(page.locator("#fork-list")).to_contain_text(f"{child[:12]} forked at step 2")
    assert not page.js_errors, page.js_errors


def test_an_operator_import_of_a_tampered_bundle_is_refused(
    chromium_browser: Any, server: dict[str, Any], two_runs: tuple[str, str], tmp_path: Any
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "operator")
    bundle = page.request.get(f"/runs/{two_runs[1]}/export/").json()
    bundle["run"]["seed"] += 1  # any change the sha256 no longer covers
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(bundle))
    page.goto("/runs/import/")
    page.get_by_label("Trace bundle (JSON file)").set_input_files(str(path))
    page.get_by_role("button", name="Import run").click()
    expect(page.get_by_role("alert")).to_contain_text("tampered bundle: its content does not match its sha256")
    shot(page, "06-import-tampered", folder="replay")
    assert not page.js_errors, page.js_errors
