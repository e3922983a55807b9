"""Django admin: records are browsable and read-only; specialists are editable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from runs.models import Run, Specialist
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_logged_in() -> Client:
    User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    assert client.login(username="root", password="pw-for-tests-only")
    return client


def test_admin_requires_login() -> None:
    response = Client().get("/admin/runs/run/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_runs_steps_and_activities_are_listed_filtered_and_searchable(admin_client_logged_in: Client) -> None:
    run = start_and_execute("t-now-rand", {})
    other = start_and_execute("t-count", {"target": 2})
    c = admin_client_logged_in
    page = c.get("/admin/runs/run/", {"status__exact": "COMPLETED", "graph__name": "t-now-rand"})
    assert page.status_code == 200
    assert run.trace_id in page.content.decode()
    assert other.trace_id not in page.content.decode()
    found = c.get("/admin/runs/run/", {"q": run.trace_id}).content.decode()
    assert run.trace_id in found and other.trace_id not in found
    detail = c.get(f"/admin/runs/run/{run.pk}/change/")
    assert detail.status_code == 200
    assert "t_now_rand" in detail.content.decode()
    for url in ("/admin/runs/step/", "/admin/runs/activity/", "/admin/runs/runevent/", "/admin/runs/graph/"):
        assert c.get(url, {"q": run.trace_id} if "graph" not in url else {}).status_code == 200


def test_execution_records_cannot_be_changed_or_deleted(admin_client_logged_in: Client) -> None:
    run = start_and_execute("t-count", {"target": 1})
    c = admin_client_logged_in
    assert c.get("/admin/runs/run/add/").status_code == 403
    c.post(f"/admin/runs/run/{run.pk}/change/", {"status": "FAILED"})
    c.post(f"/admin/runs/run/{run.pk}/delete/", {"post": "yes"})
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert Run.objects.filter(pk=run.pk).exists()


def test_specialists_are_edited_and_unregistered_with_an_action(admin_client_logged_in: Client) -> None:
    spec = Specialist.objects.create(name="healer-x", capabilities=["heal"], address="in-process")
    c = admin_client_logged_in
    response = c.post("/admin/runs/specialist/", {"action": "unregister", "_selected_action": [spec.pk]})
    assert response.status_code == 302
    spec.refresh_from_db()
    assert spec.registered is False
    c.post("/admin/runs/specialist/", {"action": "register", "_selected_action": [spec.pk]})
    spec.refresh_from_db()
    assert spec.registered is True
    response = c.post(
        f"/admin/runs/specialist/{spec.pk}/change/",
        {
            "name": "healer-x",
            "version": "2",
            "capabilities": '["heal", "diagnose"]',
            "transport": "redis",
            "address": "cmo:specialist:healer-x",
            "registered": "on",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    spec.refresh_from_db()
    assert spec.capabilities == ["heal", "diagnose"] and spec.transport == "redis"
