"""Model calls in the browser: a streamed answer reaches an open run page word by word before its record is
written, and the recorded call then reads as a conversation with its tokens and cost.

The served app (daphne + a worker) has one provider, configured against the local model server of
tests/fixtures/model_server.py, which runs in this test process and streams one word every 0.12 s.
Screenshots go to test-artifacts/llm/.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import shot, signed_in_page
from tests.e2e.conftest import GRAPH_MODULES, serve
from tests.fixtures.model_server import DEFAULT_API_KEY, ModelServer
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture(scope="module")
def model_server() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture(scope="module")
def llm_app(tmp_path_factory: pytest.TempPathFactory, model_server: ModelServer) -> Iterator[dict[str, Any]]:
    providers = {
        "local": {
            "kind": "openai",
            "base_url": model_server.url + "/v1",
            "api_key_secret": "local_key",
            "default_model": "m-small",
            "prices": {"m-small": {"input": 3.0, "output": 15.0}},
        }
    }
    env = {
        "CMO_GRAPH_MODULES": GRAPH_MODULES + ",tests.graphs_llm",
        "CMO_LLM_PROVIDERS": json.dumps(providers),
        "CMO_SECRET_LOCAL_KEY": DEFAULT_API_KEY,
    }
    with serve(tmp_path_factory.mktemp("e2e-llm"), env) as served:
        yield served


def _start(app: dict[str, Any], data: dict[str, Any]) -> str:
    env = {**__import__("os").environ, **app["env"]}
    command = ["start_run", "t-llm", "--input", json.dumps(data), "--seed", "1", "--json"]
    done = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return str(json.loads(done.stdout)["trace_id"])


def _llm_records(app: dict[str, Any], trace: str) -> int:
    with sqlite3.connect(f"file:{app['var'] / 'cmo.sqlite3'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT count(*) FROM runs_activity a JOIN runs_run r ON r.id = a.run_id "
            "WHERE r.trace_id = ? AND a.type = 'llm'",
            (trace,),
        ).fetchone()
    return int(row[0])


def test_streamed_tokens_reach_the_open_page_before_the_record_then_the_call_reads_as_a_chat(
    chromium_browser: Any, llm_app: dict[str, Any], model_server: ModelServer
) -> None:
    expect = playwright_sync.expect
    # The server echoes the prompt (the demo's runs call it too, so no scripted answer: they could take it).
    model_server.chunk_delay = 0.12
    page = signed_in_page(chromium_browser, llm_app, "viewer")
    trace = _start(llm_app, {"provider": "local", "prompt": " ".join(WORDS), "stream": True})
    page.goto(f"/runs/{trace}/")
    live = page.locator("#llm-live-text")
    expect(live).to_contain_text("w12", timeout=20_000)
    # The page shows words of the answer while its record does not exist yet: they came over the socket.
    assert _llm_records(llm_app, trace) == 0
    shown = live.inner_text()
    assert "w59" not in shown, shown
    shot(page, "streaming", folder="llm")

    expect(page.locator("#run-status .status")).to_have_text("COMPLETED", timeout=30_000)
    assert _llm_records(llm_app, trace) == 1
    page.reload()
    chat = page.locator("#step-activities .conversation")
    expect(chat.locator(".msg-user")).to_contain_text("w0 w1 w2")
    expect(chat.locator(".msg-system")).to_contain_text("Be brief.")
    expect(chat.locator(".msg-answer")).to_contain_text("echo: w0 w1 w2")
    expect(chat.locator(".msg-answer")).to_contain_text("w59")
    # "Be brief." + 60 words = 62 input words; "echo: " + 60 = 61 output: 62 * $3 + 61 * $15 per million
    expect(chat.locator(".convo-usage")).to_contain_text("62 input + 61 output tokens · $0.001101")
    expect(page.locator("[data-fact=tokens]")).to_have_text("123")
    expect(page.locator("#step-llm")).to_contain_text("1 model call, 123 tokens")
    shot(page, "conversation", folder="llm")
    chat.scroll_into_view_if_needed()
    shot(page, "conversation-chat", folder="llm")
    page.set_viewport_size({"width": 390, "height": 844})
    chat.scroll_into_view_if_needed()
    shot(page, "conversation-chat-phone", folder="llm")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the run page is {width} px wide at phone width"
    shot(page, "conversation-phone", folder="llm", full_page=True)

    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/runs/?sort=-cost")
    expect(page.locator("table.runs tbody tr").first).to_contain_text("$0.0011")
    page.goto("/")
    expect(page.locator("#llm-graphs")).to_contain_text("t-llm")
    shot(page, "home-model-calls", folder="llm")
    assert page.js_errors == []
    assert DEFAULT_API_KEY not in page.content()


def test_compare_shows_two_runs_conversations_side_by_side(
    chromium_browser: Any, llm_app: dict[str, Any], model_server: ModelServer
) -> None:
    expect = playwright_sync.expect
    model_server.chunk_delay = 0.0
    left = _start(llm_app, {"provider": "local", "prompt": "is the disk full"})
    right = _start(llm_app, {"provider": "local", "prompt": "is the memory full"})
    deadline = time.monotonic() + 30
    while (_llm_records(llm_app, left), _llm_records(llm_app, right)) != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    page = signed_in_page(chromium_browser, llm_app, "viewer")
    page.goto(f"/compare/?left={left}&right={right}")
    pair = page.locator("#pair-llm")
    expect(pair.locator(".msg-answer").nth(0)).to_contain_text("echo: is the disk full")
    expect(pair.locator(".msg-answer").nth(1)).to_contain_text("echo: is the memory full")
    shot(page, "compare", folder="llm")
    assert page.js_errors == []
