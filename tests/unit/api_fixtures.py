"""Users, tokens and API clients for the API tests."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import Group, User
from django.test import Client

from cmo_site.shared.tokens import api_token_create


def user_with(username: str, *roles: str, superuser: bool = False) -> User:
    """A user in ``roles`` (no usable password: hashing one costs half a second; tests use force_login)."""
    user, _ = User.objects.get_or_create(username=username, defaults={"is_superuser": superuser})
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def token_client(user: User, token_role: str) -> tuple[Client, str]:
    """A client that sends ``Authorization: Bearer <token>`` for a new token of ``user`` capped at ``token_role``."""
    _, raw = api_token_create(user=user, role=token_role, name="tests")
    return Client(headers={"authorization": f"Bearer {raw}"}), raw


def client_as(role: str) -> Client:
    """A bearer-token client of a new user who holds ``role`` (the token capped at the same role)."""
    client, _ = token_client(user_with(f"{role}-user", role), role)
    return client


def post_json(client: Client, path: str, body: Any = None, **extra: Any) -> Any:
    return client.post(
        path, data=json.dumps(body if body is not None else {}), content_type="application/json", **extra
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with this status and code; returns its body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert body["message"], body
    return dict(body)
