"""Per-node timeouts and retries with backoff."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.utils import timezone

import tests.graphs_engine as ge
from runs.engine import END
from runs.engine.executor import Executor, Outcome
from runs.engine.graph import RetryPolicy
from runs.engine.plugins import NO_POLICY
from runs.models import Activity, Run, RunEvent
from runs.services.graphs import graph_create_from_json
from runs.services.leases import run_claim
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_start
from tests.helpers import OWNER, execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


def run_recording_sleeps(graph: str, data: Any) -> tuple[Run, Outcome, list[float]]:
    """Start and execute ``graph``; the executor's backoff sleeps are recorded, not slept."""
    sleeps: list[float] = []
    run = run_start(graph_name=graph, data=data, seed=42)
    assert run_claim(run_id=run.pk, owner=OWNER)
    executor = Executor(DjangoCheckpointer(owner=OWNER), policy=NO_POLICY, sleep=sleeps.append)
    try:
        outcome = executor.run(run.pk)
    finally:
        executor.close()
    run.refresh_from_db()
    return run, outcome, sleeps


def retry_events(run: Run) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run=run, kind="retry").order_by("id"))


# -- timeouts -------------------------------------------------------------------------------


def test_a_node_over_its_timeout_fails_the_run_without_waiting_for_it() -> None:
    started = time.monotonic()
    run = start_and_execute("t-sleep", {"sleep": 1.0})
    elapsed = time.monotonic() - started
    assert run.status == "FAILED"
    assert "node 't_sleep' timed out after 0.5 s" in run.error
    step = run.steps.get()
    assert (step.index, step.node, step.attempt) == (0, "t_sleep", 1)
    assert "timed out after 0.5 s" in step.error
    assert elapsed < 0.95, f"the executor waited {elapsed:.2f} s for a node it should have abandoned"
    assert retry_events(run) == []


def test_a_node_within_its_timeout_completes() -> None:
    run = start_and_execute("t-sleep", {"sleep": 0.05})
    assert run.status == "COMPLETED", run.error
    assert run.state == {"sleep": 0.05}


def test_a_timed_out_attempt_is_retried_when_the_node_has_a_retry_policy() -> None:
    run = start_and_execute("e-slow-then-fast")
    assert run.status == "COMPLETED", run.error
    assert run.state == {"attempt": 2}
    events = retry_events(run)
    assert len(events) == 1
    assert events[0].message == "node 'e_slow_then_fast' timed out after 0.3 s"
    assert run.steps.get().attempt == 2


def test_an_abandoned_node_can_do_no_more_activities() -> None:
    run = start_and_execute("e-cancelled-activity")
    assert run.status == "FAILED"
    assert "timed out after 0.2 s" in run.error
    assert ge.LATE_CALL_DONE.wait(5), "the abandoned node never reached its activity call"
    assert ge.LATE_CALL_RESULT["result"].startswith("Cancelled: step 0 (e_cancelled_activity) was abandoned")
    assert ge.EFFECTS["late"] == 0
    assert not Activity.objects.filter(run=run).exists()


def test_activities_work_from_the_thread_that_enforces_a_timeout() -> None:
    run = start_and_execute("e-timed-activity")
    assert run.status == "COMPLETED", run.error
    assert run.state["got"] == {"count": 1}
    assert ge.EFFECTS["timed"] == 1
    assert list(Activity.objects.filter(run=run).values_list("seq", "type", "status")) == [
        (0, "e_timed", "completed"),
        (1, "now", "completed"),
    ]


def test_a_json_definition_can_override_a_node_timeout() -> None:
    graph_create_from_json(
        definition={
            "name": "e-sleep-short",
            "entry": "t_sleep",
            "nodes": [{"name": "t_sleep", "timeout": 0.2}],
            "edges": [{"from": "t_sleep", "to": END}],
        }
    )
    run = start_and_execute("e-sleep-short", {"sleep": 0.4})
    assert run.status == "FAILED"
    assert "node 't_sleep' timed out after 0.2 s" in run.error


# -- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "attempt", "expected"),
    [
        (RetryPolicy(backoff=0.5, multiplier=2.0), 1, 0.5),
        (RetryPolicy(backoff=0.5, multiplier=2.0), 2, 1.0),
        (RetryPolicy(backoff=0.5, multiplier=2.0), 4, 4.0),
        (RetryPolicy(backoff=1.0, multiplier=3.0), 3, 9.0),
        (RetryPolicy(backoff=1.0, multiplier=10.0, max_backoff=60.0), 5, 60.0),
        (RetryPolicy(backoff=0.0), 3, 0.0),
    ],
)
def test_backoff_grows_exponentially_up_to_its_cap(policy: RetryPolicy, attempt: int, expected: float) -> None:
    assert policy.delay(attempt) == pytest.approx(expected)


def test_a_retry_policy_round_trips_through_a_definition() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=0.25, multiplier=3.0, max_backoff=10.0)
    assert RetryPolicy.from_dict(policy.as_dict()) == policy
    assert RetryPolicy.from_dict(None) == RetryPolicy()
    assert RetryPolicy().max_attempts == 1


