"""Suspension: a run waiting for an answer holds no worker and resumes when the answer is recorded."""

from __future__ import annotations

import pytest

from runs.engine.executor import Outcome
from runs.models import Activity, Run
from runs.services.runs import run_start
from runs.services.signals import RunEnded, run_signal
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_waits_without_a_lease_and_resumes_with_earlier_activities_replayed() -> None:
    run = run_start(graph_name="t-signal", data={"target": 1}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING"
    assert run.lease_owner == "" and run.lease_expires_at is None
    assert "signal 'go'" in run.wait_reason
    now_record = Activity.objects.get(run=run, type="now")
    pending = Activity.objects.get(run=run, type="signal")
    assert pending.status == "pending"

    run_signal(run=run, name="go", payload={"ok": True}, actor="tester")
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["answer"] == {"ok": True}
    # The step re-executed, yet `now` came back from its record: same row, same value.
    assert Activity.objects.filter(run=run, type="now").count() == 1
    assert run.state["asked_at"] == Activity.objects.get(pk=now_record.pk).response
    kinds = list(run.events.values_list("kind", "to_status"))
    assert ("status", "WAITING") in kinds and ("answered", "") in kinds


def test_a_signal_sent_before_the_run_waits_is_kept_and_delivered_then() -> None:
    run = run_start(graph_name="t-signal", data={"target": 1}, seed=1)
    signal = run_signal(run=run, name="go", payload={"early": True}, actor="tester")
    assert signal.delivered_at is None
    assert execute(run) is Outcome.COMPLETED, "the kept signal answers the wait at once"
    run.refresh_from_db()
    assert run.state["answer"] == {"early": True}
    assert run.events.filter(kind="signal", actor="tester").exists()


def test_a_signal_to_an_ended_run_is_refused() -> None:
    run = run_start(graph_name="t-count", data={"target": 1})
    execute(run)
    with pytest.raises(RunEnded, match="has ended"):
        run_signal(run=run, name="go", payload=1)


def test_an_answer_recorded_before_the_worker_suspends_is_not_lost() -> None:
    run = run_start(graph_name="t-signal", data={"target": 1}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run_signal(run=run, name="go", payload="first")
    # Simulate the race: the answer is already there when the step runs again.
    assert execute(run) is Outcome.COMPLETED
    assert Run.objects.get(pk=run.pk).state["answer"] == "first"


def test_aborting_a_waiting_run_ends_it_at_once() -> None:
    from runs.services.runs import run_abort

    run = run_start(graph_name="t-signal", data={"target": 1})
    execute(run)
    run.refresh_from_db()
    run_abort(run=run, actor="tester")
    run.refresh_from_db()
    assert run.status == "ABORTED"


def test_a_resumed_run_is_claimed_before_runs_submitted_while_it_waited() -> None:
    from runs.services.leases import run_claim_next

    waiting = run_start(graph_name="t-signal", data={"target": 1}, seed=1)
    assert execute(waiting) is Outcome.SUSPENDED
    later = [run_start(graph_name="t-count", data={"target": 1}) for _ in range(3)]
    run_signal(run=waiting, name="go", payload="ok")
    assert run_claim_next(owner="w1") == waiting.pk
    assert run_claim_next(owner="w1") == later[0].pk
