"""Composition on the dashboard: the run page's lanes, lineage, diagram markers, step inspector and player order
for branches and children, waits on timers and signals, the runs list's parent filter, and the signal form."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from runs.engine.executor import Outcome
from runs.models import Run, Signal, Timer
from runs.services.runs import run_start
from tests.helpers import drain, execute
from tests.unit.dashboard_fixtures import PASSWORD, client_for

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture
def operator() -> Client:
    return client_for("operator")


def _run(graph: str, data: dict[str, Any]) -> Run:
    run = run_start(graph_name=graph, data=data, seed=7)
    drain()
    run.refresh_from_db()
    return run


def _branches(run: Run) -> list[Run]:
    return list(Run.objects.filter(spawned_by=run, kind=Run.KIND_BRANCH).order_by("spawn_seq"))


def _json(html: str, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None, f"no {element_id} in the page"
    return json.loads(found[1])


def _page(client: Client, run: Run, query: str = "") -> str:
    response = client.get(f"/runs/{run.trace_id}/{query}")
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _lanes(html: str) -> list[str]:
    """The trace ids of the branch lanes the timeline draws, in order."""
    return re.findall(r'<div class="lane lane-branch" role="listitem" data-trace="([0-9a-f]+)"', html)


# -- fan-out and join ---------------------------------------------------------------------------------


def test_a_static_fan_out_has_a_lane_per_branch_and_marks_its_fork_and_join(viewer: Client) -> None:
    run = _run("c-static", {})
    assert run.status == "COMPLETED", run.error
    branches = _branches(run)
    html = _page(viewer, run)
    assert _lanes(html) == [b.trace_id for b in branches]
    assert 'class="lane lane-main" data-trace="' + run.trace_id in html
    assert "Fan-out at step 0 (<code>c_start</code>) → join <code>c_merge</code>: <b>3 branches</b>" in html
    assert "branch 1 · c_ask_b" in html
    assert len(re.findall(r'<button type="button" class="lane-step" data-trace=', html)) == 5  # 2 own + 3 branches
    # the diagram: the three edges out of c_start are one fan-out, c_merge is a join of all
    graph = _json(html, "run-data")["graph"]
    assert graph["forks"] == [{"from": "c_start", "label": None, "to": ["c_ask_a", "c_ask_b", "c_ask_c"]}]
    assert graph["joins"]["c_merge"]["label"] == "join: all"
    lanes = _json(html, "lanes-data")
    assert lanes["fanouts"] == [
        {
            "step": 0,
            "node": "c_start",
            "join": "c_merge",
            "branches": 3,
            "limit": None,
            "dynamic": False,
            "starts": ["c_ask_a", "c_ask_b", "c_ask_c"],
            "badge": "\u00d73",
        }
    ]
    # the player's commit order: the fan-out step, each branch's step, then the join step
    order = [(o["trace_id"], o["index"]) for o in lanes["order"]]
    assert order[0] == (run.trace_id, 0) and order[-1] == (run.trace_id, 1)
    assert sorted(order[1:-1]) == sorted((b.trace_id, 0) for b in branches)
    assert [c["trace_id"] for c in lanes["choices"]] == [b.trace_id for b in branches]
    # lineage: the runs it started, with their status
    assert 'id="h-spawned"' in html and f'href="/runs/{branches[2].trace_id}/"' in html


def test_a_first_k_join_is_marked_with_its_k() -> None:
    from runs.models import Graph
    from runs.selectors import graph_diagram

    _run("c-static-first", {})
    assert graph_diagram(graph=Graph.objects.get(name="c-static-first"))["joins"]["c_merge"]["label"] == "join: first 2"


def test_a_branch_page_and_its_inspector_name_the_branch_and_the_join_step_what_it_joined(viewer: Client) -> None:
    run = _run("c-static", {})
    second = _branches(run)[1]
    page = _page(viewer, second)
    assert re.search(r'id="spawned-by">Branch 1 of <a class="mono" href="/runs/' + run.trace_id + r'/\?step=0">', page)
    assert "fan-out at step 0, node <code>c_ask_b</code>, 3 branches" in page
    fragment = viewer.get(f"/runs/{second.trace_id}/steps/0/inspector/").content.decode()
    assert 'id="step-branch"' in fragment
    named = r"branch 1 of the fan-out at step 0 of <a[^>]+>" + run.trace_id[:12] + r"</a>, node <code>c_ask_b</code>"
    assert re.search(named, fragment)
    assert 'id="step-branch"' in page  # the page's own inspector is the same fragment
    joined = viewer.get(f"/runs/{run.trace_id}/steps/1/inspector/").content.decode()
    assert 'id="step-joined"' in joined
    assert "3 branches of the fan-out at step 0 (join: all, errors: fail): 3 completed" in joined
    assert joined.count('<span class="status status-completed">COMPLETED</span>') == 3
    assert "<code>c_ask_c</code>" in joined
    # the run's own first step is no branch's and joined nothing
    first = viewer.get(f"/runs/{run.trace_id}/steps/0/inspector/").content.decode()
    assert 'id="step-branch"' not in first and 'id="step-joined"' not in first


def test_a_dynamic_fan_out_of_fifty_draws_twenty_lanes_counts_the_rest_and_badges_the_node(viewer: Client) -> None:
    run = _run("c-dynamic", {"docs": [f"d{i}" for i in range(50)], "limit": 10})
    assert run.status == "COMPLETED", run.error
    html = _page(viewer, run)
    branches = _branches(run)
    assert _lanes(html) == [b.trace_id for b in branches[:20]]
    assert f'<a href="/runs/?spawned_by={run.trace_id}&amp;kind=branch">+ 30 more branches</a>' in html
    assert "<b>50 branches</b>, at most 10 at once" in html and "50 completed" in html
    lanes = _json(html, "lanes-data")
    [fanout] = lanes["fanouts"]
    assert (fanout["badge"], fanout["dynamic"], fanout["starts"]) == ("\u00d750, ≤10 at once", True, ["c_summarize"])
    assert len(lanes["order"]) == 52 and not lanes["order_cut"]  # every step, the undrawn branches' too
    assert len(lanes["choices"]) == 20
    joined = viewer.get(f"/runs/{run.trace_id}/steps/1/inspector/").content.decode()
    assert "50 branches of the fan-out at step 0" in joined and "+ 30 more branches" in joined


def test_the_run_page_reads_the_same_whatever_the_number_of_branches(viewer: Client) -> None:
    counts = []
    for n in (25, 60):
        run = _run("c-dynamic", {"docs": [f"d{i}" for i in range(n)], "limit": 10})
        with CaptureQueriesContext(connection) as queries:
            _page(viewer, run)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_held_branches_are_shown_queued_until_a_slot_frees(viewer: Client) -> None:
    run = run_start(graph_name="c-dynamic", data={"docs": [f"d{i}" for i in range(15)], "limit": 10}, seed=7)
    assert execute(run) is Outcome.SUSPENDED
    html = _page(viewer, run)
    assert '<span class="status status-held">5 queued</span>' in html
    assert html.count('<span class="lane-queued open"') == 15  # none has started yet: all wait, 5 for a slot
    assert 'data-active="1"' in html  # the page refreshes its lanes while branches run
    fragment = viewer.get(f"/runs/{run.trace_id}/lanes/")
    assert fragment.status_code == 200 and "5 queued" in fragment.content.decode()
    assert "<html" not in fragment.content.decode()


def test_the_lanes_fragment_is_404_for_a_run_that_spawned_nothing(viewer: Client) -> None:
    run = _run("c-signal", {})
    assert viewer.get(f"/runs/{run.trace_id}/lanes/").status_code == 404
    assert 'class="lanes"' not in _page(viewer, run)


# -- children -----------------------------------------------------------------------------------------


def test_children_are_lanes_that_link_to_their_runs_and_their_pages_link_back(viewer: Client) -> None:
    run = _run("c-child", {"targets": [2, 3]})
    assert run.status == "COMPLETED", run.error
    kids = list(Run.objects.filter(spawned_by=run, kind=Run.KIND_CHILD).order_by("spawn_seq"))
    html = _page(viewer, run)
    assert "Child runs: <b>2</b>" in html
    for kid in kids:
        assert f'<a class="lane-child-bar status-completed" href="/runs/{kid.trace_id}/"' in html
    assert 'id="spawned-children"' in html and "t-count v1 · started at step 0" in html
    assert _json(html, "lanes-data")["order"] == []  # children are not steps of this run's lanes
    child_page = _page(viewer, kids[1])
    assert re.search(
        r'id="spawned-by">Child of <a class="mono" href="/runs/' + run.trace_id + r'/\?step=0">', child_page
    )
    assert ", step 0</dd>" in child_page
    assert 'id="export-spawned"' not in child_page  # a child that started nothing exports alone


def test_the_run_page_exports_a_run_with_its_children_in_one_bundle(viewer: Client) -> None:
    run = _run("c-child", {"targets": [2, 3]})
    html = _page(viewer, run)
    assert f'id="export-spawned" href="/runs/{run.trace_id}/export/?spawned=1"' in html
    bundle = viewer.get(f"/runs/{run.trace_id}/export/?spawned=1").json()
    kids = set(Run.objects.filter(spawned_by=run).values_list("trace_id", flat=True))
    assert {b["run"]["trace_id"] for b in bundle["spawned"]} == kids
    assert "spawned" not in viewer.get(f"/runs/{run.trace_id}/export/").json()


def test_the_runs_list_filters_by_parent_and_kind_and_names_the_parent(viewer: Client) -> None:
    static = _run("c-static", {})
    parent = _run("c-child", {"targets": [1]})
    everything = viewer.get("/runs/").content.decode()
    assert not any(b.trace_id[:12] in everything for b in _branches(static))  # branches listed under their run
    branches = viewer.get(f"/runs/?spawned_by={static.trace_id}").content.decode()
    for b in _branches(static):
        assert f'href="/runs/{b.trace_id}/"' in branches
    assert f'branch 2 of <a class="mono" href="/runs/{static.trace_id}/">{static.trace_id[:8]}</a>' in branches
    assert 'id="spawned-filter"' in branches
    assert 'value="' + static.trace_id + '"' in branches  # the filter field keeps it
    none = viewer.get(f"/runs/?spawned_by={static.trace_id}&kind=child").content.decode()
    assert "No runs match." in none
    kids = viewer.get(f"/runs/?spawned_by={parent.trace_id}&kind=child").content.decode()
    [kid] = Run.objects.filter(spawned_by=parent)
    assert f'href="/runs/{kid.trace_id}/"' in kids
    assert f'child of <a class="mono" href="/runs/{parent.trace_id}/">' in kids
    only = viewer.get("/runs/?kind=branch").content.decode()
    assert all(f'href="/runs/{b.trace_id}/"' in only for b in _branches(static))
    assert viewer.get("/runs/?kind=nonsense").status_code == 200


# -- waits --------------------------------------------------------------------------------------------


def test_a_timer_wait_says_until_when(viewer: Client) -> None:
    run = _run("c-timer", {"seconds": 3600})
    assert run.status == "WAITING"
    timer = Timer.objects.get(run=run)
    [wait] = _json(_page(viewer, run), "run-data")["waits"]
    assert wait["kind"] == "timer" and wait["ended"] is None
    since = dt.datetime.fromisoformat(wait["since"])
    day = "" if timer.due_at.date() == since.date() else f"{timer.due_at:%Y-%m-%d} "  # an hour later may be tomorrow
    assert wait["label"] == f"timer until {day}{timer.due_at:%H:%M:%S} UTC"
    assert wait["until"] == timer.due_at.isoformat()


def test_a_signal_wait_is_labelled_with_its_name(viewer: Client) -> None:
    run = _run("c-signal", {})
    [wait] = _json(_page(viewer, run), "run-data")["waits"]
    assert (wait["kind"], wait["label"], wait["ended"]) == ("signal", "signal 'proceed'", None)


# -- the signal form ----------------------------------------------------------------------------------


def _send(client: Client, run: Run, payload: str, name: str = "proceed") -> Any:
    return client.post(f"/runs/{run.trace_id}/signal/", {"name": name, "payload": payload})


def _refused(client: Client, run: Run, payload: str, name: str = "proceed") -> str:
    """A refused signal goes back to the run page (POST-redirect-GET): that page, which says why."""
    response = _send(client, run, payload, name)
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.trace_id}/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    return str(page.content.decode())


def test_an_operator_sees_the_signal_form_with_its_schema_and_a_viewer_sees_none(
    operator: Client, viewer: Client
) -> None:
    run = _run("c-signal", {})
    html = _page(operator, run)
    assert 'id="signal-form"' in html and f'action="/runs/{run.trace_id}/signal/"' in html
    assert '<input type="hidden" name="name" value="proceed">' in html
    assert "csrfmiddlewaretoken" in html
    schema = re.search(r'<pre class="mono json" id="signal-schema"[^>]*>(.*?)</pre>', html, re.S)
    assert schema is not None and "&quot;required&quot;: [\n    &quot;go&quot;" in schema[1]
    assert "&quot;go&quot;: false" in html  # the payload starts from the schema
    seen = _page(viewer, run)
    assert 'id="signal-form"' not in seen and 'id="signal-note"' in seen
    assert _send(viewer, run, '{"go": true}').status_code == 403
    assert not Signal.objects.exists()


def test_a_signal_sent_from_the_page_is_delivered_and_the_run_completes(operator: Client) -> None:
    run = _run("c-signal", {})
    response = _send(operator, run, '{"go": true}')
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.trace_id}/"
    signal = Signal.objects.get(run=run)
    assert (signal.sent_by, signal.payload, signal.delivered_at is not None) == ("operator", {"go": True}, True)
    page = operator.get(response["Location"]).content.decode()
    assert "Signal &#x27;proceed&#x27; sent to run " + run.trace_id + ": delivered." in page
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED" and run.state["heard"] == {"go": True}
    assert 'id="signal-form"' not in operator.get(f"/runs/{run.trace_id}/").content.decode()


def test_a_payload_that_is_not_json_is_refused_with_the_reason_and_nothing_is_kept(operator: Client) -> None:
    run = _run("c-signal", {})
    html = _refused(operator, run, "{go: true")
    assert 'id="signal-error"' in html and "the signal&#x27;s payload is not valid JSON" in html
    assert "{go: true</textarea>" in html  # kept as typed, to be corrected
    assert 'id="signal-error"' not in _page(operator, run)  # said once
    assert not Signal.objects.exists()
    run.refresh_from_db()
    assert run.status == "WAITING"


def test_a_payload_the_schema_refuses_is_refused_naming_the_problem(operator: Client) -> None:
    run = _run("c-signal", {})
    html = _refused(operator, run, '{"go": "yes"}')
    assert "does not match the schema its node declared: $.go: &#x27;yes&#x27; is not of type &#x27;boolean&#x27;" in (
        html
    )
    assert "&#x27;go&#x27; is a required property" in _refused(operator, run, "{}")
    assert not Signal.objects.exists()


def test_a_signal_to_an_ended_run_is_refused_saying_it_ended(operator: Client) -> None:
    run = _run("c-static", {})
    html = _refused(operator, run, '{"go": true}')
    assert f"The signal was not sent: run {run.trace_id} has ended (COMPLETED)" in html
    assert not Signal.objects.exists()
    assert "a signal&#x27;s name has 1 to 100 characters" in _refused(operator, run, '{"go": true}', name="")
    assert "a signal&#x27;s name has 1 to 100 characters" in _refused(operator, run, "true", name="x" * 101)


def test_the_signal_form_needs_csrf(operator: Client) -> None:
    run = _run("c-signal", {})
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="operator", password=PASSWORD)
    response = client.post(f"/runs/{run.trace_id}/signal/", {"name": "proceed", "payload": '{"go": true}'})
    assert response.status_code == 403
    assert not Signal.objects.exists()


# -- escaping -----------------------------------------------------------------------------------------


@pytest.fixture
def hostile_graphs(fresh_registry: None) -> None:
    from runs.engine import END, graph, node
    from runs.engine.composition import Send

    @node("h_split")
    def h_split(state: Any, ctx: Any) -> Any:
        return ctx.result({**state, "notes": []}, send=[Send("h_fail", {"note": state["note"], "notes": []})])

    @node("h_fail")
    def h_fail(state: Any, ctx: Any) -> Any:
        raise RuntimeError(state["note"])

    @node("h_join")
    def h_join(state: Any, ctx: Any) -> Any:
        return ctx.result(state)

    @node("h_listen")
    def h_listen(state: Any, ctx: Any) -> Any:
        schema = {"type": "object", "description": state["note"]}
        return ctx.result({**state, "heard": ctx.activities.wait_for_signal(state["note"], schema=schema)})

    graph(
        "h-hostile-fanout",
        entry="h_split",
        edges=[("h_split", "h_fail"), ("h_fail", "h_join"), ("h_join", END)],
        joins={"h_join": {"reducers": {"notes": "append"}, "errors": "collect"}},
    )
    graph("h-hostile-signal", entry="h_listen", edges=[("h_listen", END)])


def test_hostile_text_in_branches_signals_and_filters_is_escaped(
    hostile_graphs: None, operator: Client, viewer: Client
) -> None:
    fan = _run("h-hostile-fanout", {"note": HOSTILE})
    assert fan.status == "COMPLETED", fan.error
    [branch] = _branches(fan)
    pages = [
        _page(viewer, fan),
        viewer.get(f"/runs/{fan.trace_id}/steps/1/inspector/").content.decode(),  # the join step: the branch's error
        viewer.get(f"/runs/{fan.trace_id}/lanes/").content.decode(),
        _page(viewer, branch),
        viewer.get(f"/runs/?spawned_by={HOSTILE}").content.decode(),
    ]
    listen = _run("h-hostile-signal", {"note": HOSTILE})
    pages.append(_page(operator, listen))  # the signal's name and schema
    pages.append(_refused(operator, listen, '"</textarea><script>alert(1)</script>', name=HOSTILE))
    for html in pages:
        assert "<script>alert" not in html, html[:200]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[1]  # the branch's error, escaped
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in pages[-1]
    assert 'value="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"' in pages[-2]  # the hidden signal name
