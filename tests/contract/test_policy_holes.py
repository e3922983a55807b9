"""Policies judge what an activity really sends, and their denials are records that replay reproduces."""

from __future__ import annotations

import pytest

import tests.graphs_approvals  # noqa: F401 - registers ap_call and the ap_echo specialist
from approvals.policy import PolicyEngine
from replay.services import run_verify
from runs.engine.executor import Outcome
from runs.models import Activity
from runs.services.runs import run_start
from tests.graphs_holes import BULK_RECEIVED
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)

OVER_10_MB = 12_000_000


def test_the_payload_limit_is_measured_before_redaction() -> None:
    """{"session_token": "x" * 12 MB} is recorded as "[redacted]", yet 12 MB would go to the specialist."""
    BULK_RECEIVED.clear()
    run = run_start(graph_name="h-send-bulk", data={"size": OVER_10_MB}, seed=1)
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    run.refresh_from_db()
    assert "over the 10 MB limit" in run.error, run.error
    assert BULK_RECEIVED == [], "the specialist received nothing"
    record = Activity.objects.get(run=run)
    assert record.status == "failed" and record.request["payload"]["session_token"] == "[redacted]"


def test_an_artifacts_content_counts_towards_the_payload_limit() -> None:
    run = run_start(graph_name="h-send-bulk", data={"size": OVER_10_MB, "as_artifact": True}, seed=1)
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    run.refresh_from_db()
    assert f"payload of {OVER_10_MB} bytes is over the 10 MB limit" in run.error, run.error


def test_a_small_payload_still_goes_through() -> None:
    BULK_RECEIVED.clear()
    run = run_start(graph_name="h-send-bulk", data={"size": 1000}, seed=1)
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.COMPLETED
    assert BULK_RECEIVED == [1000]


def test_a_run_failed_by_a_policy_denial_verifies() -> None:
    run = run_start(
        graph_name="ap-call", data={"specialist": "ap_echo", "payload": {"fields": ["email"]}}, seed=1, role="operator"
    )
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    run.refresh_from_db()
    denial = Activity.objects.get(run=run)
    assert denial.status == "failed" and "field email is personal data" in denial.error
    report = run_verify(run=run)
    assert report.ok, report.first_divergence
    assert [s.status for s in report.steps] == ["match"]
