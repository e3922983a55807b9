"""``ctx.activities.llm``: the real openai and anthropic clients against a local server that speaks their
wire formats (tests/fixtures/model_server.py), through the engine's recording boundary."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from approvals.policy import PolicyEngine
from replay.services import run_verify
from runs.engine import secrets as engine_secrets
from runs.engine.executor import Outcome
from runs.llm.usage import usage_by_day, usage_totals
from runs.models import Activity, LlmUsageDaily, Run
from runs.services.runs import InvalidBudget, run_start
from tests.fixtures.model_server import DEFAULT_API_KEY, ModelServer, model_server
from tests.graphs_llm import LLM_KNOBS
from tests.helpers import execute

__all__ = ["model_server"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.django_db

PRICES = {"m-small": {"input": 1.0, "output": 2.0, "cached": 0.5}}


def _providers(server: ModelServer) -> dict[str, Any]:
    return {
        "oa": {"kind": "openai", "base_url": server.url + "/v1", "api_key_secret": "oa_key",
               "default_model": "m-small", "max_retries": 2, "prices": PRICES},
        "an": {"kind": "anthropic", "base_url": server.url, "api_key_secret": "an_key",
               "default_model": "m-small", "max_retries": 2, "prices": PRICES},
    }  # fmt: skip


@pytest.fixture
def llm(model_server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """The two providers configured against the local server, their keys on this 'worker'."""
    monkeypatch.setenv("CMO_SECRET_OA_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("CMO_SECRET_AN_KEY", DEFAULT_API_KEY)
    engine_secrets.reload()
    with override_settings(CMO_LLM_PROVIDERS=_providers(model_server)):
        yield model_server
    monkeypatch.delenv("CMO_SECRET_OA_KEY", raising=False)
    monkeypatch.delenv("CMO_SECRET_AN_KEY", raising=False)
    engine_secrets.reload()


def _run(graph: str = "t-llm", **state: Any) -> Run:
    run = run_start(graph_name=graph, data=state, seed=1)
    execute(run)
    run.refresh_from_db()
    return run


def _llm_activities(run: Run) -> list[Activity]:
    return list(Activity.objects.filter(run=run, type="llm").order_by("step", "seq"))


@pytest.mark.parametrize("provider", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_call_is_recorded_with_usage_and_cost_and_never_sent_again(
    llm: ModelServer, provider: str, stream: bool
) -> None:
    llm.cached_tokens = 2
    run = _run(provider=provider, prompt="summarise the incident", stream=stream)
    assert run.status == "COMPLETED", run.error
    assert run.state["text"] == "echo: summarise the incident"
    (record,) = _llm_activities(run)
    answer = record.response
    assert answer["provider"] == provider and answer["model"] == "m-small" and answer["finish_reason"] == "stop"
    # input: "Be brief." + "summarise the incident" = 5 words; output: "echo: summarise the incident" = 4
    usage = answer["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cached_tokens"]) == (5, 4, 2), usage
    assert answer["cost_usd"] == pytest.approx((3 * 1.0 + 2 * 0.5 + 4 * 2.0) / 1e6)
    assert answer["latency_ms"] > 0 and (answer["ttft_ms"] is not None) == stream
    assert (record.tokens, run.tokens) == (9, 9) and run.cost_usd == pytest.approx(answer["cost_usd"])
    assert record.request["messages"][1] == {"role": "user", "content": "summarise the incident"}
    path = "/v1/chat/completions" if provider == "oa" else "/v1/messages"
    assert llm.count(path) == 1 and llm.last(path).key == f"{run.trace_id}:0:0"  # the Idempotency-Key

    report = run_verify(run=run)  # re-executes the node against the record: nothing is sent
    assert report.ok, report
    assert llm.count(path) == 1
    day = LlmUsageDaily.objects.get(graph_name="t-llm", provider=provider, model="m-small")
    assert (day.calls, day.input_tokens, day.output_tokens, day.cached_tokens) == (1, 5, 4, 2)


@pytest.mark.parametrize("provider", ["oa", "an"])
def test_tool_calls_come_back_parsed(llm: ModelServer, provider: str) -> None:
    tools = [{"name": "lookup", "description": "find a runbook", "parameters": {"type": "object"}}]
    run = _run(provider=provider, prompt="use a tool for disk full", tools=tools)
    assert run.status == "COMPLETED", run.error
    (call,) = run.state["tool_calls"]
    assert call["name"] == "lookup" and call["arguments"] == {"q": "use a tool for disk full"}
    assert _llm_activities(run)[0].response["finish_reason"] == "tool_calls"


def test_a_429_with_retry_after_is_retried_by_the_client(llm: ModelServer) -> None:
    llm.script(status=429, headers={"retry-after": "0.01"})
    run = _run(provider="oa", prompt="hi")
    assert run.status == "COMPLETED", run.error
    assert llm.count("/v1/chat/completions") == 2
    assert len(_llm_activities(run)) == 1


@pytest.mark.parametrize(
    ("state", "script", "reason"),
    [
        ({"provider": "nope"}, None, "unknown model provider 'nope'; configured: an, oa"),
        ({"provider": "oa"}, {"status": 500, "times": 3}, "provider 'oa' answered 500"),
        ({"provider": "an"}, {"status": 400}, "provider 'an' answered 400"),
        ({"provider": "oa"}, {"malformed_tool_call": True}, "arguments that are not JSON"),
    ],
)
def test_bad_calls_fail_the_activity_with_the_reason(
    llm: ModelServer, state: dict[str, Any], script: dict[str, Any] | None, reason: str
) -> None:
    if script:
        llm.script(**script)
    tools = [{"name": "lookup", "parameters": {"type": "object"}}]
    run = _run(prompt="use a tool", tools=tools, **state)
    assert run.status == "FAILED" and reason in run.error, run.error
    (record,) = _llm_activities(run)
    assert record.status == "failed" and reason in record.error and record.tokens == 0
    assert run.tokens == 0 and not LlmUsageDaily.objects.exists()


def test_a_missing_key_fails_before_anything_is_sent(llm: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMO_SECRET_OA_KEY")
    engine_secrets.reload()
    run = _run(provider="oa")
    assert run.status == "FAILED" and "provider 'oa' has no API key on this worker" in run.error
    assert llm.count() == 0


def test_the_api_key_is_in_no_record_and_no_log_line(llm: ModelServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    llm.script(status=401)
    failed = _run(provider="oa", prompt="hi")
    ok = _run(provider="an", prompt="hi")
    assert ok.status == "COMPLETED" and failed.status == "FAILED"
    stored = json.dumps([list(Activity.objects.values()), list(Run.objects.values())], default=str)
    assert DEFAULT_API_KEY not in stored and DEFAULT_API_KEY not in caplog.text


def test_a_budget_refuses_the_call_that_would_overrun_it_before_it_is_sent(llm: ModelServer) -> None:
    # t-llm-budget allows 60 tokens. The first call's worst case (about 21 estimated + max_tokens 30) fits and
    # it spends 22 + 21 words; the second's (43 spent + about 23 + 30) would pass 60: refused, never sent.
    run = _run("t-llm-budget", provider="oa", prompt=" ".join(["a"] * 20), max_tokens=30)
    assert run.status == "FAILED", run.state
    first, second = _llm_activities(run)
    assert first.status == "completed" and second.status == "failed"
    assert "refused before sending: over the run's budget of 60 tokens: 43 spent" in second.error, second.error
    assert llm.count("/v1/chat/completions") == 1
    assert run.budget == {"tokens": 60} and run.tokens == 43


def test_a_start_request_budget_replaces_the_graphs_and_a_bad_one_is_refused(llm: ModelServer) -> None:
    run = run_start(graph_name="t-llm-budget", data={"provider": "oa"}, budget={"cost_usd": 5.0})
    assert run.budget == {"cost_usd": 5.0}
    for bad in ({"tokens": 0}, {"tokens": "many"}, {"dollars": 3}, {"cost_usd": -1}):
        with pytest.raises(InvalidBudget):
            run_start(graph_name="t-llm", data={}, budget=bad)


def test_a_cost_budget_counts_the_price_of_max_tokens(llm: ModelServer) -> None:
    run = run_start(graph_name="t-llm", data={"provider": "oa", "max_tokens": 1_000_000}, budget={"cost_usd": 0.5})
    execute(run)
    run.refresh_from_db()
    assert run.status == "FAILED" and "over the run's budget of $0.500000" in run.error, run.error
    assert llm.count() == 0


def test_a_rego_rule_denies_a_model(llm: ModelServer) -> None:
    run = _run(provider="oa", model="gpt-4-32k", prompt="hi")
    assert run.status == "COMPLETED"  # no policy in tests.helpers.execute by default
    run = run_start(graph_name="t-llm", data={"provider": "oa", "model": "gpt-4-32k"}, seed=1)
    execute(run, policy=PolicyEngine(registry=lambda: [], record=True))
    run.refresh_from_db()
    assert run.status == "FAILED" and "model gpt-4-32k is blocked" in run.error, run.error
    assert llm.count() == 1  # only the first, unpoliced run's call


def test_the_policy_input_holds_the_calls_facts(llm: ModelServer) -> None:
    seen: list[dict[str, Any]] = []

    class Spy(PolicyEngine):
        def evaluate(self, inp: dict[str, Any]) -> list[str]:
            seen.append(inp)
            return super().evaluate(inp)

    run = run_start(graph_name="t-llm", data={"provider": "an", "max_tokens": 64}, seed=1, budget={"tokens": 999})
    assert execute(run, policy=Spy(registry=lambda: [])) is Outcome.COMPLETED
    (facts,) = [i["llm"] for i in seen if i["activity"] == "llm"]
    assert facts["provider"] == "an" and facts["model"] == "m-small" and facts["max_tokens"] == 64
    assert facts["estimated_input_tokens"] > 0 and facts["spend"] == {"tokens": 0, "cost_usd": 0.0}
    assert facts["budget"] == {"tokens": 999}


def test_a_changed_prompt_is_named_by_verify_with_the_prompt_diff(llm: ModelServer) -> None:
    run = _run(provider="oa", prompt="check the disk")
    LLM_KNOBS["suffix"] = " and the memory"
    try:
        report = run_verify(run=run)
    finally:
        LLM_KNOBS["suffix"] = ""
    assert not report.ok
    first = report.first_divergence
    assert first is not None and first.cause == "prompt_changed"
    changed = {row["path"] for row in first.detail["prompt_diff"]}
    assert any("messages" in path for path in changed), first.detail["prompt_diff"]
    assert llm.count() == 1


def test_usage_by_day_and_the_totals_read_the_daily_rows(llm: ModelServer) -> None:
    _run(provider="oa", prompt="one")
    _run(provider="an", prompt="two words")
    (today,) = usage_by_day(days=1)
    assert today["calls"] == 2 and {g["graph_name"] for g in today["graphs"]} == {"t-llm"}
    assert {(r["provider"], r["calls"]) for r in usage_totals()} == {("oa", 1), ("an", 1)}
    with pytest.raises(ValueError):
        usage_by_day(days=0)


def test_metrics_the_api_the_runs_list_and_a_forged_budget(llm: ModelServer) -> None:
    from tests.unit.api_fixtures import assert_error, client_as, post_json
    from tests.unit.test_prometheus_metrics import scrape

    cheap = _run(provider="oa", prompt="one")
    dear = _run(provider="oa", prompt="one two three four five six seven")
    m = scrape()
    labels = (("graph", "t-llm"), ("model", "m-small"), ("provider", "oa"))
    assert m[("cmo_llm_calls_total", labels)] == 2
    assert m[("cmo_llm_tokens_total", (("direction", "output"), *labels))] == 2 + 8
    assert m[("cmo_llm_cost_usd_total", labels)] == pytest.approx(cheap.cost_usd + dear.cost_usd)

    viewer = client_as("viewer")
    days = viewer.get("/api/metrics/llm?days=3").json()["days"]
    assert len(days) == 3 and days[-1]["calls"] == 2 and days[-1]["graphs"][0]["graph_name"] == "t-llm"
    assert viewer.get("/api/metrics/llm?days=0").status_code == 422
    listed = viewer.get("/api/runs?sort=-cost&graph=t-llm&limit=1").json()
    assert listed["runs"][0]["trace_id"] == dear.trace_id and listed["next_cursor"]
    second = viewer.get(f"/api/runs?sort=-cost&graph=t-llm&limit=1&cursor={listed['next_cursor']}").json()
    assert second["runs"][0]["trace_id"] == cheap.trace_id
    assert viewer.get(f"/api/runs/{dear.trace_id}").json()["tokens"] == dear.tokens

    operator = client_as("operator")
    bad_budgets: list[Any] = [{"tokens": 0}, {"tokens": 1.5}, {"cost_usd": 0}, {"dollars": 1}, {"tokens": 10**13}, []]
    for bad in bad_budgets:
        assert post_json(operator, "/api/runs", {"graph": "t-llm", "budget": bad}).status_code == 422, bad
    made = post_json(operator, "/api/runs", {"graph": "t-llm", "budget": {"tokens": 5}})
    assert made.status_code == 201 and made.json()["budget"] == {"tokens": 5}
    assert_error(post_json(viewer, "/api/runs", {"graph": "t-llm", "budget": {"tokens": 5}}), 403, "forbidden")


def test_a_schedule_gives_its_runs_its_budget(llm: ModelServer) -> None:
    from schedules import services as schedules
    from schedules.models import ScheduleFire
    from tests.unit.api_fixtures import user_with

    owner = user_with("budget-owner", "operator")
    body = {"graph": "t-llm", "input": {"provider": "oa"}, "interval_seconds": 60, "budget": {"cost_usd": 0.25}}
    fields = schedules.schedule_check(data=body, user=owner, role="operator")
    schedule = schedules.schedule_create(name="with-budget", fields=fields, user=owner, role="operator")
    schedules.schedule_trigger(schedule=schedule, user=owner, role="operator")
    fire = ScheduleFire.objects.get(schedule=schedule)
    assert fire.run is not None and fire.run.budget == {"cost_usd": 0.25}
    with pytest.raises(schedules.ScheduleInvalid) as refused:
        schedules.schedule_check(data={**body, "budget": {"tokens": -3}}, user=owner, role="operator")
    assert refused.value.details[0]["field"] == "budget"


def test_a_conversation_escapes_what_the_model_said(llm: ModelServer) -> None:
    from django.template.loader import render_to_string

    from runs.llm.conversation import conversation_of

    llm.script(text='<img src=x onerror="alert(1)"> done')
    run = _run(provider="oa", prompt="<script>alert(2)</script>")
    (record,) = _llm_activities(run)
    view = conversation_of({"type": "llm", "status": "completed", "request": record.request,
                            "response": record.response, "error": ""})  # fmt: skip
    html = render_to_string("runs/_conversation.html", {"c": view, "seq": 0})
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=" in html and "&lt;script&gt;alert(2)" in html


def test_extra_may_not_stand_in_for_the_fields_the_policy_and_the_budget_read(llm: ModelServer) -> None:
    for extra in ({"model": "gpt-4-32k"}, {"max_completion_tokens": 10**6}, {"messages": []}):
        run = _run(provider="oa", extra=extra)
        assert run.status == "FAILED" and "llm: extra may not set" in run.error, run.error
    assert llm.count() == 0
    run = _run(provider="oa", extra={"seed": 7, "top_p": 0.5})
    assert run.status == "COMPLETED" and llm.last().body["seed"] == 7


def test_under_a_budget_a_call_without_max_tokens_is_capped_by_what_is_left(llm: ModelServer) -> None:
    run = run_start(graph_name="t-llm", data={"provider": "oa", "prompt": "hi"}, seed=1, budget={"tokens": 100})
    execute(run)
    run.refresh_from_db()
    sent = llm.last().body
    (record,) = _llm_activities(run)
    assert 0 < sent["max_tokens"] < 100 and record.response["max_tokens_from_budget"] == sent["max_tokens"]
    assert record.request["max_tokens"] is None  # the record keeps what the node asked for


def test_an_imported_bundle_with_forged_usage_counts_nothing_it_cannot_trust(llm: ModelServer) -> None:
    from replay.bundles import bundle_export, bundle_import
    from tests.unit.api_fixtures import user_with

    run = _run(provider="oa", prompt="hi")
    bundle = bundle_export(run=run)
    bundle["run"]["trace_id"] = "f" * 32
    for activity in bundle["activities"]:
        activity["response"]["usage"] = {"input_tokens": "lots", "output_tokens": 10**30, "cached_tokens": -4}
        activity["response"]["cost_usd"] = float("1e300")
    importer = user_with("importer", "operator")
    imported = bundle_import(bundle=_resigned(bundle), user=importer, role="operator")
    assert (imported.tokens, imported.cost_usd) == (0, 0.0)
    from runs.selectors import run_steps_view

    (step,) = run_steps_view(run=imported)
    assert step["activities"][0]["conversation"]["usage"] == {"input_tokens": 0, "output_tokens": 0,
                                                              "cached_tokens": 0}  # fmt: skip


def _resigned(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with its sha256 computed again, as an importer who edited it would."""
    from runs.engine.hashing import json_hash

    body = {k: v for k, v in bundle.items() if k != "sha256"}
    return {**body, "sha256": json_hash(body)}


def test_a_call_on_the_defaults_verifies_on_a_machine_configured_otherwise(llm: ModelServer) -> None:
    with override_settings(CMO_LLM_DEFAULT_PROVIDER="an"):
        run = _run(prompt="which provider")
    assert run.status == "COMPLETED", run.error
    (record,) = _llm_activities(run)
    assert record.request["provider"] is None and record.request["model"] is None  # as the node gave them
    assert record.response["provider"] == "an" and record.response["model"] == "m-small"
    with override_settings(CMO_LLM_PROVIDERS={}, CMO_LLM_DEFAULT_PROVIDER=""):
        assert run_verify(run=run).ok
