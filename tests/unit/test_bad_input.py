"""Bad values from nodes and bad input from operators, each named precisely."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import tests.graphs_engine as ge
from runs.engine.graph import GRAPHS
from runs.engine.hashing import json_hash
from runs.models import Run, RunEvent
from runs.services.graphs import graph_sync
from runs.services.runs import InvalidInput, run_start
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


# -- what nodes return --------------------------------------------------------------------------


def test_a_node_returning_a_datetime_in_its_state_fails_naming_the_path_and_type() -> None:
    run = start_and_execute("t-not-json", {"keep": 1})
    assert run.status == "FAILED"
    assert "node 't_not_json' returned a state that is not JSON" in run.error
    assert "$.when is a datetime" in run.error
    step = run.steps.get()
    assert "$.when" in step.error and "datetime" in step.error
    assert step.state_hash == step.input_hash == json_hash({"keep": 1})
    assert not RunEvent.objects.filter(run=run, kind="retry").exists()


def test_a_node_returning_nan_fails_naming_the_path() -> None:
    run = start_and_execute("e-nan")
    assert run.status == "FAILED"
    assert "$.v is nan, which JSON cannot hold" in run.error


def test_a_node_returning_a_non_json_output_fails_naming_the_path() -> None:
    run = start_and_execute("e-bad-output")
    assert run.status == "FAILED"
    assert "node 'e_bad_output' returned an output that is not JSON: $.tags is a set" in run.error


def test_a_node_returning_a_circular_state_fails_the_run() -> None:
    run = start_and_execute("e-circular")
    assert run.status == "FAILED"
    assert "node 'e_circular' returned a state that is not JSON" in run.error


def test_a_node_returning_an_edge_it_does_not_have_fails_naming_its_edges() -> None:
    run = start_and_execute("e-bad-edge", {"edge": "nowhere"})
    assert run.status == "FAILED"
    assert run.error == "node 'e_bad_edge' returned edge 'nowhere' but its edges are labelled ['done', 'more']"


def test_a_node_follows_the_edge_it_names() -> None:
    run = start_and_execute("e-bad-edge", {"edge": "more"})
    assert run.status == "COMPLETED", run.error
    assert list(run.steps.values_list("node", "edge")) == [("e_bad_edge", "more"), ("e_b", None)]
    routed = start_and_execute("e-route", {"edge": "unknown-label"})
    assert routed.state["visited"] == ["e_a", "e_c"], "an unmatched label falls back to the unlabelled edge"


def test_a_node_that_raises_fails_naming_the_exception_and_where_without_server_paths() -> None:
    run = start_and_execute("e-raise")
    assert run.status == "FAILED"
    assert run.error.startswith("node 'e_raise' raised KeyError: 'missing' (in tests.graphs_engine.e_raise, line ")
    assert "/" not in run.error and ".py" not in run.error


def test_a_node_mutating_its_input_does_not_change_the_checkpoint() -> None:
    run = start_and_execute("e-mutate", {"items": ["a"]})
    assert run.status == "COMPLETED", run.error
    assert run.input == {"items": ["a"]}
    assert run.state == {"items": ["a", "added by the node"], "mutated": True}
    step = run.steps.get()
    assert step.input_hash == json_hash({"items": ["a"]})


# -- what operators submit (no executor: the cheaper rollback database is enough) -----------------

submit_db = pytest.mark.django_db


@submit_db
def test_run_start_refuses_input_that_is_not_json() -> None:
    before = Run.objects.count()
    with pytest.raises(InvalidInput) as info:
        run_start(graph_name="t-count", data={"at": dt.date(2026, 1, 1)})
    assert info.value.errors[0]["path"] == "$"
    assert "the run input is not JSON: $.at is a date" in info.value.errors[0]["message"]
    assert Run.objects.count() == before


@submit_db
def test_run_start_refuses_input_against_the_schema_naming_every_path() -> None:
    with pytest.raises(InvalidInput) as info:
        run_start(graph_name="t-count", data={"target": "three"})
    assert info.value.errors == [{"path": "$.target", "message": "'three' is not of type 'integer'"}]
    assert str(info.value) == "$.target: 'three' is not of type 'integer'"
    assert Run.objects.count() == 0


@submit_db
def test_start_run_prints_the_trace_id_of_a_new_pending_run() -> None:
    out = StringIO()
    call_command("start_run", "t-count", "--input", '{"target": 2}', stdout=out)
    run = Run.objects.get()
    assert out.getvalue().strip() == run.trace_id
    assert (run.status, run.input, run.graph.name) == ("PENDING", {"target": 2}, "t-count")


@submit_db
def test_start_run_with_an_unknown_graph_names_the_known_graphs() -> None:
    with pytest.raises(CommandError) as info:
        call_command("start_run", "e-no-such-graph", stdout=StringIO())
    message = str(info.value)
    assert message.startswith("unknown graph 'e-no-such-graph'; known graphs: ")
    known = message.split("known graphs: ")[1].split(", ")
    assert "t-count" in known and "e-two-step" in known
    assert known == sorted(known)
    assert Run.objects.count() == 0


@submit_db
def test_start_run_with_an_unknown_version_names_the_versions() -> None:
    spec = GRAPHS.get("t-count")
    assert spec is not None
    graph_sync(spec=spec)
    with pytest.raises(CommandError) as info:
        call_command("start_run", "t-count", "--version", "9", stdout=StringIO())
    assert str(info.value) == "graph 't-count' has no version 9; versions: [1]"


@submit_db
@pytest.mark.parametrize("bad", ["{not json", "", "{'single': 'quotes'}", '{"a": 1,}'])
def test_start_run_with_input_that_is_not_json(bad: str) -> None:
    with pytest.raises(CommandError) as info:
        call_command("start_run", "t-count", "--input", bad, stdout=StringIO())
    assert str(info.value).startswith("--input is not valid JSON: ")
    assert Run.objects.count() == 0


@submit_db
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"target": 0}', "$.target: 0 is less than the minimum of 1"),
        ('{"target": "x"}', "$.target: 'x' is not of type 'integer'"),
        ("[1, 2]", "$: [1, 2] is not of type 'object'"),
        ('"text"', "$: 'text' is not of type 'object'"),
    ],
)
def test_start_run_with_input_against_the_schema_names_the_path(data: str, expected: str) -> None:
    with pytest.raises(CommandError) as info:
        call_command("start_run", "t-count", "--input", data, stdout=StringIO())
    assert str(info.value) == f"invalid input for graph 't-count': {expected}"
    assert Run.objects.count() == 0
