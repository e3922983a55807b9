"""Max steps, aborts, run timeouts, step budgets and lost leases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

import tests.graphs_engine as ge
from runs.engine import END, graph, node
from runs.engine.errors import InvalidTransition
from runs.engine.executor import Executor, Outcome
from runs.engine.plugins import NO_POLICY
from runs.models import Activity, Run, RunEvent
from runs.services.leases import run_claim
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_abort, run_start
from tests.helpers import OWNER, execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


def resume(run: Run, *, owner: str = OWNER, **kwargs: Any) -> Outcome:
    """Continue a run this owner still holds (no new claim)."""
    executor = Executor(DjangoCheckpointer(owner=owner), policy=NO_POLICY, sleep=lambda s: None, **kwargs)
    try:
        return executor.run(run.pk)
    finally:
        executor.close()


# -- max steps ------------------------------------------------------------------------------


def test_a_cycle_that_does_not_end_fails_at_max_steps() -> None:
    run = start_and_execute("t-cycle", {"target": 100})
    assert run.status == "FAILED"
    assert run.error.startswith("max steps exceeded: the run reached 5 steps (last node 't_count')")
    assert run.steps.count() == 5
    assert run.step_index == 5
    event = RunEvent.objects.get(run=run, to_status="FAILED")
    assert "max steps exceeded" in event.message


def test_a_run_may_use_exactly_max_steps() -> None:
    run = start_and_execute("t-cycle", {"target": 5})
    assert run.status == "COMPLETED", run.error
    assert run.state == {"target": 5, "n": 5}
    assert run.steps.count() == 5


# -- abort ----------------------------------------------------------------------------------


def test_an_abort_requested_before_execution_stops_the_run_before_any_step() -> None:
    run = run_start(graph_name="t-count", data={"target": 3})
    Run.objects.filter(pk=run.pk).update(abort_requested=True)
    assert execute(run) == Outcome.ABORTED
    run.refresh_from_db()
    assert run.status == "ABORTED"
    assert run.error == "aborted on request"
    assert run.steps.count() == 0
    assert run.finished_at is not None
    assert run.lease_owner == ""


def test_aborting_a_pending_run_aborts_it_at_once() -> None:
    run = run_start(graph_name="t-count", data={"target": 3})
    aborted = run_abort(run=run, actor="alice")
    assert aborted.status == "ABORTED"
    run.refresh_from_db()
    assert run.status == "ABORTED"
    assert run.finished_at is not None
    assert not run.abort_requested
    event = RunEvent.objects.get(run=run, to_status="ABORTED")
    assert (event.from_status, event.actor) == ("PENDING", "alice")
    assert not run_claim(run_id=run.pk, owner=OWNER), "an aborted run must not be claimable"
    executor = Executor(DjangoCheckpointer(owner=OWNER), policy=NO_POLICY)
    try:
        assert executor.run(run.pk) == Outcome.NOT_RUNNABLE
    finally:
        executor.close()
    assert run.steps.count() == 0


def test_a_finished_run_cannot_be_aborted() -> None:
    run = start_and_execute("t-count", {"target": 1})
    assert run.status == "COMPLETED"
    with pytest.raises(InvalidTransition) as info:
        run_abort(run=run)
    assert str(info.value) == "invalid run transition COMPLETED -> ABORTED"
    run.refresh_from_db()
    assert run.status == "COMPLETED"


def test_aborting_a_held_run_stops_it_between_steps() -> None:
    run = start_and_execute("t-count", {"target": 5}, max_steps=1)
    assert (run.status, run.step_index, run.lease_owner) == ("RUNNING", 1, OWNER)
    requested = run_abort(run=run, actor="alice")
    assert requested.status == "RUNNING"
    assert requested.abort_requested
    assert RunEvent.objects.get(run=run, kind="abort_requested").actor == "alice"

    assert resume(run) == Outcome.ABORTED
    run.refresh_from_db()
    assert run.status == "ABORTED"
    assert run.steps.count() == 1, "no step may run after the abort was requested"


def test_aborting_a_released_running_run_aborts_it_at_once() -> None:
    run = start_and_execute("t-count", {"target": 5}, max_steps=1)
    Run.objects.filter(pk=run.pk).update(lease_owner="", lease_expires_at=None)
    assert run_abort(run=run).status == "ABORTED"
    run.refresh_from_db()
    assert run.status == "ABORTED"


def test_an_abort_during_a_step_stops_it_at_its_next_activity() -> None:
    run = run_start(graph_name="e-abort-self", data={})
    assert run_claim(run_id=run.pk, owner=OWNER)
    checkpointer = DjangoCheckpointer(owner=OWNER, abort_flag=lambda run_id: ge.ABORT_SIGNAL.is_set())
    executor = Executor(checkpointer, policy=NO_POLICY, sleep=lambda s: None)
    try:
        assert executor.run(run.pk) == Outcome.ABORTED
    finally:
        executor.close()
    run.refresh_from_db()
    assert run.status == "ABORTED"
    assert ge.ABORT_SIGNAL.is_set()
    assert ge.EFFECTS["after_abort"] == 0
    assert not Activity.objects.filter(run=run).exists()
    assert run.steps.count() == 0


# -- run timeout ----------------------------------------------------------------------------


def test_a_run_past_its_deadline_times_out_before_its_next_step() -> None:
    run = run_start(graph_name="t-count", data={"target": 3})
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    assert execute(run) == Outcome.TIMED_OUT
    run.refresh_from_db()
    assert run.status == "TIMED_OUT"
    assert run.error == "run timed out at step 0"
    assert run.steps.count() == 0


def test_a_run_times_out_part_way_through() -> None:
    run = run_start(graph_name="e-run-timeout", data={})
    assert run.deadline_at is not None
    assert 0.3 < (run.deadline_at - run.created_at).total_seconds() <= 0.45
    assert execute(run) == Outcome.TIMED_OUT
    run.refresh_from_db()
    assert run.status == "TIMED_OUT"
    steps = run.steps.count()
    assert 1 <= steps < 20
    assert run.error == f"run timed out at step {steps}"


def test_the_run_timeout_comes_from_the_graph_unless_given() -> None:
    assert run_start(graph_name="e-two-step", data={}).deadline_at is None
    given = run_start(graph_name="e-two-step", data={}, run_timeout=60)
    assert given.deadline_at is not None
    assert 59 < (given.deadline_at - timezone.now()).total_seconds() <= 60


# -- budgets, leases, registry ---------------------------------------------------------------


def test_a_step_budget_yields_the_run_and_a_later_call_finishes_it() -> None:
    run = run_start(graph_name="t-count", data={"target": 5})
    assert execute(run, max_steps=2) == Outcome.YIELDED
    run.refresh_from_db()
    assert (run.status, run.step_index, run.node) == ("RUNNING", 2, "t_count")
    assert resume(run) == Outcome.COMPLETED
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.state == {"target": 5, "n": 5}
    assert list(run.steps.values_list("index", flat=True)) == [0, 1, 2, 3, 4]


def test_should_stop_yields_before_the_next_step() -> None:
    run = run_start(graph_name="t-count", data={"target": 3})
    assert execute(run, should_stop=lambda: True) == Outcome.YIELDED
    run.refresh_from_db()
    assert (run.status, run.step_index) == ("RUNNING", 0)


def test_a_worker_that_lost_its_lease_commits_nothing_more() -> None:
    def steal(run_id: int, record: Any) -> None:
        Run.objects.filter(pk=run_id).update(lease_owner="thief")

    run = run_start(graph_name="t-count", data={"target": 5})
    assert execute(run, on_step=steal) == Outcome.LEASE_LOST
    run.refresh_from_db()
    assert run.lease_owner == "thief"
    assert run.status == "RUNNING"
    assert run.step_index == 1
    assert list(run.steps.values_list("index", flat=True)) == [0]


def test_a_terminal_run_is_not_runnable() -> None:
    run = start_and_execute("t-count", {"target": 1})
    assert resume(run) == Outcome.NOT_RUNNABLE
    run.refresh_from_db()
    assert run.status == "COMPLETED"


def test_a_run_whose_node_is_missing_from_the_worker_waits_for_a_worker_that_has_it(fresh_registry: None) -> None:
    from runs.engine.graph import NODES
    from runs.services import leases

    @node("e_tmp_gone")
    def e_tmp_gone(state: dict[str, Any], ctx: Any) -> Any:
        return ctx.result(state)

    graph("e-tmp-gone", entry="e_tmp_gone", edges=[("e_tmp_gone", END)])
    run = run_start(graph_name="e-tmp-gone", data={})
    NODES.unregister("e_tmp_gone")
    try:
        assert execute(run) == Outcome.NOT_SERVED  # a rolling deploy's new worker may lack a removed node
    finally:
        leases._unserved.discard(run.graph_id)
    run.refresh_from_db()
    assert run.status == "PENDING" and "waiting for a worker with e-tmp-gone v1" in run.wait_reason


def test_a_node_missing_from_a_graph_without_its_hash_fails_the_run(fresh_registry: None) -> None:
    from runs.engine.graph import NODES

    @node("e_tmp_gone")
    def e_tmp_gone(state: dict[str, Any], ctx: Any) -> Any:
        return ctx.result(state)

    graph("e-tmp-gone", entry="e_tmp_gone", edges=[("e_tmp_gone", END)])
    run = run_start(graph_name="e-tmp-gone", data={})
    NODES.unregister("e_tmp_gone")
    run.graph.node_hashes = {}  # a JSON graph stored before the node was registered anywhere
    run.graph.save(update_fields=["node_hashes"])
    assert execute(run) == Outcome.FAILED
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert run.error == "node 'e_tmp_gone' is not registered in this worker"
