"""Admin: risk rules are editable (a bad pattern is refused); approval requests are read-only with filters."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

import tests.graphs_approvals  # noqa: F401 - registers the ap_ graphs
from approvals.models import ApprovalRequest, RiskRule
from approvals.services import risk_rules_install_defaults
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin() -> Client:
    risk_rules_install_defaults()
    User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    assert client.login(username="root", password="pw-for-tests-only")
    return client


def test_default_rules_are_listed_and_editable(admin: Client) -> None:
    page = admin.get("/admin/approvals/riskrule/", {"category__exact": "commands"}).content.decode()
    assert "rm-rf" in page and "env-file" not in page
    rule = RiskRule.objects.get(name="rm-rf")
    form = {
        "name": "rm-rf",
        "category": "commands",
        "pattern": rule.pattern,
        "level": "critical",
        "weight": 90,
        "why": rule.why,
        "enabled": "on",
    }
    assert admin.post(f"/admin/approvals/riskrule/{rule.pk}/change/", form).status_code == 302
    rule.refresh_from_db()
    assert rule.level == "critical"
    bad = admin.post(f"/admin/approvals/riskrule/{rule.pk}/change/", {**form, "pattern": "rm -(rf"})
    assert bad.status_code == 200 and "not a valid regular expression" in bad.content.decode()
    no_threshold = admin.post("/admin/approvals/riskrule/add/", {**form, "name": "amt", "category": "amount"})
    assert "an amount rule needs a threshold" in no_threshold.content.decode()


def test_requests_are_read_only_and_filterable(admin: Client) -> None:
    run = run_start(
        graph_name="ap-require", data={"url": "http://127.0.0.1:9", "action": {"commands": ["sudo ls /root"]}}, seed=1
    )
    execute(run)
    request = ApprovalRequest.objects.get(run=run)
    listing = admin.get("/admin/approvals/approvalrequest/", {"status__exact": "pending", "level__exact": "high"})
    assert listing.status_code == 200 and run.trace_id in listing.content.decode()
    assert (
        run.trace_id
        not in admin.get("/admin/approvals/approvalrequest/", {"status__exact": "approved"}).content.decode()
    )
    detail = admin.get(f"/admin/approvals/approvalrequest/{request.pk}/change/")
    assert detail.status_code == 200 and "sudo ls /root" in detail.content.decode()
    assert admin.get("/admin/approvals/approvalrequest/add/").status_code == 403
    assert (
        admin.post(f"/admin/approvals/approvalrequest/{request.pk}/change/", {"status": "approved"}).status_code == 403
    )
    assert admin.post(f"/admin/approvals/approvalrequest/{request.pk}/delete/", {"post": "yes"}).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"
