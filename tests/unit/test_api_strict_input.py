"""The API refuses at the door what it could not read back, and is strict about types: each refusal says why."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from approvals.models import ApprovalRequest
from runs.models import Graph, Run, Step
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, client_as, post_json

pytestmark = pytest.mark.django_db


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def raw_post(client: Client, path: str, body: bytes, content_type: str = "application/json") -> Any:
    return client.post(path, data=body, content_type=content_type)


@pytest.mark.parametrize("depth", [101, 500, 989])
def test_run_input_nested_deeper_than_the_engine_stores_is_a_422(depth: int) -> None:
    before = Run.objects.count()
    body = b'{"graph": "t-count", "input": {"deep": ' + b"[" * depth + b"1" + b"]" * depth + b"}}"
    response = raw_post(client_as("operator"), "/api/runs", body)
    body = assert_error(response, 422, "too_deep" if depth > 110 else "invalid_input")
    assert "levels" in body["message"]
    assert Run.objects.count() == before, "nothing is written"


def test_a_body_nested_past_what_python_can_parse_is_a_422() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert_error(raw_post(client_as("operator"), "/api/runs", body), 422, "too_deep")


def test_run_input_at_the_limit_is_accepted_and_read_back() -> None:
    operator = client_as("operator")
    value = {"deep": nested(99)}
    created = post_json(operator, "/api/runs", {"graph": "t-count", "input": {**value, "target": 1}})
    assert created.status_code == 201, created.content
    trace = created.json()["trace_id"]
    assert operator.get(f"/api/runs/{trace}").json()["input"]["deep"] == value["deep"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/runs", b'{"graph": "t-count", "input": {"x": NaN}}'),
        ("/api/runs", b'{"graph": "t-count", "input": {"x": Infinity}}'),
        ("/api/graphs", b'{"definition": {"name": "g-nan", "entry": "t_count", "nodes": [{"name": "t_count", '
         b'"timeout": NaN}], "edges": [{"from": "t_count", "to": "__end__"}]}}'),
        ("/api/runs/import", b'{"format": "cmo-trace-bundle", "x": -Infinity}'),
    ],
)
def test_nan_and_infinity_are_not_json(path: str, body: bytes) -> None:
    graphs = Graph.objects.count()
    response = raw_post(client_as("operator"), path, body)
    message = assert_error(response, 400, "malformed_request")["message"]
    assert "NaN" in message or "Infinity" in message
    assert Graph.objects.count() == graphs


def test_a_fork_state_with_nan_is_refused() -> None:
    run = start_and_execute("t-count", {"target": 2})
    response = raw_post(client_as("operator"), f"/api/runs/{run.trace_id}/fork", b'{"step": 0, "state": {"n": NaN}}')
    assert_error(response, 400, "malformed_request")
    assert Run.objects.count() == 1


def test_an_input_schema_nested_900_deep_is_a_422_not_a_500() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(450):
        schema = {"type": "object", "properties": {"a": schema}}
    definition = {
        "name": "g-deep-schema",
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [{"from": "t_count", "to": "__end__"}],
        "input_schema": schema,
    }
    assert_error(post_json(client_as("admin"), "/api/graphs", {"definition": definition}), 422, "too_deep")
    assert not Graph.objects.filter(name="g-deep-schema").exists()


def test_a_graph_input_schema_deeper_than_stored_is_an_invalid_graph() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(52):
        schema = {"type": "object", "properties": {"a": schema}}
    definition = {
        "name": "g-deep-schema",
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [{"from": "t_count", "to": "__end__"}],
        "input_schema": schema,
    }
    body = assert_error(post_json(client_as("admin"), "/api/graphs", {"definition": definition}), 422, "invalid_graph")
    assert "levels deep" in body["message"]


@pytest.mark.parametrize("query", ["until=0.5", "since=9999999999999", "since=1700000000", "until=yesterday"])
def test_dates_in_queries_are_iso_8601_only(query: str) -> None:
    body = assert_error(client_as("viewer").get(f"/api/runs?{query}"), 422, "validation_error")
    assert "ISO 8601" in json.dumps(body["details"])


def test_an_iso_date_is_accepted() -> None:
    assert client_as("viewer").get("/api/runs?since=2026-01-01T00:00:00Z&until=2027-01-01").status_code == 200


@pytest.mark.parametrize("cursor", ["99999999999999999999~1", "0~0", "-99999999999999999999~5"])
def test_a_well_formed_cursor_that_points_nowhere_is_a_422(cursor: str) -> None:
    assert_error(client_as("viewer").get("/api/runs", {"cursor": cursor}), 422, "invalid_cursor")


@pytest.mark.parametrize(
    "body",
    [{"step": False}, {"step": "0"}, {"step": 0.0}, {"step": 0, "version": "1"}, {"step": 0, "extra": 1}],
)
def test_fork_parameters_are_exact_json_types(body: dict[str, Any]) -> None:
    run = start_and_execute("t-count", {"target": 2})
    assert_error(post_json(client_as("operator"), f"/api/runs/{run.trace_id}/fork", body), 422, "validation_error")
    assert Run.objects.count() == 1


@pytest.mark.parametrize("body", [{"graph": "t-count", "seed": "5"}, {"graph": "t-count", "seed": True}])
def test_a_seed_is_an_integer(body: dict[str, Any]) -> None:
    assert_error(post_json(client_as("operator"), "/api/runs", body), 422, "validation_error")
    assert not Run.objects.exists()


def test_approve_is_a_boolean() -> None:
    run = start_and_execute("t-count", {"target": 1})
    request = ApprovalRequest.objects.create(
        run=run, step=0, seq=0, action={}, level="high", score=70, expires_at=run.created_at
    )
    response = post_json(client_as("approver"), f"/api/approvals/{request.pk}/decide", {"approve": "yes"})
    assert_error(response, 422, "validation_error")
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_body_that_is_not_sent_as_json_is_a_415() -> None:
    response = raw_post(client_as("operator"), "/api/runs", b'{"graph": "t-count"}', content_type="text/plain")
    assert "application/json" in assert_error(response, 415, "unsupported_media_type")["message"]
    assert not Run.objects.exists()


def test_a_byte_order_mark_is_refused() -> None:
    response = raw_post(client_as("operator"), "/api/runs", b'\xef\xbb\xbf{"graph": "t-count"}')
    assert "byte order mark" in assert_error(response, 400, "malformed_request")["message"]
    assert not Run.objects.exists()


# -- readers survive what older versions stored -----------------------------------------------------------


def test_every_reader_survives_a_run_stored_with_nesting_deeper_than_now_accepted() -> None:
    """Rows written before the limit (or by hand): the pages and the API answer, none with a 500."""
    run = start_and_execute("t-count", {"target": 1})
    deep = {"deep": nested(600)}
    Run.objects.filter(pk=run.pk).update(input=deep, state=deep)
    Step.objects.filter(run=run).update(state={**deep, "n": 1}, state_delta=None)
    viewer = client_as("viewer")
    trace = run.trace_id
    for path in (f"/api/runs/{trace}", f"/api/runs/{trace}/steps", f"/api/runs/{trace}/export"):
        response = viewer.get(path)
        assert response.status_code < 500, (path, response.content[:300])
    verify = post_json(viewer, f"/api/runs/{trace}/verify")
    assert verify.status_code < 500, verify.content[:300]
    page = Client()
    page.force_login(run.created_by or _user())
    for path in (f"/runs/{trace}/", f"/runs/{trace}/?step=0", "/runs/", "/"):
        response = page.get(path)
        assert response.status_code < 500, (path, response.content[:300])


def _user() -> Any:
    from tests.unit.api_fixtures import user_with

    return user_with("reader", "viewer")


def test_a_bundle_whose_state_is_nested_600_deep_is_refused_before_anything_is_written() -> None:
    run = start_and_execute("t-count", {"target": 1})
    operator = client_as("operator")
    bundle = operator.get(f"/api/runs/{run.trace_id}/export").content
    Run.objects.all().delete()
    deep = b"[" * 600 + b"1" + b"]" * 600
    forged = bundle.replace(b'"state": {', b'"state": {"deep": ' + deep + b", ", 1)
    assert forged != bundle
    assert_error(raw_post(operator, "/api/runs/import", forged), 422, "too_deep")
    assert not Run.objects.exists()
