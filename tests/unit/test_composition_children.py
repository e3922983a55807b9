"""Child runs, durable timers and signals: waits that hold no worker and resume when their answer comes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from runs.engine.executor import Outcome
from runs.models import Activity, Run, Signal, Timer
from runs.scheduler import sweep, timers_fire
from runs.services.runs import run_abort, run_start
from runs.services.signals import RunEnded, SignalRefused, signal_send
from tests.helpers import drain, execute

pytestmark = pytest.mark.django_db(transaction=True)


def _children(run: Run) -> list[Run]:
    return list(Run.objects.filter(spawned_by=run, kind=Run.KIND_CHILD).order_by("spawn_step", "spawn_seq"))


def test_a_parent_starts_children_waits_for_all_and_gets_their_final_states() -> None:
    user = get_user_model().objects.create_user("ada", password="x")
    run = run_start(graph_name="c-child", data={"targets": [2, 3]}, seed=5, user=user, role="operator")
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("WAITING", "")
    children = _children(run)
    assert [c.input for c in children] == [{"target": 2}, {"target": 3}]
    assert all(c.created_by == user and c.context["role"] == "operator" for c in children)
    assert all(c.context["child_of"] == run.trace_id for c in children)
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    assert [r["status"] for r in run.state["results"]] == ["COMPLETED", "COMPLETED"]
    assert [r["state"]["n"] for r in run.state["results"]] == [2, 3]
    # The start was recorded once per child: the parent's re-execution found the same children.
    assert Activity.objects.filter(run=run, type="start_run").count() == 2
    assert len(_children(run)) == 2


def test_wait_any_returns_when_the_first_child_ends() -> None:
    run = run_start(graph_name="c-child", data={"targets": [1, 1], "mode": "any"}, seed=5)
    assert execute(run) is Outcome.SUSPENDED
    first = _children(run)[0]
    execute(first)
    run.refresh_from_db()
    assert run.status == "RUNNING", "one ended child is enough for mode any"
    execute(run)
    run.refresh_from_db()
    assert [r["status"] for r in run.state["results"]] == ["COMPLETED", "PENDING"]


def test_a_child_of_a_child_works() -> None:
    run = run_start(graph_name="c-child", data={"graph": "c-child", "targets": [4]}, seed=5)
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    [child] = _children(run)
    [grandchild] = _children(child)
    assert grandchild.graph.name == "t-count" and grandchild.status == "COMPLETED"
    assert run.state["results"][0]["state"]["results"][0]["status"] == "COMPLETED"


def test_a_child_of_an_unknown_graph_fails_the_parent_step_naming_it_and_starts_nothing() -> None:
    run = run_start(graph_name="c-child", data={"graph": "no-such-graph"}, seed=5)
    drain()
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "cannot start a child run of 'no-such-graph'" in run.error
    assert not Run.objects.filter(spawned_by=run).exists()


def test_aborting_a_parent_aborts_its_children_but_not_detached_ones() -> None:
    run = run_start(graph_name="c-child", data={"targets": [2]}, seed=5)
    execute(run)
    detached = run_start(graph_name="c-child", data={"targets": [2], "detach": True}, seed=6)
    execute(detached)
    run_abort(run=run, actor="tester")
    run_abort(run=detached, actor="tester")
    assert [c.status for c in _children(run)] == ["ABORTED"]
    assert [c.status for c in _children(detached)] == ["PENDING"]
    assert run.events.filter(kind="status", to_status="ABORTED").exists()


def test_a_parent_that_times_out_times_its_children_out_with_it() -> None:
    run = run_start(graph_name="c-child", data={"targets": [2, 3]}, seed=5)
    execute(run)
    run.refresh_from_db()
    assert run.status == "WAITING" and len(_children(run)) == 2
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    assert sweep()["timed_out"] == 1
    run.refresh_from_db()
    assert run.status == "TIMED_OUT"
    assert {c.status for c in _children(run)} == {"ABORTED"}


def test_a_child_that_fails_is_reported_to_its_parent() -> None:
    run = run_start(graph_name="c-child", data={"graph": "c-static", "targets": [0]}, seed=5)
    execute(run)
    [child] = _children(run)
    run_abort(run=child, actor="tester")
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.state["results"] == [{"status": "ABORTED", "state": {"target": 0}}], "its last state"


# -- timers --------------------------------------------------------------------------------------------


def test_a_timer_waits_holding_no_worker_and_fires_when_due() -> None:
    run = run_start(graph_name="c-timer", data={"seconds": 30}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("WAITING", "")
    timer = Timer.objects.get(run=run)
    assert timer.due_at > timezone.now() + dt.timedelta(seconds=25)
    assert timers_fire() == 0, "not due yet"
    assert timers_fire(now=timer.due_at + dt.timedelta(milliseconds=10)) == 1
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["woke"]["due_at"] == timer.due_at.isoformat()
    assert timers_fire(now=timer.due_at + dt.timedelta(seconds=1)) == 0, "fired once"


def test_a_timer_already_due_goes_on_at_once() -> None:
    run = run_start(graph_name="c-timer", data={"seconds": 0}, seed=1)
    assert execute(run) is Outcome.COMPLETED


def test_a_timer_armed_but_not_yet_recorded_is_not_lost() -> None:
    """The timer loop must not mark fired a timer whose wait the worker is still about to record."""
    run = run_start(graph_name="c-timer", data={"seconds": 30}, seed=1)
    due = timezone.now() - dt.timedelta(seconds=1)
    Timer.objects.create(run=run, step=0, seq=0, due_at=due)
    assert timers_fire() == 0
    assert Timer.objects.get(run=run).fired_at is None
    assert execute(run) is Outcome.COMPLETED, "the step finds its timer due and goes on"


def test_aborting_a_sleeping_run_leaves_its_timer_nothing_to_wake() -> None:
    run = run_start(graph_name="c-timer", data={"seconds": 30}, seed=1)
    execute(run)
    run_abort(run=run, actor="tester")
    assert timers_fire(now=timezone.now() + dt.timedelta(minutes=1)) == 0
    run.refresh_from_db()
    assert run.status == "ABORTED"


def test_sleep_refuses_a_negative_duration() -> None:
    run = run_start(graph_name="c-timer", data={"seconds": -1}, seed=1)
    execute(run)
    run.refresh_from_db()
    assert run.status == "FAILED" and "sleep takes a number of seconds >= 0" in run.error


# -- signals -------------------------------------------------------------------------------------------


def test_a_signal_is_delivered_to_the_waiting_node_and_checked_against_its_schema() -> None:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    with pytest.raises(SignalRefused, match=r"\$: 'go' is a required property"):
        signal_send(run=run, name="proceed", payload={"went": 1}, actor="ada")
    assert not Signal.objects.filter(run=run).exists(), "a refused signal is not kept"
    signal_send(run=run, name="proceed", payload={"go": True}, actor="ada")
    execute(run)
    run.refresh_from_db()
    assert run.status == "COMPLETED" and run.state["heard"] == {"go": True}
    event = run.events.get(kind="signal")
    assert event.actor == "ada" and "sent by ada" in event.message


def test_a_kept_signal_that_does_not_match_the_schema_is_skipped_with_an_event() -> None:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    signal_send(run=run, name="proceed", payload={"go": "yes"}, actor="ada")
    signal_send(run=run, name="proceed", payload={"go": False}, actor="ada")
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["heard"] == {"go": False}
    assert run.events.filter(kind="signal_refused").count() == 1


def test_a_signal_sent_between_the_wait_starting_and_its_record_is_delivered() -> None:
    """signal_send keeps it (nothing pending yet); the wait's after-record hook delivers it."""
    from runs.services import signals

    run = run_start(graph_name="c-signal", data={}, seed=1)
    real_take = signals.signal_take
    sent = []

    def take_then_send(**kwargs: object) -> tuple[bool, object]:
        found = real_take(**kwargs)  # type: ignore[arg-type]
        if not sent:
            sent.append(signal_send(run=run, name="proceed", payload={"go": True}, actor="racer"))
        return found

    import runs.activities.signals as activity

    original = activity.signal_take
    activity.signal_take = take_then_send  # type: ignore[assignment]
    try:
        assert execute(run) is Outcome.COMPLETED, "delivered before the worker suspended"
    finally:
        activity.signal_take = original
    run.refresh_from_db()
    assert run.state["heard"] == {"go": True}


def test_a_signal_to_an_ended_run_is_refused() -> None:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    execute(run)
    run_abort(run=run)
    with pytest.raises(RunEnded):
        signal_send(run=run, name="proceed", payload={"go": True})
