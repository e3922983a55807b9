"""API authentication and roles: bearer tokens (hashed, role-capped, revocable), sessions with CSRF, 401 and 403."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from cmo_site.api import openapi_document
from cmo_site.shared.models import ApiToken
from cmo_site.shared.permissions import token_roles
from cmo_site.shared.tokens import api_token_authenticate, api_token_create, api_token_revoke
from tests.unit.api_fixtures import assert_error, post_json, token_client, user_with

pytestmark = pytest.mark.django_db

SAMPLE_PATH = {"{trace_id}": "0" * 32, "{name}": "t-count", "{approval_id}": "1"}

# Which action each endpoint needs (the rest are reads).
OPERATE = {
    ("post", "/api/graphs"),
    ("post", "/api/runs"),
    ("post", "/api/runs/{trace_id}/abort"),
    ("post", "/api/runs/{trace_id}/move"),
    ("post", "/api/runs/{trace_id}/signals/{name}"),
    ("post", "/api/runs/{trace_id}/fork"),
    ("post", "/api/runs/import"),
    ("post", "/api/hooks"),
    ("patch", "/api/hooks/{name}"),
    ("delete", "/api/hooks/{name}"),
    ("post", "/api/hooks/{name}/rotate-secret"),
    ("post", "/api/schedules"),
    ("put", "/api/schedules/{name}"),
    ("delete", "/api/schedules/{name}"),
    ("post", "/api/schedules/{name}/pause"),
    ("post", "/api/schedules/{name}/resume"),
    ("post", "/api/schedules/{name}/trigger"),
    ("post", "/api/schedules/{name}/backfill"),
}
APPROVE = {("post", "/api/approvals/{approval_id}/decide")}
SPECIALISTS = {("post", "/api/specialists"), ("post", "/api/specialists/{name}/heartbeat")}
# Authenticated by the body's signature, not a session or token (tests/unit/test_hooks_delivery.py).
SIGNED = {("post", "/api/hooks/{name}")}


def operations() -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for path, ops in openapi_document()["paths"].items()
        for method in ops
        if (method, path) not in SIGNED
    )


def call(client: Client, method: str, path: str, **extra: Any) -> Any:
    for key, value in SAMPLE_PATH.items():
        path = path.replace(key, value)
    if method == "get":
        return client.get(path, **extra)
    if method in ("put", "patch", "delete"):
        return client.generic(method.upper(), path, data="{}", content_type="application/json", **extra)
    return post_json(client, path, {}, **extra)


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_endpoint_refuses_a_request_without_credentials(method: str, path: str) -> None:
    assert_error(call(Client(), method, path), 401, "unauthenticated")


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_endpoint_refuses_an_unknown_token(method: str, path: str) -> None:
    client = Client(headers={"authorization": "Bearer cmo_not-a-real-token-at-all-0000000000000000"})
    assert_error(call(client, method, path), 401, "invalid_token")


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_endpoint_checks_the_role(method: str, path: str) -> None:
    """A viewer may read only; an operator may not decide; a specialist token may only register and heartbeat."""
    viewer, _ = token_client(user_with("v", "viewer"), "viewer")
    operator, _ = token_client(user_with("o", "operator"), "operator")
    specialist, _ = token_client(user_with("s", "operator"), "specialist")
    key = (method, path)
    if key in OPERATE | APPROVE:
        assert_error(call(viewer, method, path), 403, "forbidden")
    if key in APPROVE:
        assert_error(call(operator, method, path), 403, "forbidden")
    if key in SPECIALISTS:
        assert_error(call(viewer, method, path), 403, "forbidden")
    else:
        assert_error(call(specialist, method, path), 403, "forbidden")
    if key not in OPERATE | APPROVE | SPECIALISTS:
        assert call(viewer, method, path).status_code != 403


def test_a_token_is_stored_hashed_and_authenticates_until_revoked() -> None:
    user = user_with("ops", "operator")
    client, raw = token_client(user, "operator")
    row = ApiToken.objects.get(user=user)
    assert raw.startswith("cmo_") and len(raw) > 40
    assert row.prefix == raw[:12] and raw not in row.token_hash and len(row.token_hash) == 64
    assert not ApiToken.objects.filter(token_hash__contains=raw[12:]).exists()

    me = client.get("/api/me")
    assert me.status_code == 200
    assert me.json() == {
        "username": "ops",
        "roles": ["operator", "viewer"],
        "token": raw[:12],
        "token_role": "operator",
    }
    row.refresh_from_db()
    assert row.last_used_at is not None

    assert api_token_revoke(token=row)
    assert_error(client.get("/api/me"), 401, "invalid_token")
    assert not api_token_revoke(token=row)


def test_a_token_of_an_inactive_user_is_refused() -> None:
    user = user_with("gone", "operator")
    client, _ = token_client(user, "operator")
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_error(client.get("/api/me"), 401, "invalid_token")


def test_last_used_at_is_written_at_most_once_a_minute() -> None:
    _, raw = api_token_create(user=user_with("u", "viewer"), role="viewer")
    t0 = timezone.now()
    first = api_token_authenticate(raw=raw, now=t0)
    assert first is not None and first.last_used_at == t0
    again = api_token_authenticate(raw=raw, now=t0 + timezone.timedelta(seconds=30))
    assert again is not None and again.last_used_at == t0
    later = api_token_authenticate(raw=raw, now=t0 + timezone.timedelta(minutes=2))
    assert later is not None and later.last_used_at == t0 + timezone.timedelta(minutes=2)


def test_the_token_role_caps_the_users_roles() -> None:
    assert token_roles(user_roles={"viewer", "operator", "admin"}, token_role="viewer") == {"viewer"}
    assert token_roles(user_roles={"viewer"}, token_role="admin") == {"viewer"}
    assert token_roles(user_roles={"viewer", "approver"}, token_role="operator") == {"viewer"}
    assert token_roles(user_roles={"viewer", "operator"}, token_role="specialist") == {"specialist"}
    assert token_roles(user_roles={"viewer"}, token_role="specialist") == set()

    admin = user_with("root", superuser=True)
    capped, _ = token_client(admin, "viewer")
    assert_error(post_json(capped, "/api/runs", {"graph": "t-count"}), 403, "forbidden")
    full, _ = token_client(admin, "admin")
    assert post_json(full, "/api/runs", {"graph": "t-count"}).status_code == 201


def test_a_token_never_exceeds_the_users_own_roles() -> None:
    viewer_with_admin_token, _ = token_client(user_with("v", "viewer"), "admin")
    body = assert_error(post_json(viewer_with_admin_token, "/api/runs", {"graph": "t-count"}), 403, "forbidden")
    assert body["details"]["roles"] == ["viewer"]


def test_a_malformed_authorization_header_is_a_401() -> None:
    for header in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer cmo_" + "x" * 300):
        assert Client(headers={"authorization": header}).get("/api/me").status_code == 401


def test_a_session_reads_and_must_send_the_csrf_token_to_write() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("browser", "operator"))
    assert client.get("/api/me").json()["roles"] == ["operator", "viewer"]

    assert_error(post_json(client, "/api/runs", {"graph": "t-count"}), 403, "csrf_failed")

    client.get("/login/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    started = post_json(client, "/api/runs", {"graph": "t-count"}, HTTP_X_CSRFTOKEN=csrf)
    assert started.status_code == 201, started.content
    assert started.json()["created_by"] == "browser"


def test_the_api_token_command_prints_a_working_token_once() -> None:
    user_with("robot", "operator", "approver")
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", "create", "--user", "robot", "--role", "approver", "--name", "ci", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert "shown once" in err.getvalue() and raw not in err.getvalue()
    token = ApiToken.objects.get(user__username="robot")
    assert (token.role, token.name, token.prefix) == ("approver", "ci", raw[:12])
    me = Client(headers={"authorization": f"Bearer {raw}"}).get("/api/me").json()
    assert me["roles"] == ["approver", "viewer"]

    listing = io.StringIO()
    call_command("api_token", "list", stdout=listing)
    assert raw[:12] in listing.getvalue() and raw not in listing.getvalue()

    call_command("api_token", "revoke", raw[:12], stdout=io.StringIO())
    assert Client(headers={"authorization": f"Bearer {raw}"}).get("/api/me").status_code == 401


def test_the_api_token_command_defaults_to_the_users_strongest_role() -> None:
    user_with("lead", "operator")
    out = io.StringIO()
    call_command("api_token", "create", "--user", "lead", stdout=out, stderr=io.StringIO())
    assert ApiToken.objects.get(user__username="lead").role == "operator"


def test_the_api_token_command_refuses_an_unknown_user() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no user named"):
        call_command("api_token", "create", "--user", "nobody", stdout=io.StringIO())


def test_an_admin_creates_a_token_in_admin_and_sees_it_once() -> None:
    admin = user_with("boss", superuser=True)
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    target = user_with("worker", "operator")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/cmo_site/apitoken/add/", {"user": target.pk, "role": "operator", "name": "from admin"}, follow=True
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(user=target)
    shown = [str(m) for m in response.context["messages"]]
    raw = next(word for m in shown for word in m.split() if word.startswith("cmo_"))
    assert raw[:12] == token.prefix
    assert Client(headers={"authorization": f"Bearer {raw}"}).get("/api/me").json()["username"] == "worker"

    client.post(
        "/admin/cmo_site/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.is_revoked
    assert json.loads(Client(headers={"authorization": f"Bearer {raw}"}).get("/api/me").content)["code"] == (
        "invalid_token"
    )
