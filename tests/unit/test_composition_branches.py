"""Parallel branches: static and dynamic fan-out, joins and their reducers, limits, failures, aborts.

Branches run in this process (tests.helpers.drain) with the real ORM checkpointer; the PostgreSQL tests
with worker processes are in tests/integration/test_composition_workers.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from runs.engine import composition
from runs.engine.composition import CompositionError, Join, branch_update, merge
from runs.engine.executor import Outcome
from runs.models import Activity, Run
from runs.services.runs import run_abort, run_start
from tests.helpers import drain, execute

pytestmark = pytest.mark.django_db(transaction=True)


def _run(graph: str, data: dict[str, Any]) -> Run:
    run = run_start(graph_name=graph, data=data, seed=7)
    drain()
    run.refresh_from_db()
    return run


def _branches(run: Run) -> list[Run]:
    return list(Run.objects.filter(spawned_by=run, kind=Run.KIND_BRANCH).order_by("spawn_seq"))


def test_a_static_fan_out_of_three_runs_three_branches_and_joins_their_answers_in_branch_order() -> None:
    run = _run("c-static", {})
    assert run.status == "COMPLETED", run.error
    assert run.state["answers"] == ["a says yes", "b says yes", "c says yes"]
    assert run.state["merged"] == 3
    assert run.state["by_a"] and run.state["by_b"] and run.state["by_c"]
    branches = _branches(run)
    assert [b.status for b in branches] == ["COMPLETED"] * 3
    assert [b.steps.get().node for b in branches] == ["c_ask_a", "c_ask_b", "c_ask_c"]
    assert [s.node for s in run.steps.order_by("index")] == ["c_start", "c_merge"]
    join = Activity.objects.get(run=run, type="join")
    assert join.status == "completed" and [r["branch"] for r in join.response] == [0, 1, 2]
    # Each branch runs as whoever started the run it belongs to, and names it.
    assert all(b.context["branch_of"] == run.trace_id for b in branches)


def test_the_run_waits_at_its_join_without_holding_a_worker() -> None:
    run = run_start(graph_name="c-static", data={}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert (run.status, run.node, run.lease_owner) == ("WAITING", "c_merge", "")
    assert Run.objects.filter(spawned_by=run, status="PENDING").count() == 3


def test_a_failed_branch_fails_the_join_naming_it() -> None:
    run = _run("c-static", {"fail": "b"})
    assert run.status == "FAILED"
    assert "branch 1 ended FAILED" in run.error and "b is down" in run.error


def test_a_join_that_collects_errors_goes_on_with_them() -> None:
    run = _run("c-static-collect", {"fail": "b"})
    assert run.status == "COMPLETED", run.error
    assert run.state["answers"] == ["a says yes", "c says yes"]
    [error] = run.state["branch_errors"]
    assert (error["branch"], error["status"]) == (1, "FAILED") and "b is down" in error["error"]


def test_a_first_k_join_runs_once_k_branches_completed_and_cancels_the_rest() -> None:
    run = _run("c-static-first", {})
    assert run.status == "COMPLETED", run.error
    assert run.state["answers"] == ["a says yes", "b says yes"]
    assert [b.status for b in _branches(run)] == ["COMPLETED", "COMPLETED", "ABORTED"]
    assert Activity.objects.filter(run=run, type="join").count() == 1


def test_a_dynamic_fan_out_of_fifty_with_a_limit_of_ten_never_runs_more_than_ten_and_merges_in_order() -> None:
    docs = [f"doc-{i:02d}" + "x" * i for i in range(50)]
    run = run_start(graph_name="c-dynamic", data={"docs": docs, "limit": 10}, seed=3)
    seen: list[int] = []

    def count_running(run_id: int) -> None:
        active = Run.objects.filter(spawned_by=run, held=False, status__in=["PENDING", "RUNNING", "WAITING"])
        seen.append(active.count())

    drain(before=count_running)
    most = max(seen)
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    assert most == 10
    assert run.state["count"] == 50
    assert run.state["summaries"] == [f"summary of {d}" for d in docs]
    assert run.state["total"] == sum(len(d) for d in docs)
    assert Run.objects.filter(spawned_by=run, kind="branch", status="COMPLETED").count() == 50


def test_a_fan_out_of_none_goes_straight_to_the_join() -> None:
    run = _run("c-dynamic", {"docs": []})
    assert run.status == "COMPLETED", run.error
    assert run.state["count"] == 0 and run.state["summaries"] == []


def test_a_send_to_an_unknown_node_fails_the_step_and_starts_nothing(fresh_registry: None) -> None:
    from runs.engine import END, graph, node
    from runs.engine.composition import Send

    @node("bad_send")
    def bad_send(state: Any, ctx: Any) -> Any:
        return ctx.result(state, send=[Send("c_summarize", {}), Send("nowhere", {})])

    graph("c-bad-send", entry="bad_send", nodes=["bad_send", "c_summarize", "c_gather"],
          edges=[("bad_send", "c_summarize"), ("c_summarize", "c_gather"), ("c_gather", END)],
          joins={"c_gather": {"reducers": {"summaries": "append"}}})
    run = _run("c-bad-send", {})
    assert run.status == "FAILED"
    assert "branch 1 to 'nowhere', which is not a node of the graph" in run.error
    assert not Run.objects.filter(spawned_by=run).exists()
    assert [bool(s.error) for s in run.steps.all()] == [True], "only the failed step's record"


def test_a_fan_out_over_the_maximum_fails_the_step_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from runs.engine import executor

    monkeypatch.setattr(executor, "MAX_FANOUT", 5)
    run = _run("c-dynamic", {"docs": [str(i) for i in range(6)]})
    assert run.status == "FAILED"
    assert "sends 6 branches; at most 5" in run.error
    assert not Run.objects.filter(spawned_by=run).exists()


def test_a_reducer_for_a_key_nobody_has_fails_the_join_naming_it(fresh_registry: None) -> None:
    from runs.engine import END, graph

    graph("c-bad-reducer", entry="c_start", nodes=["c_start", "c_ask_a", "c_ask_b", "c_merge"],
          edges=[("c_start", "c_ask_a"), ("c_start", "c_ask_b"), ("c_ask_a", "c_merge"), ("c_ask_b", "c_merge"),
                 ("c_merge", END)],
          joins={"c_merge": {"reducers": {"answers": "append", "scores": "sum"}}})
    run = _run("c-bad-reducer", {})
    assert run.status == "FAILED"
    assert "reducer for key 'scores', which neither the state nor a branch has" in run.error


def test_a_join_reached_without_a_fan_out_fails_naming_it(fresh_registry: None) -> None:
    from runs.engine import END, graph

    graph("c-lonely-join", entry="c_start", nodes=["c_start", "c_merge"],
          edges=[("c_start", "c_merge"), ("c_merge", END)], joins={"c_merge": {"reducers": {"answers": "append"}}})
    run = _run("c-lonely-join", {})
    assert run.status == "FAILED"
    assert "join node 'c_merge' has no branches to join: step 0 did not fan out" in run.error


def test_branches_that_set_a_key_to_different_values_without_a_reducer_fail_the_join(fresh_registry: None) -> None:
    from runs.engine import END, graph

    graph("c-conflict", entry="c_start", nodes=["c_start", "c_ask_a", "c_ask_b", "c_merge"],
          edges=[("c_start", "c_ask_a"), ("c_start", "c_ask_b"), ("c_ask_a", "c_merge"), ("c_ask_b", "c_merge"),
                 ("c_merge", END)],
          joins={"c_merge": {}})
    run = _run("c-conflict", {})
    assert run.status == "FAILED"
    assert "set key 'answers' to different values and the join has no reducer for it" in run.error


def test_aborting_the_run_aborts_its_branches() -> None:
    run = run_start(graph_name="c-static", data={}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run_abort(run=run, actor="tester")
    assert {b.status for b in _branches(run)} == {"ABORTED"}
    assert drain() == 0, "nothing left to run"


def test_a_branch_is_its_own_run_with_its_own_records() -> None:
    run = _run("c-static", {})
    for b in _branches(run):
        [step] = b.steps.all()
        assert step.state_hash and step.input_hash
        assert b.seed != run.seed and b.until_node == "c_merge"


# -- the reducers, pure ------------------------------------------------------------------------------


def _done(branch: int, start: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    update, before = branch_update(start, final)
    return {"branch": branch, "status": "COMPLETED", "update": update, "before": before}


def test_reducers_combine_what_each_branch_wrote() -> None:
    base = {"items": [1], "seen": {"x": 1}, "n": 10, "who": "nobody", "same": 1}
    results = [
        _done(0, base, {**base, "items": [1, 2], "seen": {"x": 1, "a": 1}, "n": 12, "who": "a"}),
        _done(1, base, {**base, "items": [1, 3, 4], "seen": {"b": 2}, "n": 15, "who": "b"}),
        {"branch": 2, "status": "FAILED", "update": {}, "before": {}, "error": "down"},
    ]
    join = Join(reducers={"items": "append", "seen": "merge", "n": "sum", "who": "last"}, errors="collect")
    merged = merge(base, results, join)
    assert merged["items"] == [1, 2, 3, 4]
    assert merged["seen"] == {"x": 1, "a": 1, "b": 2}
    assert merged["n"] == 17  # 10 + 2 + 5
    assert merged["who"] == "b" and merged["same"] == 1
    assert merged["branch_errors"][0]["branch"] == 2


def test_a_registered_reducer_and_collect_see_the_values_in_branch_order() -> None:
    @composition.reducer("t_longest")
    def longest(base: Any, values: list[Any]) -> Any:
        return max(values, key=len)

    base = {"text": ""}
    results = [_done(0, base, {"text": "ab"}), _done(1, base, {"text": "abcd"}), _done(2, base, {"text": "a"})]
    assert merge(base, results, Join(reducers={"text": "t_longest"}))["text"] == "abcd"
    assert merge(base, results, Join(reducers={"text": "collect"}))["text"] == ["ab", "abcd", "a"]


def test_a_reducer_given_the_wrong_kind_of_value_names_the_key() -> None:
    base = {"n": 1}
    with pytest.raises(CompositionError, match="reducer sum for key 'n' needs numbers"):
        merge(base, [_done(0, base, {"n": "many"})], Join(reducers={"n": "sum"}))
