"""The demo's four runs under the policies: what each one does now that heal plans need approval."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from approvals.models import ApprovalRequest
from approvals.policy import PolicyEngine
from approvals.services import approval_decide, risk_rules_install_defaults
from runs.demo import DEMO_INPUTS, DEMO_SEEDS, heal_plan
from runs.engine.executor import Outcome
from runs.models import Run
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def default_rules() -> None:
    risk_rules_install_defaults()


def demo_run(i: int) -> Run:
    return run_start(graph_name="incident-healing", data=DEMO_INPUTS[i], seed=DEMO_SEEDS[i], role="admin")


def test_the_demo_runs_heal_wait_for_approval_and_fail_as_documented() -> None:
    policy = PolicyEngine(registry_ttl=0)
    checkout, search, reports, ledger = (demo_run(i) for i in range(4))
    assert [execute(r, policy=policy) for r in (checkout, search, reports, ledger)] == [
        Outcome.COMPLETED,
        Outcome.COMPLETED,
        Outcome.SUSPENDED,
        Outcome.FAILED,
    ]
    for run in (checkout, search, reports, ledger):
        run.refresh_from_db()
    assert checkout.state["outcome"] == "healed" and checkout.state["heal_attempts"] == 1
    assert checkout.state["approval"]["auto"] is True
    assert search.state["outcome"] == "healed" and search.state["heal_attempts"] == 3
    assert "pager for ledger is unreachable" in ledger.error

    assert reports.status == "WAITING"
    request = ApprovalRequest.objects.get(run=reports)
    assert request.status == "pending" and request.level == "high"
    assert "DELETE /v1/services/reports/releases/current" in request.preview
    approval_decide(request=request, user=User.objects.create_superuser("boss"), approve=True, reason="go")
    assert execute(reports, policy=policy) is Outcome.COMPLETED
    reports.refresh_from_db()
    assert reports.state["outcome"] == "escalated" and reports.state["heal_attempts"] == 1
    assert not reports.events.filter(kind="policy_denied").exists()


def test_a_rejected_demo_plan_escalates() -> None:
    reports = demo_run(2)
    assert execute(reports) is Outcome.SUSPENDED
    request = ApprovalRequest.objects.get(run=reports)
    approval_decide(request=request, user=User.objects.create_superuser("boss"), approve=False, reason="freeze")
    assert execute(reports) is Outcome.COMPLETED
    reports.refresh_from_db()
    assert reports.state["outcome"] == "escalated" and reports.state["heal_attempts"] == 0
    assert reports.state["approval"]["reason"] == "freeze"


@pytest.mark.parametrize(
    ("hypothesis", "waits"),
    [("stale cache", False), ("connection pool exhausted", False), ("bad deploy", True), ("disk full", True)],
)
def test_heal_plans_are_risky_only_for_rollbacks_and_deletions(hypothesis: str, waits: bool) -> None:
    from approvals.services import approval_assess

    action, preview = heal_plan("svc", hypothesis)
    assert (approval_assess(action=action).level != "low") is waits
    assert preview
