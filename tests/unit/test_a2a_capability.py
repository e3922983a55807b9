"""send_a2a by capability, in-process: the engine picks the first callable specialist with the capability,
skips one the registry or the policies refuse, falls back when one fails, and fails naming each when none
answers (runs.specialists.routing; the remote failover with real processes: tests/integration)."""

from __future__ import annotations

import pytest

from approvals.policy import PolicyEngine
from runs.models import Activity, Run, Specialist
from runs.services.runs import run_start
from runs.specialists.registry import specialist_sync_inprocess
from tests.helpers import execute

pytestmark = pytest.mark.django_db


def _run(policy: PolicyEngine | None = None, **state: object) -> Run:
    specialist_sync_inprocess()
    run = run_start(graph_name="t-capability", data={"text": "disk full", **state}, seed=1)
    execute(run, **({"policy": policy} if policy is not None else {}))
    run.refresh_from_db()
    return run


def test_the_first_specialist_with_the_capability_answers_and_the_record_says_who() -> None:
    run = _run()
    assert run.status == "COMPLETED", run.error
    assert run.state["answer"] == {"specialist": "t-sum-a", "result": {"summary": "t-sum-a: disk full"}, "skipped": []}
    (record,) = Activity.objects.filter(run=run, type="send_a2a")
    assert record.request["capability"] == "summarise" and record.request["specialist"] == ""


def test_a_failing_one_is_skipped_for_the_next_with_the_reason() -> None:
    run = _run(fail=["t-sum-a"])
    assert run.status == "COMPLETED", run.error
    answer = run.state["answer"]
    assert answer["specialist"] == "t-sum-b"
    assert answer["skipped"] == [{"specialist": "t-sum-a", "reason": "RuntimeError: t-sum-a cannot summarise today"}]


def test_a_disabled_one_and_one_the_policies_refuse_are_skipped() -> None:
    specialist_sync_inprocess()
    Specialist.objects.filter(name="t-sum-a").update(enabled=False)
    run = _run()
    assert run.state["answer"]["specialist"] == "t-sum-b"
    assert run.state["answer"]["skipped"] == [{"specialist": "t-sum-a", "reason": "specialist 't-sum-a' is disabled"}]
    Specialist.objects.filter(name="t-sum-a").update(enabled=True)
    run = _run(policy=PolicyEngine(registry=lambda: ["t-sum-b"]))
    assert run.status == "COMPLETED", run.error
    (skip,) = run.state["answer"]["skipped"]
    assert skip["specialist"] == "t-sum-a" and "specialist t-sum-a is not registered" in skip["reason"]


def test_with_none_left_the_activity_fails_naming_each_tried() -> None:
    run = _run(fail=["t-sum-a", "t-sum-b"])
    assert run.status == "FAILED"
    assert "no specialist with capability 'summarise' answered (t-sum-a: RuntimeError" in run.error
    assert "t-sum-b: RuntimeError: t-sum-b cannot summarise today" in run.error
    run = _run(fail=["t-sum-a", "t-sum-b"], tries=1)
    assert "t-sum-b" not in run.error  # max_tries=1: one invocation in all


def test_a_bad_call_fails_the_step_clearly() -> None:
    from runs.engine.errors import ActivityError  # noqa: F401 - the kind of error a refused call records

    specialist_sync_inprocess()
    run = run_start(graph_name="t-capability", data={"text": "x", "timeout": 0}, seed=1)
    execute(run)
    run.refresh_from_db()
    assert run.status == "FAILED" and "timeout_seconds is 0 to 86400" in run.error
