"""A run executes with the rights of whoever started, forked or imported it, never more (holes 1 and 2)."""

from __future__ import annotations

import json

import pytest

from approvals.policy import PolicyEngine
from replay.bundles import bundle_export
from replay.services import ReplayError, run_fork
from runs.engine.executor import Outcome
from runs.models import Run
from runs.services.runs import run_start
from tests.helpers import execute
from tests.unit.api_fixtures import assert_error, post_json, token_client, user_with
from tests.unit.test_bundle_integrity import reseal

pytestmark = pytest.mark.django_db(transaction=True)


def _admin_run() -> Run:
    """An admin's run of h-pii: its second step makes a PII specialist call only the admin role may make."""
    admin = user_with("root", "admin")
    run = run_start(graph_name="h-pii", data={}, seed=1, user=admin, role="admin")
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    return run


def test_a_fork_runs_with_the_forkers_role() -> None:
    parent = _admin_run()
    client, _ = token_client(user_with("olga", "operator"), "operator")
    response = post_json(client, f"/api/runs/{parent.trace_id}/fork", {"step": 0})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created_by"] == "olga" and body["role"] == "operator"
    fork = Run.objects.get(trace_id=body["trace_id"])
    assert fork.context == {"user": "olga", "role": "operator", "forked_from": parent.trace_id}
    assert fork.created_by is not None and fork.created_by.username == "olga"
    assert execute(fork, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    fork.refresh_from_db()
    assert "field email is personal data (PII): only the admin role may request it (role: operator)" in fork.error


def test_an_admins_operator_token_forks_with_the_operator_role() -> None:
    parent = _admin_run()
    client, _ = token_client(user_with("root", "admin"), "operator")
    body = post_json(client, f"/api/runs/{parent.trace_id}/fork", {"step": 0}).json()
    assert body["role"] == "operator", "the token's cap is the role the fork runs with"


def test_an_admin_fork_keeps_admin_rights() -> None:
    parent = _admin_run()
    client, _ = token_client(user_with("ada", "admin"), "admin")
    body = post_json(client, f"/api/runs/{parent.trace_id}/fork", {"step": 0}).json()
    assert body["created_by"] == "ada" and body["role"] == "admin"
    fork = Run.objects.get(trace_id=body["trace_id"])
    assert execute(fork, policy=PolicyEngine(registry_ttl=0)) is Outcome.COMPLETED


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_roles_that_may_not_operate_cannot_fork(role: str) -> None:
    parent = _admin_run()
    client, _ = token_client(user_with(f"{role}-1", role), role)
    assert_error(post_json(client, f"/api/runs/{parent.trace_id}/fork", {"step": 0}), 403, "forbidden")
    assert Run.objects.count() == 1


def test_a_forged_import_then_forked_runs_with_the_forkers_role() -> None:
    """The review's path: edit run.context to admin, recompute the sha256, import, fork."""
    parent = _admin_run()
    bundle = json.loads(json.dumps(bundle_export(run=parent)))
    Run.objects.all().delete()
    bundle["run"]["context"] = {"user": "root", "role": "admin"}
    client, _ = token_client(user_with("olga", "operator"), "operator")
    imported = post_json(client, "/api/runs/import", reseal(bundle))
    assert imported.status_code == 201, imported.content
    assert imported.json()["created_by"] == "olga" and imported.json()["role"] == "operator"
    fork_body = post_json(client, f"/api/runs/{parent.trace_id}/fork", {"step": 0}).json()
    assert fork_body["role"] == "operator"
    fork = Run.objects.get(trace_id=fork_body["trace_id"])
    assert execute(fork, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED


def test_forking_at_an_inherited_step_of_a_fork() -> None:
    """A fork inherits its parent's steps up to its fork step; forking at one of them works."""
    parent = _admin_run()
    olga = user_with("olga", "operator")
    first = run_fork(run=parent, step=0, user=olga, role="operator")
    second = run_fork(run=first, step=0, user=olga, role="operator")
    assert second.parent_id == first.pk and second.parent_step == 0 and second.state == {"prepared": True}
    with pytest.raises(ReplayError, match="no step 7"):
        run_fork(run=first, step=7, user=olga, role="operator")


def test_the_run_page_shows_who_forked_the_run_and_its_role() -> None:
    from django.test import Client

    parent = _admin_run()
    olga = user_with("olga", "operator")
    fork = run_fork(run=parent, step=0, user=olga, role="operator")
    page = Client()
    page.force_login(olga)
    html = page.get(f"/runs/{fork.trace_id}/").content.decode()
    assert '<dt>Forked by</dt><dd id="run-creator">olga <span class="muted">(runs as operator)</span>' in html
    html = page.get(f"/runs/{parent.trace_id}/").content.decode()
    assert '<dt>Started by</dt><dd id="run-creator">root <span class="muted">(runs as admin)</span>' in html


def test_start_run_on_the_command_line_runs_as_the_user_given() -> None:
    import io

    from django.core.management import call_command

    user_with("ada", "admin")
    out = io.StringIO()
    call_command("start_run", "t-count", "--input", '{"target": 1}', "--user", "ada", "--json", stdout=out)
    run = Run.objects.get(trace_id=json.loads(out.getvalue())["trace_id"])
    assert run.context == {"user": "ada", "role": "admin"} and run.created_by is not None
    call_command("start_run", "t-count", "--input", '{"target": 1}', stdout=io.StringIO())
    assert Run.objects.exclude(pk=run.pk).get().context == {"user": "", "role": "operator"}
