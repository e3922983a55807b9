"""Approvals end to end on PostgreSQL with a real worker process: auto-approve, approve, reject, expire.

The run waits without a lease while a request is pending; a decision made in
this process resumes it in the worker; earlier effects are not repeated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

import tests.graphs_approvals  # noqa: F401 - registers the ap_ graphs here too
from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_expire_due, risk_rules_install_defaults
from runs.models import Run
from runs.services.runs import run_start
from tests.fixtures.counting_server import CountingServer, counting_server
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]
__all__ = ["counting_server"]

MODULES = {"CMO_GRAPH_MODULES": "runs.demo,tests.graphs,tests.graphs_approvals"}


def start(server: CountingServer, action: dict[str, Any], tag: str) -> Run:
    return run_start(graph_name="ap-flow", data={"url": server.url + "/" + tag, "action": action}, seed=1)


def status(run: Run) -> str:
    return Run.objects.get(pk=run.pk).status


def test_approve_reject_expire_and_auto_approve_with_a_worker(
    postgres_db: None, redis_url: str, counting_server: CountingServer
) -> None:
    risk_rules_install_defaults()
    approver = User.objects.create_user("ann", password="x")
    approver.groups.add(Group.objects.get_or_create(name="approver")[0])

    with worker("--concurrency", "2", "--poll", "0.2", env=MODULES) as proc:
        auto = start(counting_server, {"api_calls": ["POST /v1/cache/flush"]}, "auto")
        approve = start(counting_server, {"commands": ["rm -rf /var/cache/a"]}, "approve")
        reject = start(counting_server, {"api_calls": ["DELETE /v1/releases/42"]}, "reject")
        expire = start(counting_server, {"code": "import subprocess"}, "expire")

        assert wait_for(lambda: status(auto) == "COMPLETED", 60), proc.output[-3000:]
        for run in (approve, reject, expire):
            assert wait_for(lambda run=run: status(run) == "WAITING", 60), proc.output[-3000:]
            assert Run.objects.get(pk=run.pk).lease_owner == ""
        assert counting_server.count("/approve/gate") == 1 and counting_server.count("/approve/act") == 0

        approval_decide(
            request=ApprovalRequest.objects.get(run=approve), user=approver, approve=True, reason="ok", ip="10.0.0.7"
        )
        approval_decide(
            request=ApprovalRequest.objects.get(run=reject), user=approver, approve=False, reason="wrong release"
        )
        assert approval_expire_due(now=timezone.now() + dt.timedelta(hours=9)) == 1
        for run in (approve, reject, expire):
            assert wait_for(lambda run=run: status(run) == "COMPLETED", 60), proc.output[-3000:]

    states = {
        name: Run.objects.get(pk=r.pk).state
        for name, r in {"auto": auto, "approve": approve, "reject": reject, "expire": expire}.items()
    }
    assert states["auto"]["decision"]["auto"] is True
    assert (
        states["approve"]["decision"] | {"approved": True, "by": "ann", "reason": "ok"} == states["approve"]["decision"]
    )
    assert states["reject"]["routed"] == "rejected" and states["reject"]["decision"]["reason"] == "wrong release"
    assert states["expire"]["routed"] == "rejected" and states["expire"]["decision"]["status"] == "expired"
    # Earlier effects ran once although the gate step executed twice; the approved action ran once.
    for tag in ("auto", "approve", "reject", "expire"):
        assert counting_server.count(f"/{tag}/before") == 1, tag
        assert counting_server.count(f"/{tag}/gate") == 1, tag
    assert counting_server.count("/approve/act") == 1 and counting_server.count("/auto/act") == 1
    assert counting_server.count("/reject/act") == 0 and counting_server.count("/expire/act") == 0
    decided = Run.objects.get(pk=approve.pk).events.get(kind="approval_decided")
    assert decided.actor == "ann" and decided.detail["ip"] == "10.0.0.7"
