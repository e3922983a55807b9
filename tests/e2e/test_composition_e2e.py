"""Composition on the run page in a real Chromium: the diagram's fan-out and join, the timeline's parallel lanes,
the player following one branch and stepping in commit order, and a signal sent from the page.

Runs are started from the command line against the served worker (tests.e2e.graphs_e2e: e2e-fanout, and the
c-* graphs of tests.graphs_composition). Screenshots go to test-artifacts/composition/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.e2e.browser import shot
from tests.e2e.browser import signed_in_page as _page
from tests.e2e.conftest import GRAPH_MODULES
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


def start(server: dict[str, Any], graph: str, data: dict[str, Any], *, wait: bool = True) -> str:
    """Start a run from the command line; with ``wait``, until the served worker has completed it."""
    env = {**os.environ, "CMO_VAR_DIR": str(server["var"]), "DATABASE_URL": "", "REDIS_URL": "",
           "CMO_GRAPH_MODULES": GRAPH_MODULES}
    command = ["start_run", graph, "--input", json.dumps(data), "--json"]
    if wait:
        command += ["--wait", "--timeout", "60"]
    done = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    out = json.loads(done.stdout)
    if wait:
        assert out["status"] == "COMPLETED", out
    return str(out["trace_id"])


@pytest.fixture(scope="module")
def fanout_run(server: dict[str, Any]) -> str:
    return start(server, "e2e-fanout", {"topics": ["alpha", "beta", "gamma"], "limit": 2})


def order_of(page: Any) -> list[dict[str, Any]]:
    return list(json.loads(page.locator("#lanes-data").text_content())["order"])


def test_the_diagram_shows_the_fan_out_and_join_and_the_timeline_parallel_lanes(
    chromium_browser: Any, server: dict[str, Any], fanout_run: str
) -> None:
    expect = playwright_sync.expect
    static = start(server, "c-static", {})
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{static}/")
    expect(page.locator("#diagram .fork-bar")).to_have_count(1)  # under c_start
    expect(page.locator("#diagram .edge.edge-fork")).to_have_count(3)
    expect(page.locator("#diagram .join-tag text")).to_have_text("join: all")
    expect(page.locator("#diagram .join-bar")).to_have_count(1)
    lanes = page.locator("#timeline .lane-branch")
    expect(lanes).to_have_count(3)
    expect(page.locator("#timeline .lane-main .lane-step")).to_have_count(2)
    for i, node in enumerate(("c_ask_a", "c_ask_b", "c_ask_c")):
        expect(lanes.nth(i).locator(".lane-name")).to_have_text(f"branch {i} · {node}")
        expect(lanes.nth(i).locator(".lane-step")).to_have_count(1)
    expect(page.locator("#timeline .lane-group-head")).to_contain_text("3 branches")
    shot(page, "01-static-fan-out", folder="composition")

    page.goto(f"/runs/{fanout_run}/")
    expect(page.locator("#diagram .fanout-badge text")).to_have_text("\u00d73, ≤2 at once")
    expect(page.locator("#diagram .join-tag text")).to_have_text("join: all")
    expect(page.locator("#timeline .lane-branch")).to_have_count(3)
    expect(page.locator("#timeline .lane-branch .lane-step")).to_have_count(6)
    expect(page.locator("#timeline .lane-group-head")).to_contain_text("at most 2 at once")
    expect(page.locator("#h-spawned")).to_have_text("Runs this run started")
    shot(page, "02-dynamic-fan-out", folder="composition")
    assert not page.js_errors, page.js_errors


def test_the_player_follows_one_branch_and_steps_through_all_in_commit_order(
    chromium_browser: Any, server: dict[str, Any], fanout_run: str
) -> None:
    expect = playwright_sync.expect
    page = _page(chromium_browser, server, "viewer")
    page.goto(f"/runs/{fanout_run}/")
    expect(page.locator("#step-title")).to_have_text("Step 1 · e2e_collect")
    order = order_of(page)
    assert len(order) == 8 and order[0]["node"] == "e2e_fan" and order[-1]["node"] == "e2e_collect"
    branch = next(o["trace_id"] for o in order if o["branch"] == 1)

    # follow branch 1: its two steps, each its own run's inspector
    page.get_by_label("Follow").select_option(branch)
    expect(page.locator("#step-position")).to_have_text("Branch 1: step 0 of 1")
    expect(page.locator("#step-title")).to_have_text("Step 0 · e2e_draft")
    expect(page.locator("#step-branch")).to_contain_text("branch 1 of the fan-out at step 0")
    expect(page.locator("#step-branch")).to_contain_text("node e2e_draft")
    page.get_by_role("button", name="Next step").click()
    expect(page.locator("#step-title")).to_have_text("Step 1 · e2e_polish")
    expect(page.locator("#step-state")).to_contain_text("draft on beta, polished")
    expect(page.locator("#step-position")).to_have_text("Branch 1: step 1 of 1")
    expect(page.locator("#diagram .node.current text")).to_have_text("e2e_polish")
    selected = page.locator("#timeline .lane-step.selected")
    expect(selected).to_have_count(1)
    expect(selected).to_have_attribute("data-trace", branch)
    expect(selected).to_have_attribute("data-index", "1")
    assert f"lane={branch}" in page.url and "step=1" in page.url
    shot(page, "03-follow-branch-1", folder="composition")

    # all steps in commit order: from where it was, then from the first to the last
    page.get_by_label("Follow").select_option("all")
    here = next(i for i, o in enumerate(order) if o["trace_id"] == branch and o["index"] == 1)
    expect(page.locator("#step-position")).to_have_text(f"{here + 1} of 8 in commit order · branch 1, step 1")
    page.locator("#scrubber").fill("0")
    expect(page.locator("#step-title")).to_have_text("Step 0 · e2e_fan")
    page.get_by_role("heading", name="Step through").click()
    for position in range(1, 8):
        page.keyboard.press("ArrowRight")
        item = order[position]
        expect(page.locator("#step-title")).to_have_text(f"Step {item['index']} · {item['node']}")
        if item["branch"] is not None:
            expect(page.locator("#step-branch")).to_contain_text(f"branch {item['branch']} of the fan-out")
    expect(page.locator("#step-position")).to_have_text("8 of 8 in commit order · this run, step 1")
    expect(page.locator("#step-joined")).to_contain_text("3 branches of the fan-out at step 0")

    # a step in the timeline moves there; this run's own steps are the lane the page starts on
    page.locator(f"#timeline .lane-step[data-trace='{order[1]['trace_id']}'][data-index='0']").click()
    expect(page.locator("#step-position")).to_have_text(re.compile(r"^2 of 8 in commit order"))
    page.get_by_label("Follow").select_option("")
    expect(page.locator("#step-position")).to_have_text("Step 1 of steps 0 to 1")
    expect(page.locator("#step-title")).to_have_text("Step 1 · e2e_collect")
    assert "lane=" not in page.url
    assert not page.js_errors, page.js_errors


def test_a_signal_sent_from_the_run_page_is_delivered_and_the_run_completes(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    trace = start(server, "c-signal", {}, wait=False)
    page = _page(chromium_browser, server, "operator")
    deadline = time.monotonic() + 30
    while 'id="signal-form"' not in page.request.get(f"/runs/{trace}/").text():  # until the run waits for it
        assert time.monotonic() < deadline, "the run never waited for its signal"
        time.sleep(0.2)
    page.goto(f"/runs/{trace}/")
    expect(page.locator("#run-status .status")).to_have_text("WAITING")
    expect(page.locator("#h-signal")).to_have_text("Send signal proceed")
    expect(page.locator("#signal-schema")).to_contain_text('"boolean"')
    payload = page.get_by_label("Payload (JSON)")

    payload.fill("{go: true")
    page.get_by_role("button", name="Send signal").click()
    expect(page.locator("#signal-error")).to_contain_text("is not valid JSON")
    payload.fill('{"go": "yes"}')
    page.get_by_role("button", name="Send signal").click()
    expect(page.locator("#signal-error")).to_contain_text("'yes' is not of type 'boolean'")
    expect(page.locator("#run-status .status")).to_have_text("WAITING")
    shot(page, "04-signal-refused", folder="composition")

    payload.fill('{"go": true}')
    page.get_by_role("button", name="Send signal").click()
    page.wait_for_url(re.compile(rf"/runs/{trace}/$"))
    expect(page.locator(".messages")).to_contain_text("Signal 'proceed' sent to run")
    expect(page.locator(".messages")).to_contain_text("delivered")
    expect(page.locator("#run-status .status")).to_have_text("COMPLETED", timeout=30_000)
    expect(page.locator("#signal-card")).to_be_hidden()
    expect(page.locator("#events")).to_contain_text("signal 'proceed' sent by operator")
    page.reload()
    expect(page.locator("#step-state")).to_contain_text('"go": true')
    shot(page, "05-signal-delivered", folder="composition")
    assert not page.js_errors, page.js_errors


def test_a_viewer_sees_no_signal_form(chromium_browser: Any, server: dict[str, Any]) -> None:
    expect = playwright_sync.expect
    trace = start(server, "c-signal", {}, wait=False)
    page = _page(chromium_browser, server, "viewer")
    deadline = time.monotonic() + 30
    while "signal-note" not in page.request.get(f"/runs/{trace}/").text():
        assert time.monotonic() < deadline, "the run never waited for its signal"
        time.sleep(0.2)
    page.goto(f"/runs/{trace}/")
    expect(page.locator("#signal-note")).to_contain_text("Waiting for signal proceed")
    expect(page.locator("#signal-form")).to_have_count(0)
    assert not page.js_errors, page.js_errors


def test_children_are_links_in_the_timeline_and_their_lanes_follow_them_live(
    chromium_browser: Any, server: dict[str, Any]
) -> None:
    expect = playwright_sync.expect
    parent = start(server, "c-child", {"graph": "c-signal", "targets": [1, 2]}, wait=False)
    page = _page(chromium_browser, server, "operator")
    deadline = time.monotonic() + 30
    while page.request.get(f"/runs/{parent}/").text().count('class="lane lane-child"') < 2:  # both started
        assert time.monotonic() < deadline, "the parent never started its children"
        time.sleep(0.2)
    page.goto(f"/runs/{parent}/")
    children = page.locator("#timeline .lane-child")
    expect(children).to_have_count(2)
    expect(page.locator("#timeline .lane-group-head")).to_contain_text("Child runs: 2")
    kids = children.evaluate_all("rows => rows.map(r => r.getAttribute('data-trace'))")
    other = page.context.new_page()  # the children's pages, while the parent's stays open
    for kid in kids:  # each child waits for its signal; the parent for both
        expect(page.locator(f"#timeline .lane-child[data-trace='{kid}'] .dot")).to_have_attribute("title", "WAITING")
        other.goto(f"/runs/{kid}/")
        other.get_by_label("Payload (JSON)").fill('{"go": true}')
        other.get_by_role("button", name="Send signal").click()
        expect(other.locator(".messages")).to_contain_text("delivered")
    expect(page.locator("#run-status .status")).to_have_text("COMPLETED", timeout=30_000)
    expect(page.locator("#timeline .lane-child .dot-completed")).to_have_count(2, timeout=15_000)
    shot(page, "06-children-completed", folder="composition")
    page.locator(f"#timeline .lane-child[data-trace='{kids[1]}'] .lane-name a").click()
    page.wait_for_url(re.compile(rf"/runs/{kids[1]}/$"))
    expect(page.locator("#spawned-by")).to_contain_text(f"Child of {parent[:12]}, step 0")
    assert not page.js_errors, page.js_errors
