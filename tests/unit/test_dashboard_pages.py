"""The dashboard's pages: sign-in, roles, the start form, the run page and the graph pages."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from runs.engine import statemachine as sm
from runs.models import Run
from runs.services.graphs import graph_sync_all
from runs.services.runs import run_start
from tests.helpers import start_and_execute
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_INPUT = {"service": "checkout", "symptom": "slow", "severity": "high"}


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture
def operator() -> Client:
    return client_for("operator")


@pytest.mark.parametrize("url", ["/", "/runs/", "/runs/new/", "/runs/abc/", "/graphs/", "/graphs/incident-healing/"])
def test_every_page_needs_a_sign_in(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_sign_in_page_and_sign_in(viewer: Client) -> None:
    assert Client().get("/login/").status_code == 200
    response = Client().post("/login/", {"username": "viewer", "password": "pw-for-dashboard-tests"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_viewer_sees_no_start_or_abort_control_and_gets_403_on_the_posts(viewer: Client) -> None:
    run = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    runs_page = viewer.get("/runs/").content.decode()
    run_page = viewer.get(f"/runs/{run.trace_id}/").content.decode()
    assert "Start a run" not in runs_page and "Start a run" not in viewer.get("/").content.decode()
    assert "Abort run" not in run_page and "/abort/" not in run_page
    assert viewer.get("/runs/new/").status_code == 403
    assert viewer.post("/runs/new/", {"graph": "incident-healing", "input": json.dumps(GOOD_INPUT)}).status_code == 403
    assert viewer.post(f"/runs/{run.trace_id}/abort/", {"confirm": "yes"}).status_code == 403
    assert viewer.get(f"/runs/{run.trace_id}/abort/").status_code == 403
    assert Run.objects.count() == 1
    run.refresh_from_db()
    assert run.status == sm.PENDING


def test_csrf_is_enforced_on_the_start_form() -> None:
    client_for("operator")
    client = Client(enforce_csrf_checks=True)
    client.login(username="operator", password="pw-for-dashboard-tests")
    response = client.post("/runs/new/", {"graph": "incident-healing", "input": json.dumps(GOOD_INPUT)})
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_an_operator_sees_the_controls(operator: Client) -> None:
    run = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    assert "Start a run" in operator.get("/runs/").content.decode()
    assert "Abort run" in operator.get(f"/runs/{run.trace_id}/").content.decode()


def test_the_start_form_shows_schema_errors_inline_then_starts_the_run(operator: Client) -> None:
    graph_sync_all()  # as every server and worker does at start
    form = operator.get("/runs/new/?graph=incident-healing")
    assert form.status_code == 200
    assert "&quot;service&quot;: &quot;&quot;" in form.content.decode()  # a starting input from the schema

    bad = operator.post("/runs/new/", {"graph": "incident-healing", "version": "1", "input": '{"service": 3}'})
    page = bad.content.decode()
    assert bad.status_code == 400
    assert "The input is not valid" in page and "$.service" in page and "&#x27;symptom&#x27; is a required" in page
    assert 'aria-invalid="true"' in page

    not_json = operator.post("/runs/new/", {"graph": "incident-healing", "input": "{nope"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.content.decode()
    assert not Run.objects.exists()

    ok = operator.post("/runs/new/", {"graph": "incident-healing", "input": json.dumps(GOOD_INPUT)})
    run = Run.objects.get()
    assert ok.status_code == 302 and ok["Location"] == f"/runs/{run.trace_id}/"
    assert run.created_by == User.objects.get(username="operator")
    assert run.context == {"user": "operator", "role": "operator"}


def test_the_start_form_takes_a_model_budget_and_refuses_a_bad_one(operator: Client) -> None:
    graph_sync_all()
    data = {"graph": "incident-healing", "input": json.dumps(GOOD_INPUT)}
    for bad, says in (('{"tokens": 0}', "budget.tokens"), ("{nope", "not valid JSON"), ('{"usd": 1}', "budget")):
        refused = operator.post("/runs/new/", {**data, "budget": bad})
        assert refused.status_code == 400 and says in refused.content.decode(), bad
    assert not Run.objects.exists()
    ok = operator.post("/runs/new/", {**data, "budget": '{"tokens": 5000, "cost_usd": 0.5}'})
    assert ok.status_code == 302 and Run.objects.get().budget == {"tokens": 5000, "cost_usd": 0.5}


def test_an_operator_aborts_a_run_after_confirming(operator: Client) -> None:
    run = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    page = operator.get(f"/runs/{run.trace_id}/").content.decode()
    assert 'name="confirm" value=""' in page and 'data-confirm="Abort run ' in page  # the script's dialog
    unconfirmed = operator.post(f"/runs/{run.trace_id}/abort/")  # no script: the server asks
    assert unconfirmed.status_code == 302 and unconfirmed["Location"] == f"/runs/{run.trace_id}/abort/"
    ask = operator.get(unconfirmed["Location"]).content.decode()
    assert f'Abort run <span class="mono">{run.trace_id[:12]}</span>?' in ask
    assert 'name="confirm" value="yes"' in ask and "Keep it running" in ask
    run.refresh_from_db()
    assert run.status == sm.PENDING
    response = operator.post(f"/runs/{run.trace_id}/abort/", {"confirm": "yes"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == sm.ABORTED
    assert run.events.filter(to_status=sm.ABORTED, actor="operator").exists()
    again = operator.post(f"/runs/{run.trace_id}/abort/", {"confirm": "yes"}, follow=True)
    assert "already finished" in again.content.decode()
    ended = operator.get(f"/runs/{run.trace_id}/abort/")  # nothing left to confirm
    assert ended.status_code == 302 and ended["Location"] == f"/runs/{run.trace_id}/"


def test_the_run_page_renders_steps_state_diff_and_activities(viewer: Client) -> None:
    counted = start_and_execute("t-count", {"target": 3})
    page = viewer.get(f"/runs/{counted.trace_id}/?step=1")
    html = page.content.decode()
    assert page.status_code == 200
    data = page.context["page"]
    assert [s["index"] for s in data["steps"]] == [0, 1, 2]
    assert data["current"] == 1 and data["last_step"] == 2 and data["last_event"] > 0
    assert "Step 1 · t_count" in html
    assert data["steps"][1]["diff"] == [{"op": "changed", "path": "$.n", "old": 1, "new": 2}]
    assert data["steps"][1]["input"] == {"target": 3, "n": 1}
    assert "$.n" in html and "Diff against the previous step" in html
    assert data["steps"][2]["hashes"]["state"] in html or data["steps"][1]["hashes"]["state"] in html
    assert 'id="run-data"' in html and "COMPLETED" in html
    assert [e["to_status"] for e in data["events"] if e["to_status"]] == ["PENDING", "RUNNING", "COMPLETED"]

    with_activities = start_and_execute("t-now-rand", {})
    html = viewer.get(f"/runs/{with_activities.trace_id}/").content.decode()
    step = viewer.get(f"/runs/{with_activities.trace_id}/").context["current_step"]
    assert [a["type"] for a in step["activities"]][:2] == ["now", "rand"]
    assert "No activities in this step" not in html and "<td>now</td>" in html


def test_the_run_page_escapes_what_users_typed(viewer: Client) -> None:
    evil = "<script>alert(1)</script>"
    run = run_start(graph_name="incident-healing", data={**GOOD_INPUT, "symptom": evil}, seed=1)
    html = viewer.get(f"/runs/{run.trace_id}/").content.decode()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_that_does_not_exist_is_404(viewer: Client) -> None:
    assert viewer.get("/runs/nope/").status_code == 404
    assert viewer.get("/graphs/nope/").status_code == 404


def test_home_summary_counts_days_and_averages_the_slowest_graphs_from_known_times() -> None:
    import datetime as dt

    from django.utils import timezone

    from runs.selectors import dashboard_summary

    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = now - dt.timedelta(days=1)
    rows = [  # graph, status, finished, seconds taken (None: never started)
        ("t-count", sm.COMPLETED, now, 2.0),
        ("t-count", sm.COMPLETED, yesterday, 4.0),
        ("incident-healing", sm.COMPLETED, now, 10.0),
        ("incident-healing", sm.COMPLETED, now, None),
        ("incident-healing", sm.FAILED, yesterday, 1.0),
        ("incident-healing", sm.TIMED_OUT, now, 5.0),
    ]
    for graph, status, finished, seconds in rows:
        run = run_start(graph_name=graph, data=GOOD_INPUT if graph == "incident-healing" else {"target": 1}, seed=1)
        started = finished - dt.timedelta(seconds=seconds) if seconds is not None else None
        Run.objects.filter(pk=run.pk).update(status=status, started_at=started, finished_at=finished)
    summary = dashboard_summary(now=now)
    assert summary["completed"] == 4 and summary["failed"] == 2 and summary["error_rate"] == 2 / 6
    assert [(d["completed"], d["failed"]) for d in summary["days"][-2:]] == [(1, 1), (3, 1)]
    assert summary["slowest"] == [
        {"graph": "incident-healing", "avg_seconds": 10.0, "runs": 1},  # the run never started is not timed
        {"graph": "t-count", "avg_seconds": 3.0, "runs": 2},
    ]


def test_home_and_graph_pages(viewer: Client) -> None:
    start_and_execute("t-count", {"target": 2})
    failed = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    Run.objects.filter(pk=failed.pk).update(status=sm.FAILED)
    home = viewer.get("/")
    summary = home.context["summary"]
    assert home.status_code == 200
    assert summary["started"] == 2 and summary["completed"] == 1
    assert summary["days"][-1]["started"] == 2
    assert summary["slowest"][0]["graph"] == "t-count"
    assert "approvals waiting" in home.content.decode() and "<svg" in home.content.decode()

    graphs = viewer.get("/graphs/").content.decode()
    assert "incident-healing" in graphs and "t-count" in graphs
    detail = viewer.get("/graphs/t-count/")
    assert detail.status_code == 200
    assert detail.context["diagram"]["edges"] == [
        {"from": "t_count", "to": "t_count", "label": "again"},
        {"from": "t_count", "to": "__end__", "label": "done"},
    ]
    assert len(detail.context["recent"]) == 1


def test_home_shows_each_workers_runs_in_flight_the_queue_and_runs_waiting_on_a_cap(viewer: Client) -> None:
    import datetime as dt

    from django.utils import timezone

    from runs.models import GraphLimit, Run
    from runs.services.leases import worker_heartbeat

    worker_heartbeat(owner="host-a:123:abcd", concurrency=8, in_flight=3, started_at=timezone.now())
    GraphLimit.objects.create(graph_name="incident-healing", max_running=1)
    busy = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    Run.objects.filter(pk=busy.pk).update(
        status="RUNNING", lease_owner="host-a:123:abcd", lease_expires_at=timezone.now() + dt.timedelta(seconds=30)
    )
    run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=2)
    page = viewer.get("/").content.decode()
    assert "host-a:123:abcd" in page
    assert "1 run queued for a worker" in page
    assert "Waiting on a cap: <strong>incident-healing</strong> 1" in page
