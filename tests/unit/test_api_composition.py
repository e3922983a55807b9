"""Composition over the API and the command line: signals in, lineage and the spawned-runs filter out."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from runs.engine.executor import Outcome
from runs.models import Run, Signal
from runs.services.runs import run_abort, run_start
from tests.helpers import drain, execute
from tests.unit.api_fixtures import assert_error, client_as, post_json, user_with

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator() -> Client:
    return client_as("operator")


def _waiting() -> Run:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    return run


def test_an_operator_signals_a_waiting_run_and_it_resumes(operator: Client) -> None:
    run = _waiting()
    response = post_json(operator, f"/api/runs/{run.trace_id}/signals/proceed", {"payload": {"go": True}})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["delivered"] is True and body["sent_by"] == "operator-user" and body["name"] == "proceed"
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED" and run.state["heard"] == {"go": True}
    assert run.events.get(kind="signal").actor == "operator-user"


def test_a_signal_before_the_wait_is_kept_and_said_so(operator: Client) -> None:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    body = post_json(operator, f"/api/runs/{run.trace_id}/signals/proceed", {"payload": {"go": False}}).json()
    assert body["delivered"] is False
    drain()
    run.refresh_from_db()
    assert run.state["heard"] == {"go": False}


def test_signal_errors_name_the_problem_and_keep_nothing(operator: Client) -> None:
    run = _waiting()
    path = f"/api/runs/{run.trace_id}/signals/proceed"
    refused = assert_error(post_json(operator, path, {"payload": {"go": "yes"}}), 422, "invalid_signal")
    assert "$.go: 'yes' is not of type 'boolean'" in refused["message"]
    assert_error(post_json(operator, path, {"payload": 1, "extra": 2}), 422, "validation_error")
    bad = operator.post(path, data="{", content_type="application/json")
    assert bad.status_code == 400
    assert_error(post_json(operator, f"/api/runs/{'0' * 32}/signals/proceed", {"payload": 1}), 404, "not_found")
    assert_error(post_json(operator, f"/api/runs/{run.trace_id}/signals/9bad name", {}), 422, "validation_error")
    assert not Signal.objects.exists()
    run_abort(run=run)
    ended = assert_error(post_json(operator, path, {"payload": {"go": True}}), 409, "run_ended")
    assert "has ended (ABORTED)" in ended["message"]
    assert not Signal.objects.exists()


def test_a_viewer_cannot_signal() -> None:
    run = _waiting()
    response = post_json(client_as("viewer"), f"/api/runs/{run.trace_id}/signals/proceed", {"payload": {"go": True}})
    assert_error(response, 403, "forbidden")
    assert not Signal.objects.exists()


def test_a_deeply_nested_signal_payload_is_refused_at_the_door(operator: Client) -> None:
    run = _waiting()
    deep = "[" * 150 + "]" * 150
    response = operator.post(
        f"/api/runs/{run.trace_id}/signals/proceed", data='{"payload": ' + deep + "}", content_type="application/json"
    )
    assert response.status_code in (400, 422) and "deep" in response.json()["message"]
    assert not Signal.objects.exists()


def test_runs_show_their_lineage_and_the_list_filters_by_parent(operator: Client) -> None:
    parent = run_start(graph_name="c-static", data={}, seed=1)
    drain()
    body = operator.get(f"/api/runs/{parent.trace_id}").json()
    assert (body["kind"], body["spawned_by"], body["spawned"]) == ("run", None, 3)
    listed = operator.get("/api/runs").json()["runs"]
    assert [r["trace_id"] for r in listed] == [parent.trace_id], "branches are listed under their run"
    branches = operator.get(f"/api/runs?spawned_by={parent.trace_id}").json()["runs"]
    assert len(branches) == 3 and {r["kind"] for r in branches} == {"branch"}
    assert {r["spawned_by"] for r in branches} == {parent.trace_id}
    one = operator.get(f"/api/runs/{branches[0]['trace_id']}").json()
    assert one["spawned_by"] == parent.trace_id and one["spawn_step"] == 0
    assert len(operator.get("/api/runs?kind=branch").json()["runs"]) == 3


def test_verify_and_export_over_the_api_cover_the_spawned_runs(operator: Client) -> None:
    parent = run_start(graph_name="c-static", data={}, seed=1)
    drain()
    report = post_json(operator, f"/api/runs/{parent.trace_id}/verify").json()
    assert report["ok"] is True and len(report["spawned"]) == 3 and report["spawned"][0]["kind"] == "branch"
    alone = operator.get(f"/api/runs/{parent.trace_id}/export").json()
    assert "spawned" not in alone
    tree = operator.get(f"/api/runs/{parent.trace_id}/export?spawned=true").json()
    assert len(tree["spawned"]) == 3


def test_the_signal_command_sends_as_a_user_and_refuses_what_the_api_refuses(capsys: pytest.CaptureFixture) -> None:
    run = _waiting()
    user_with("ops", "operator")
    user_with("watcher", "viewer")
    with pytest.raises(CommandError, match="may not signal runs"):
        call_command("signal_run", run.trace_id, "proceed", "--payload", '{"go": true}', "--user", "watcher")
    with pytest.raises(CommandError, match="not of type 'boolean'"):
        call_command("signal_run", run.trace_id, "proceed", "--payload", '{"go": 1}')
    with pytest.raises(CommandError, match="--payload"):
        call_command("signal_run", run.trace_id, "proceed", "--payload", "{nope")
    call_command("signal_run", run.trace_id, "proceed", "--payload", json.dumps({"go": True}), "--user", "ops")
    assert "delivered" in capsys.readouterr().out
    assert run.events.get(kind="signal").actor == "ops"
    with pytest.raises(CommandError, match="no run with trace id"):
        call_command("signal_run", "f" * 32, "proceed")
