"""The demo's model calls (runs.demo_llm): the triage asks a model only when a provider is configured, the
incident-summary-llm graph always does, and the demo imports one recorded run of it, labelled, once."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from replay.services import run_verify
from runs import demo_llm
from runs.demo import DEMO_INPUTS, DEMO_SEEDS
from runs.demo_llm import RECORDED_BUNDLE, RECORDED_NOTE, RECORDED_USER
from runs.llm import clients
from runs.models import Activity, Graph, Run, RunEvent
from runs.services.run_store import step_state
from runs.services.runs import run_start
from tests.bench.make_demo_llm_bundle import MODEL, PROVIDER, SUMMARY, bundle_text, configured, record
from tests.fixtures.model_server import DEFAULT_API_KEY, OPENAI_PATH, ModelServer, model_server
from tests.helpers import execute

__all__ = ["model_server"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.django_db(transaction=True)  # the demo nodes have timeouts: they run in threads


@pytest.fixture(autouse=True)
def _var(settings: Any, tmp_path: Path) -> None:
    """The demo's password files and the artifacts (and blobs) in a directory of the test's own."""
    settings.VAR_DIR = tmp_path
    files = {"location": tmp_path / "artifacts", "allow_overwrite": True}
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": files},
    }


def _refuse_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, a model call or a provider decision made anew (not read from its record) fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a recorded run asked this machine again")

    monkeypatch.setattr(clients, "complete", refuse)
    monkeypatch.setattr(demo_llm, "_configured_model", refuse)


@pytest.fixture
def nothing_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_again(monkeypatch)


def _triage(i: int = 0) -> tuple[Run, dict[str, Any]]:
    """Demo run ``i`` of incident-healing with its first step (the triage) executed, and the state it left."""
    run = run_start(graph_name="incident-healing", data=DEMO_INPUTS[i], seed=DEMO_SEEDS[i], role="admin")
    execute(run, max_steps=1)
    run.refresh_from_db()
    return run, step_state(run_id=run.pk, index=0)


def _types(run: Run, step: int = 0) -> list[str]:
    return list(Activity.objects.filter(run=run, step=step).order_by("seq").values_list("type", flat=True))


def _verifies_sending_nothing(run: Run, server: ModelServer | None = None) -> None:
    sent = server.count() if server is not None else 0
    report = run_verify(run=run)
    assert report.ok, report.first_divergence
    assert server is None or server.count() == sent


# -- the triage ----------------------------------------------------------------------------------------------


def test_with_no_provider_the_triage_decides_by_its_rules_and_asks_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    run, state = _triage(0)  # checkout: "p99 latency over 2 s", reported high
    assert state["triage"] == {"by": "rules", "severity": "high", "category": "latency"}
    assert (state["severity"], state["category"]) == ("high", "latency")
    assert _types(run) == ["now", "llm_choice", "write_artifact"]
    choice = Activity.objects.get(run=run, type="llm_choice").response
    assert choice["provider"] is None and "no model provider is configured" in choice["reason"]
    categories = [demo_llm.triage_rules(d)["category"] for d in DEMO_INPUTS]
    assert categories == ["latency", "errors", "capacity", "dependency"]
    _refuse_again(monkeypatch)
    _verifies_sending_nothing(run)


def test_with_a_provider_the_triage_asks_the_model_and_uses_its_answer(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = {"severity": "medium", "category": "dependency", "reason": "the bank API is slow, not checkout"}
    model_server.script(text=json.dumps(answer))
    with configured(model_server, DEFAULT_API_KEY):
        run, state = _triage(0)
    assert state["triage"] == {"by": "model", **answer, "provider": PROVIDER, "model": MODEL}
    assert (state["severity"], state["category"]) == ("medium", "dependency")
    assert _types(run) == ["now", "llm_choice", "llm", "write_artifact"]
    record = Activity.objects.get(run=run, type="llm")
    assert record.request["provider"] == PROVIDER and record.request["model"] == MODEL
    assert record.request["response_format"]["json_schema"]["schema"] == demo_llm.TRIAGE_SCHEMA
    assert model_server.last(OPENAI_PATH).body["response_format"]["type"] == "json_schema"
    assert record.tokens > 0 and record.cost_usd > 0
    # Verified with no provider configured (and nothing may be decided or sent again): the same path.
    _refuse_again(monkeypatch)
    _verifies_sending_nothing(run, model_server)


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ({}, "the model's answer is not a usable triage: 'echo: Service: checkout"),  # the server echoes: not JSON
        ({"text": '{"severity": "critical", "category": "latency", "reason": "x"}'}, "not a usable triage"),
        ({"status": 500}, "provider 'openai' answered 500"),  # a failed call: recorded, and the rules decide
    ],
)
def test_an_unusable_answer_or_a_failed_call_leaves_the_triage_to_the_rules(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch, script: dict[str, Any], why: str
) -> None:
    if script:
        model_server.script(**script)
    with configured(model_server, DEFAULT_API_KEY):
        run, state = _triage(0)
    triage = state["triage"]
    assert (triage["by"], triage["severity"], triage["category"]) == ("rules", "high", "latency")
    assert why in triage["model_error"], triage
    _refuse_again(monkeypatch)
    _verifies_sending_nothing(run, model_server)


# -- incident-summary-llm and its recorded run -----------------------------------------------------------------


def test_the_summary_graph_calls_the_tool_asks_again_and_makes_the_committed_bundle(model_server: ModelServer) -> None:
    key = "sk-unit-" + "k" * 20
    model_server.api_key = key
    run = record(model_server, key)  # what tests/bench/make_demo_llm_bundle.py records
    first, second = Activity.objects.filter(run=run, type="llm").order_by("seq")
    (call,) = first.response["tool_calls"]
    assert first.response["finish_reason"] == "tool_calls" and call["name"] == "lookup_runbook"
    tool_message = second.request["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call["id"]
    assert json.loads(tool_message["content"])["title"] == "Latency above its objective"
    assert run.state["summary"] == SUMMARY and run.state["model_calls"] == 2
    assert run.tokens == run.state["tokens"] > 0 and run.cost_usd > 0
    assert run.cost_usd == pytest.approx(run.state["cost_usd"])
    fresh = json.loads(bundle_text(run, forbidden=[key, model_server.url]))
    # The committed bundle is this graph's current code: same definition, same node sources, same model requests.
    # (If this fails, regenerate it: python -m tests.bench.make_demo_llm_bundle.)
    committed = json.loads(RECORDED_BUNDLE.read_text())
    assert committed["graph"]["definition_hash"] == fresh["graph"]["definition_hash"]
    assert committed["graph"]["node_hashes"] == fresh["graph"]["node_hashes"]

    def requests(bundle: dict[str, Any]) -> list[str]:
        return [a["request_hash"] for a in bundle["activities"] if a["type"] in ("llm", "llm_choice")]

    assert requests(committed) == requests(fresh)


def test_without_a_provider_the_summary_graph_fails_saying_so() -> None:
    run = run_start(graph_name="incident-summary-llm", data=demo_llm.DEMO_SUMMARY_INPUT, seed=1)
    execute(run)
    run.refresh_from_db()
    assert run.status == "FAILED" and "no model provider is configured here" in run.error, run.error
    assert not Activity.objects.filter(run=run, type="llm").exists()


def test_the_committed_bundle_is_small_and_holds_no_key_and_no_server_address() -> None:
    text = RECORDED_BUNDLE.read_text()
    assert len(text.encode()) < 64 * 1024
    assert DEFAULT_API_KEY not in text and not re.search(r"sk-[A-Za-z0-9_-]{8,}", text)
    assert "127.0.0.1" not in text and "localhost" not in text and "Bearer" not in text
    bundle = json.loads(text)
    assert bundle["graph"]["name"] == "incident-summary-llm" and bundle["run"]["status"] == "COMPLETED"
    assert any(e["kind"] == "note" and e["message"] == RECORDED_NOTE for e in bundle["events"])


def _seed() -> str:
    out = io.StringIO()
    call_command("cmo_demo", stdout=out, stderr=out)
    return out.getvalue()


def test_the_demo_imports_the_recorded_run_once_labelled_and_it_verifies_sending_nothing(
    model_server: ModelServer, nothing_sent: None
) -> None:
    trace_id = json.loads(RECORDED_BUNDLE.read_text())["run"]["trace_id"]
    first = _seed()
    assert f"demo run {trace_id} (incident-summary-llm) imported: {RECORDED_NOTE}" in first, first
    second = _seed()
    assert trace_id not in second, second
    assert Run.objects.filter(trace_id=trace_id).count() == 1
    run = Run.objects.select_related("graph").get(trace_id=trace_id)
    assert RunEvent.objects.filter(run=run, kind="imported").count() == 1
    # The demo runs were made too: the recorded run did not stand in for them.
    assert Run.objects.filter(graph__name="incident-healing").count() == len(DEMO_INPUTS)

    # Labelled: imported by the recorded-demo system user (no login), noted, pinned; on the code's version.
    assert run.context["imported"] is True and run.context["user"] == RECORDED_USER
    assert run.context["note"] == RECORDED_NOTE and run.pinned and run.status == "COMPLETED"
    assert RunEvent.objects.filter(run=run, kind="note", message=RECORDED_NOTE).exists()
    assert not get_user_model().objects.get(username=RECORDED_USER).has_usable_password()
    assert run.graph.origin == Graph.ORIGIN_CODE

    calls = list(Activity.objects.filter(run=run, type="llm").order_by("seq"))
    assert len(calls) == 2
    for call in calls:
        usage = call.response["usage"]
        assert call.response["provider"] == PROVIDER and call.response["model"] == MODEL
        assert call.tokens == usage["input_tokens"] + usage["output_tokens"] > 0 and call.cost_usd > 0
    assert run.tokens == sum(c.tokens for c in calls) and run.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))

    _verifies_sending_nothing(run)  # no provider configured here
    with configured(model_server, DEFAULT_API_KEY):  # and with one: still nothing is sent
        _verifies_sending_nothing(run, model_server)
    assert model_server.count() == 0