def test_a_flaky_node_succeeds_on_its_third_attempt() -> None:
    run, outcome, sleeps = run_recording_sleeps("t-flaky", {"fail_times": 2})
    assert outcome == Outcome.COMPLETED
    assert run.status == "COMPLETED", run.error
    assert run.state == {"fail_times": 2, "succeeded_on": 3}
    assert sleeps == pytest.approx([0.01, 0.02])
    events = retry_events(run)
    assert [(e.step, e.detail["attempt"], e.detail["next_attempt"]) for e in events] == [(0, 1, 2), (0, 2, 3)]
    assert [e.detail["delay_seconds"] for e in events] == [0, 0]  # slept in place, not released
    assert "ConnectionError: flaky failure on attempt 1" in events[0].message
    assert "ConnectionError: flaky failure on attempt 2" in events[1].message
    step = run.steps.get()
    assert (step.index, step.attempt, step.error) == (0, 3, "")
    assert run.attempt == 1


def test_a_node_that_keeps_failing_fails_the_run_after_its_last_attempt() -> None:
    run, outcome, sleeps = run_recording_sleeps("t-flaky", {"fail_times": 5})
    assert outcome == Outcome.FAILED
    assert run.status == "FAILED"
    assert "node 't_flaky' raised ConnectionError: flaky failure on attempt 3" in run.error
    assert len(retry_events(run)) == 2
    assert len(sleeps) == 2
    step = run.steps.get()
    assert step.attempt == 3
    assert "flaky failure on attempt 3" in step.error


def test_a_node_that_does_not_fail_is_not_retried() -> None:
    run, outcome, sleeps = run_recording_sleeps("t-flaky", {"fail_times": 0})
    assert outcome == Outcome.COMPLETED
    assert run.state == {"fail_times": 0, "succeeded_on": 1}
    assert sleeps == []
    assert retry_events(run) == []


def test_a_long_backoff_releases_the_run_until_it_is_due() -> None:
    run, outcome, sleeps = run_recording_sleeps("e-long-backoff", {})
    assert outcome == Outcome.RETRY_LATER
    assert sleeps == []
    assert run.status == "RUNNING"
    assert run.attempt == 2
    assert run.lease_owner == ""
    assert run.not_before is not None
    wait = (run.not_before - timezone.now()).total_seconds()
    assert 4.0 < wait <= 5.0
    event = retry_events(run)[0]
    assert event.detail["delay_seconds"] == 5.0
    assert "ConnectionError: first attempt fails" in event.message
    assert not run_claim(run_id=run.pk, owner="impatient"), "a run in backoff must not be claimable"

    Run.objects.filter(pk=run.pk).update(not_before=timezone.now() - dt.timedelta(seconds=1))
    assert execute(run, owner="worker-2") == Outcome.COMPLETED
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.state == {"attempt": 2}
    assert run.not_before is None


def test_a_json_definition_can_override_the_retry_policy() -> None:
    edges = [{"from": "t_flaky", "to": END}]
    graph_create_from_json(
        definition={
            "name": "e-flaky-once",
            "entry": "t_flaky",
            "nodes": [{"name": "t_flaky", "retry": {"max_attempts": 1}}],
            "edges": edges,
        }
    )
    graph_create_from_json(
        definition={
            "name": "e-flaky-five",
            "entry": "t_flaky",
            "nodes": [{"name": "t_flaky", "retry": {"max_attempts": 5, "backoff": 0}}],
            "edges": edges,
        }
    )
    once, _, _ = run_recording_sleeps("e-flaky-once", {"fail_times": 1})
    assert once.status == "FAILED"
    assert retry_events(once) == []
    five, _, sleeps = run_recording_sleeps("e-flaky-five", {"fail_times": 4})
    assert five.status == "COMPLETED", five.error
    assert five.state["succeeded_on"] == 5
    assert sleeps == [0, 0, 0, 0]


def test_a_failure_from_the_code_is_not_retried() -> None:
    run, outcome, sleeps = run_recording_sleeps("e-not-json-retry", {})
    assert outcome == Outcome.FAILED
    assert "$.bad is a set" in run.error
    assert retry_events(run) == []
    assert sleeps == []
    assert run.steps.get().attempt == 1


def test_a_retry_redoes_the_failed_activity_of_the_failed_attempt() -> None:
    run = start_and_execute("e-flaky-activity")
    assert run.status == "COMPLETED", run.error
    assert run.state == {"got": {"ok": 2}}
    assert ge.EFFECTS["flaky"] == 2
    event = retry_events(run)[0]
    assert "e_flaky failed: RuntimeError: upstream unavailable" in event.message
    assert event.detail["failed_activities"] == [
        {"seq": 0, "type": "e_flaky", "request": {"x": 1}, "error": "RuntimeError: upstream unavailable"}
    ]
    activity = Activity.objects.get(run=run)
    assert (activity.seq, activity.status, activity.attempt, activity.response) == (0, "completed", 2, {"ok": 2})
