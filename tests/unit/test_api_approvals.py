"""The approvals API: list pending and decided requests, approve or reject (approver and admin roles only)."""

from __future__ import annotations

import pytest

import tests.graphs_approvals  # noqa: F401 - registers the ap_ nodes
from approvals.models import ApprovalRequest
from approvals.services import risk_rules_install_defaults
from runs.engine.executor import Outcome
from runs.models import Run
from runs.services.runs import run_start
from tests.helpers import execute
from tests.unit.api_fixtures import assert_error, client_as, post_json, token_client, user_with

pytestmark = pytest.mark.django_db

HIGH = {"commands": ["rm -rf /var/cache/checkout"]}


@pytest.fixture
def pending() -> ApprovalRequest:
    risk_rules_install_defaults()
    run = run_start(graph_name="ap-require", data={"action": HIGH, "preview": "$ rm -rf"}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    return ApprovalRequest.objects.get(run=run)


def test_pending_requests_are_listed_with_their_risk(pending: ApprovalRequest) -> None:
    listed = client_as("viewer").get("/api/approvals").json()["approvals"]
    assert [a["id"] for a in listed] == [pending.pk]
    assert listed[0]["status"] == "pending" and listed[0]["level"] in ("high", "critical")
    assert listed[0]["trace_id"] == pending.run.trace_id and listed[0]["findings"]
    assert client_as("approver").get("/api/approvals", {"status": "decided"}).json() == {"approvals": []}


def test_an_approver_approves_and_the_run_resumes(pending: ApprovalRequest) -> None:
    approver = client_as("approver")
    decided = post_json(approver, f"/api/approvals/{pending.pk}/decide", {"approve": True, "reason": "checked"})
    assert decided.status_code == 200, decided.content
    body = decided.json()
    assert body["status"] == "approved" and body["decided_by"] == "approver-user" and body["reason"] == "checked"
    run = Run.objects.get(pk=pending.run_id)
    assert run.status in ("PENDING", "RUNNING")
    assert [a["id"] for a in approver.get("/api/approvals", {"status": "decided"}).json()["approvals"]] == [pending.pk]


def test_deciding_twice_is_a_409(pending: ApprovalRequest) -> None:
    approver = client_as("approver")
    assert post_json(approver, f"/api/approvals/{pending.pk}/decide", {"approve": True}).status_code == 200
    body = assert_error(
        post_json(approver, f"/api/approvals/{pending.pk}/decide", {"approve": False, "reason": "x"}),
        409,
        "not_pending",
    )
    assert "approved" in body["message"]


def test_rejecting_without_a_reason_is_a_422(pending: ApprovalRequest) -> None:
    response = post_json(client_as("approver"), f"/api/approvals/{pending.pk}/decide", {"approve": False})
    assert_error(response, 422, "reason_required")
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_only_approvers_and_admins_decide(pending: ApprovalRequest) -> None:
    for role in ("viewer", "operator"):
        assert_error(
            post_json(client_as(role), f"/api/approvals/{pending.pk}/decide", {"approve": True}), 403, "forbidden"
        )
    capped, _ = token_client(user_with("boss", superuser=True), "operator")
    assert_error(post_json(capped, f"/api/approvals/{pending.pk}/decide", {"approve": True}), 403, "forbidden")
    admin, _ = token_client(user_with("root", superuser=True), "admin")
    assert post_json(admin, f"/api/approvals/{pending.pk}/decide", {"approve": True}).json()["decided_by"] == "root"


def test_an_unknown_request_is_a_404() -> None:
    assert_error(post_json(client_as("approver"), "/api/approvals/999999/decide", {"approve": True}), 404, "not_found")
    assert_error(
        post_json(client_as("approver"), "/api/approvals/0/decide", {"approve": True}), 422, "validation_error"
    )


def test_a_reason_longer_than_the_decision_notice_allows_is_a_422(pending: ApprovalRequest) -> None:
    response = post_json(
        client_as("approver"), f"/api/approvals/{pending.pk}/decide", {"approve": False, "reason": "x" * 5001}
    )
    assert_error(response, 422, "validation_error")
    pending.refresh_from_db()
    assert pending.status == "pending"
