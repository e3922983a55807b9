"""The run state machine, and the RunEvent every service transition writes."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

import tests.graphs_engine as ge
from runs.engine import statemachine as sm
from runs.engine.errors import InvalidTransition, LeaseLost
from runs.engine.executor import Executor, Outcome
from runs.engine.plugins import NO_POLICY
from runs.models import Run, RunEvent
from runs.scheduler import sweep
from runs.services.events import run_transition
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_abort, run_start
from tests.helpers import OWNER, execute, start_and_execute

# Only the tests that touch the database ask for it: the pure ones stay fast.
db = pytest.mark.django_db(transaction=True)

# The allowed transitions, written out independently of runs.engine.statemachine.
ALLOWED = {
    ("PENDING", "RUNNING"),
    ("PENDING", "FAILED"),
    ("PENDING", "TIMED_OUT"),
    ("PENDING", "ABORTED"),
    ("RUNNING", "WAITING"),
    ("RUNNING", "COMPLETED"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "TIMED_OUT"),
    ("RUNNING", "ABORTED"),
    ("WAITING", "RUNNING"),
    ("WAITING", "FAILED"),
    ("WAITING", "TIMED_OUT"),
    ("WAITING", "ABORTED"),
}
STATUSES = ["PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "TIMED_OUT", "ABORTED"]
ALL_PAIRS = list(itertools.product(STATUSES, STATUSES))


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


def test_the_status_sets() -> None:
    assert sm.STATUSES == STATUSES
    assert sm.TERMINAL == {"COMPLETED", "FAILED", "TIMED_OUT", "ABORTED"}
    assert sm.ACTIVE == {"PENDING", "RUNNING", "WAITING"}
    assert sm.TERMINAL | sm.ACTIVE == set(STATUSES)
    assert not sm.TERMINAL & sm.ACTIVE


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition(current: str, target: str) -> None:
    sm.check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_forbidden_transition(current: str, target: str) -> None:
    with pytest.raises(InvalidTransition) as info:
        sm.check_transition(current, target)
    assert (info.value.current, info.value.target) == (current, target)
    assert str(info.value) == f"invalid run transition {current} -> {target}"


def test_unknown_statuses_are_refused() -> None:
    with pytest.raises(InvalidTransition):
        sm.check_transition("BOGUS", "RUNNING")
    with pytest.raises(InvalidTransition):
        sm.check_transition("PENDING", "BOGUS")


# -- the service ------------------------------------------------------------------------


@db
def test_run_transition_moves_the_run_and_writes_an_event() -> None:
    run = run_start(graph_name="e-two-step", data={})
    moved = run_transition(run_id=run.pk, target=sm.RUNNING, message="go", actor="alice", detail={"k": 1})
    assert moved.status == "RUNNING"
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert run.started_at is not None and run.finished_at is None
    event = RunEvent.objects.filter(run=run, kind="status").get()
    assert (event.from_status, event.to_status, event.message, event.actor, event.detail, event.step) == (
        "PENDING",
        "RUNNING",
        "go",
        "alice",
        {"k": 1},
        0,
    )


@db
def test_run_transition_to_a_terminal_status_finishes_and_releases_the_run() -> None:
    run = run_start(graph_name="e-two-step", data={})
    Run.objects.filter(pk=run.pk).update(lease_owner="w1", lease_expires_at=timezone.now() + dt.timedelta(minutes=1))
    run_transition(run_id=run.pk, target=sm.RUNNING, expect_owner="w1")
    run_transition(run_id=run.pk, target=sm.FAILED, expect_owner="w1", extra={"error": "broken"})
    run.refresh_from_db()
    assert (run.status, run.error, run.lease_owner, run.lease_expires_at) == ("FAILED", "broken", "", None)
    assert run.finished_at is not None
    statuses = list(RunEvent.objects.filter(run=run, kind="status").values_list("from_status", "to_status"))
    assert statuses == [("PENDING", "RUNNING"), ("RUNNING", "FAILED")]


@db
def test_a_forbidden_transition_changes_nothing_and_writes_no_event() -> None:
    run = run_start(graph_name="e-two-step", data={})
    events_before = RunEvent.objects.filter(run=run).count()
    with pytest.raises(InvalidTransition) as info:
        run_transition(run_id=run.pk, target=sm.COMPLETED)
    assert str(info.value) == "invalid run transition PENDING -> COMPLETED"
    run.refresh_from_db()
    assert run.status == "PENDING"
    assert RunEvent.objects.filter(run=run).count() == events_before


@db
def test_a_terminal_run_cannot_move_again() -> None:
    run = start_and_execute("e-two-step")
    assert run.status == "COMPLETED"
    events_before = RunEvent.objects.filter(run=run).count()
    for target in ["RUNNING", "FAILED", "ABORTED", "WAITING", "PENDING"]:
        with pytest.raises(InvalidTransition):
            run_transition(run_id=run.pk, target=target)
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert RunEvent.objects.filter(run=run).count() == events_before


@db
def test_a_transition_by_a_worker_that_does_not_hold_the_lease_is_refused() -> None:
    run = run_start(graph_name="e-two-step", data={})
    Run.objects.filter(pk=run.pk).update(lease_owner="w1", lease_expires_at=timezone.now() + dt.timedelta(minutes=1))
    with pytest.raises(LeaseLost):
        run_transition(run_id=run.pk, target=sm.RUNNING, expect_owner="w2")
    run.refresh_from_db()
    assert run.status == "PENDING"
    assert not RunEvent.objects.filter(run=run, kind="status").exists()


# -- every transition the services make is in the audit trail ---------------------------


def assert_audit_trail(run: Run, expected: list[str]) -> None:
    """The status events chain from PENDING through ``expected`` to the run's status, each allowed."""
    run.refresh_from_db()
    events = list(RunEvent.objects.filter(run=run, kind__in=["created", "status"]).order_by("id"))
    assert events[0].kind == "created"
    assert (events[0].from_status, events[0].to_status) == ("", "PENDING")
    previous = "PENDING"
    path = ["PENDING"]
    for event in events[1:]:
        assert event.kind == "status"
        assert event.from_status == previous, f"event {event} does not continue from {previous}"
        assert (event.from_status, event.to_status) in ALLOWED
        previous = event.to_status
        path.append(previous)
    assert path == expected
    assert previous == run.status


