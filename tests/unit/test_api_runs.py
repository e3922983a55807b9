"""The runs API: start, list (filters, keyset pagination), get, steps, activities, events, abort; its errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from runs.models import Run
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, client_as, post_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    return client_as("operator")


def test_starting_a_run_returns_it_pending_with_who_started_it(operator: Client) -> None:
    response = post_json(operator, "/api/runs", {"graph": "t-count", "input": {"target": 2}, "seed": 7})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "PENDING" and body["graph"] == "t-count" and body["seed"] == 7
    assert body["input"] == {"target": 2} and body["created_by"] == "operator-user"
    run = Run.objects.get(trace_id=body["trace_id"])
    assert run.context == {"user": "operator-user", "role": "operator"}


def test_input_not_matching_the_graph_schema_is_a_422_with_each_field(operator: Client) -> None:
    body = assert_error(
        post_json(operator, "/api/runs", {"graph": "t-count", "input": {"target": 0}}), 422, "invalid_input"
    )
    assert body["details"] == [{"path": "$.target", "message": "0 is less than the minimum of 1"}]
    assert not Run.objects.exists()


def test_a_request_not_matching_the_api_schema_is_a_422_naming_the_field(operator: Client) -> None:
    body = assert_error(post_json(operator, "/api/runs", {"graph": 5, "seed": "x"}), 422, "validation_error")
    assert {tuple(e["loc"]) for e in body["details"]} == {("body", "body", "graph"), ("body", "body", "seed")}


def test_an_unknown_graph_is_a_404(operator: Client) -> None:
    body = assert_error(post_json(operator, "/api/runs", {"graph": "no-such-graph"}), 404, "not_found")
    assert "no-such-graph" in body["message"]


def test_malformed_json_is_a_400(operator: Client) -> None:
    response = operator.post("/api/runs", data="{not json", content_type="application/json")
    assert_error(response, 400, "malformed_request")


@override_settings(CMO_MAX_REQUEST_BYTES=1000)
def test_a_body_over_the_upload_limit_is_a_413(operator: Client) -> None:
    response = post_json(operator, "/api/runs", {"graph": "t-count", "input": {"pad": "x" * 2000}})
    assert_error(response, 413, "payload_too_large")
    assert not Run.objects.exists()


def test_a_nul_character_in_the_input_is_a_422_not_a_database_error(operator: Client) -> None:
    response = post_json(operator, "/api/runs", {"graph": "t-count", "input": {"note\u0000": 1}})
    assert_error(response, 422, "unstorable_value")


def test_unknown_paths_and_runs_are_json_404s(operator: Client) -> None:
    assert_error(operator.get("/api/no/such/thing"), 404, "not_found")
    assert_error(operator.get("/api/runs/" + "a" * 32), 404, "not_found")
    assert_error(operator.get("/api/runs/not-a-trace-id"), 422, "validation_error")


def test_a_finished_run_reads_back_with_its_steps_activities_and_events() -> None:
    run = start_and_execute("t-count", {"target": 3})
    viewer = client_as("viewer")
    got = viewer.get(f"/api/runs/{run.trace_id}").json()
    assert got["status"] == "COMPLETED" and got["terminal"] and got["final_state"] == {"target": 3, "n": 3}
    steps = viewer.get(f"/api/runs/{run.trace_id}/steps").json()["steps"]
    assert [s["index"] for s in steps] == [0, 1, 2]
    assert steps[0]["input"] == {"target": 3} and steps[0]["state"] == {"target": 3, "n": 1}
    assert steps[-1]["edge"] == "done" and set(steps[0]["hashes"]) == {"input", "state", "output"}
    later = viewer.get(f"/api/runs/{run.trace_id}/steps?after=1").json()["steps"]
    assert [s["index"] for s in later] == [2]
    events = viewer.get(f"/api/runs/{run.trace_id}/events").json()["events"]
    assert events[0]["kind"] == "created" and events[-1]["to_status"] == "COMPLETED"
    after = viewer.get(f"/api/runs/{run.trace_id}/events?after={events[0]['id']}").json()["events"]
    assert len(after) == len(events) - 1
    assert viewer.get(f"/api/runs/{run.trace_id}/activities").json() == {"trace_id": run.trace_id, "activities": []}


def test_activities_carry_their_idempotency_key() -> None:
    run = start_and_execute("t-now-rand", {})
    activities = client_as("viewer").get(f"/api/runs/{run.trace_id}/activities").json()["activities"]
    assert activities, "t-now-rand records activities"
    for a in activities:
        assert a["idempotency_key"] == f"{run.trace_id}:{a['step']}:{a['seq']}"
    only = client_as("approver").get(f"/api/runs/{run.trace_id}/activities?step=0").json()["activities"]
    assert only == [a for a in activities if a["step"] == 0]


def test_aborting_a_pending_run_ends_it_and_aborting_again_is_a_409(operator: Client) -> None:
    trace = post_json(operator, "/api/runs", {"graph": "t-count"}).json()["trace_id"]
    aborted = post_json(operator, f"/api/runs/{trace}/abort")
    assert aborted.status_code == 200 and aborted.json()["status"] == "ABORTED"
    body = assert_error(post_json(operator, f"/api/runs/{trace}/abort"), 409, "invalid_transition")
    assert "ABORTED" in body["message"]


def test_aborting_a_completed_run_is_a_409(operator: Client) -> None:
    run = start_and_execute("t-count", {"target": 1})
    assert_error(post_json(operator, f"/api/runs/{run.trace_id}/abort"), 409, "invalid_transition")


def test_the_keyset_cursor_walks_every_run_once(operator: Client) -> None:
    started = {post_json(operator, "/api/runs", {"graph": "t-count"}).json()["trace_id"] for _ in range(23)}
    for sort in ("-created", "created"):
        seen: list[str] = []
        cursor = ""
        pages = 0
        while True:
            page = operator.get("/api/runs", {"limit": 5, "sort": sort, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.content
            body = page.json()
            seen += [r["trace_id"] for r in body["runs"]]
            pages += 1
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert pages == 5
        assert len(seen) == len(set(seen)) == 23 and set(seen) == started
        created = [Run.objects.get(trace_id=t).created_at for t in seen]
        assert created == sorted(created, reverse=sort == "-created")


def test_the_run_list_filters_by_status_graph_and_trace_prefix(operator: Client) -> None:
    done = start_and_execute("t-count", {"target": 1})
    pending = post_json(operator, "/api/runs", {"graph": "t-cycle"}).json()["trace_id"]

    def traces(**params: str) -> list[str]:
        return [r["trace_id"] for r in operator.get("/api/runs", params).json()["runs"]]

    assert traces(status="COMPLETED") == [done.trace_id]
    assert traces(graph="t-cycle") == [pending]
    assert traces(trace=pending[:6]) == [pending]
    assert set(traces()) == {done.trace_id, pending}
    assert traces(since="2999-01-01T00:00:00Z") == []


def test_bad_list_parameters_are_422s(operator: Client) -> None:
    for params in ({"limit": 0}, {"limit": 1000}, {"status": "DONE"}, {"cursor": "garbage"}, {"since": "yesterday"}):
        assert_error(operator.get("/api/runs", params), 422, "validation_error")


def test_errors_are_json_even_for_unknown_methods(operator: Client) -> None:
    response = operator.delete("/api/runs")
    assert response.status_code == 405
    assert json.loads(response.content)["code"] == "method_not_allowed"


def test_list_dates_with_any_offset_are_compared_in_utc(operator: Client) -> None:
    post_json(operator, "/api/runs", {"graph": "t-count"})
    assert len(operator.get("/api/runs", {"since": "2000-01-01T00:00:00+19:11"}).json()["runs"]) == 1
    assert len(operator.get("/api/runs", {"since": "2000-01-01T00:00:00"}).json()["runs"]) == 1
    assert operator.get("/api/runs", {"until": "2000-01-01T00:00:00-23:00"}).json()["runs"] == []
    assert_error(operator.get("/api/runs", {"since": "0001-01-01T00:00:00+05:00"}), 422, "validation_error")


@pytest.mark.parametrize("path", ["/api/runs", "/api/graphs", "/api/specialists", "/api/runs/import"])
def test_a_lone_surrogate_in_any_body_is_a_400_not_a_crash(operator: Client, path: str) -> None:
    body = '{"graph": "t-count", "definition": {}, "name": "x", "input": {"a": "\\ud800"}}'
    response = operator.post(path, data=body, content_type="application/json")
    assert "surrogate" in assert_error(response, 400, "malformed_request")["message"]


def test_aborting_a_run_a_worker_holds_asks_the_worker_to_stop(operator: Client) -> None:
    from runs.services.leases import run_claim

    trace = post_json(operator, "/api/runs", {"graph": "t-count"}).json()["trace_id"]
    run = Run.objects.get(trace_id=trace)
    assert run_claim(run_id=run.pk, owner="some-worker")
    Run.objects.filter(pk=run.pk).update(status="RUNNING")  # as the worker's executor does first
    body = post_json(operator, f"/api/runs/{trace}/abort").json()
    assert body["status"] == "RUNNING" and body["abort_requested"] is True


def test_any_method_on_an_unknown_api_path_is_a_json_404() -> None:
    client = Client(enforce_csrf_checks=True)
    for method in (client.get, client.post, client.put, client.delete):
        assert_error(method("/api/nowhere"), 404, "not_found")


def test_a_server_failure_is_a_json_500_and_is_logged(
    operator: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr("runs.api.selectors.run_list", broken)
    response = operator.get("/api/runs")
    assert response.status_code == 500 and response.json()["code"] == "server_error"
    assert "fire" not in response.content.decode()
    assert any("API error on GET /api/runs" in r.getMessage() for r in caplog.records)


def test_a_page_of_runs_costs_the_same_few_queries_whatever_its_size(
    operator: Client, django_assert_max_num_queries: Any
) -> None:
    for _ in range(30):
        post_json(operator, "/api/runs", {"graph": "t-count"})
    operator.get("/api/me")  # last_used_at is written at most once a minute: not inside the measured requests
    for limit in (1, 30):
        with django_assert_max_num_queries(3):  # token + user, the user's groups, the page (runs with graphs)
            assert len(operator.get("/api/runs", {"limit": limit}).json()["runs"]) == limit


def test_steps_come_in_pages(operator: Client) -> None:
    from tests.helpers import start_and_execute

    run = start_and_execute("t-count", {"target": 5})
    first = operator.get(f"/api/runs/{run.trace_id}/steps", {"limit": 2}).json()
    assert [s["index"] for s in first["steps"]] == [0, 1] and first["next_after"] == 1
    second = operator.get(f"/api/runs/{run.trace_id}/steps", {"limit": 2, "after": 1}).json()
    assert [s["index"] for s in second["steps"]] == [2, 3] and second["steps"][0]["input"] == first["steps"][1]["state"]
    last = operator.get(f"/api/runs/{run.trace_id}/steps", {"limit": 2, "after": 3}).json()
    assert [s["index"] for s in last["steps"]] == [4] and last["next_after"] is None