@db
def test_audit_trail_of_a_completed_run() -> None:
    run = start_and_execute("e-two-step")
    assert_audit_trail(run, ["PENDING", "RUNNING", "COMPLETED"])
    final = RunEvent.objects.filter(run=run, to_status="COMPLETED").get()
    assert final.step == 1


@db
def test_audit_trail_of_a_failed_run() -> None:
    run = start_and_execute("e-raise")
    assert run.status == "FAILED"
    assert_audit_trail(run, ["PENDING", "RUNNING", "FAILED"])
    assert "KeyError" in RunEvent.objects.filter(run=run, to_status="FAILED").get().message


@db
def test_audit_trail_of_a_run_that_waits_then_is_aborted() -> None:
    run = start_and_execute("e-suspend")
    assert run.status == "WAITING"
    assert run.wait_reason == "waiting for an approval"
    assert run.lease_owner == ""
    assert list(run.activities.values_list("type", "status")) == [("e_wait", "pending")]
    run_abort(run=run, actor="bob")
    assert_audit_trail(run, ["PENDING", "RUNNING", "WAITING", "ABORTED"])
    assert RunEvent.objects.filter(run=run, to_status="ABORTED").get().actor == "bob"


@db
def test_audit_trail_of_a_pending_run_aborted() -> None:
    run = run_start(graph_name="e-two-step", data={})
    run_abort(run=run)
    assert_audit_trail(run, ["PENDING", "ABORTED"])


@db
def test_audit_trail_of_a_run_aborted_between_steps() -> None:
    run = start_and_execute("e-two-step", max_steps=1)
    assert run.status == "RUNNING"
    run_abort(run=run)
    executor = Executor(DjangoCheckpointer(owner=OWNER), policy=NO_POLICY, sleep=lambda s: None)
    try:
        assert executor.run(run.pk) == Outcome.ABORTED
    finally:
        executor.close()
    assert_audit_trail(run, ["PENDING", "RUNNING", "ABORTED"])
    assert RunEvent.objects.filter(run=run, kind="abort_requested").count() == 1


@db
def test_audit_trail_of_a_run_timed_out_by_the_executor() -> None:
    run = run_start(graph_name="e-two-step", data={})
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    assert execute(run) == Outcome.TIMED_OUT
    assert_audit_trail(run, ["PENDING", "RUNNING", "TIMED_OUT"])


@db
def test_audit_trail_of_a_run_timed_out_by_the_scheduler() -> None:
    run = run_start(graph_name="e-two-step", data={})
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    assert sweep()["timed_out"] == 1
    assert_audit_trail(run, ["PENDING", "TIMED_OUT"])
    assert run.error == "run timeout reached"


@db
def test_a_resumed_run_records_a_resumption_not_a_second_start() -> None:
    run = start_and_execute("e-two-step", max_steps=1)
    assert run.status == "RUNNING"
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert execute(run, owner="worker-2") == Outcome.COMPLETED
    assert_audit_trail(run, ["PENDING", "RUNNING", "COMPLETED"])
    resumed = RunEvent.objects.filter(run=run, kind="resumed").get()
    assert resumed.detail == {"worker": "worker-2", "previous_worker": "test-worker"}
