"""The specialist registry cannot be hijacked (hole 6): changing a registered name takes an admin or a token
bound to it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cmo_site.shared.tokens import TokenRoleError, api_token_create
from runs.models import AuditEvent, Specialist
from runs.specialists.registry import specialist_sync_inprocess
from tests.unit.api_fixtures import assert_error, post_json, token_client, user_with

pytestmark = pytest.mark.django_db

HIJACK = {"name": "healer", "transport": "redis", "address": "cmo:spec:healer"}


@pytest.fixture(autouse=True)
def _registry() -> None:
    specialist_sync_inprocess()  # healer and the demo's specialists, as a worker syncs them
    assert Specialist.objects.get(name="healer").transport == "inprocess"


def client(username: str, role: str, token_role: str | None = None, **kwargs: Any) -> Client:
    _, raw = api_token_create(user=user_with(username, role), role=token_role or role, name="t", **kwargs)
    return Client(headers={"authorization": f"Bearer {raw}"})


@pytest.mark.parametrize(
    ("who", "role", "token_role"),
    [("olga", "operator", "operator"), ("olga", "operator", "specialist"), ("ada", "admin", "specialist")],
)
def test_registering_over_an_existing_specialist_is_refused_without_a_bound_token(
    who: str, role: str, token_role: str
) -> None:
    body = assert_error(post_json(client(who, role, token_role), "/api/specialists", HIJACK), 403, "forbidden")
    assert "healer" in body["message"]
    assert Specialist.objects.get(name="healer").transport == "inprocess", "nothing changed"
    assert not AuditEvent.objects.exists()


def test_an_admin_may_change_any_specialist_and_it_is_audited() -> None:
    response = post_json(client("ada", "admin"), "/api/specialists", HIJACK)
    assert response.status_code == 200, response.content
    assert Specialist.objects.get(name="healer").transport == "redis"
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == ("ada", "specialist_registered", "specialist:healer")
    assert event.detail["before"]["transport"] == "inprocess" and event.detail["after"]["transport"] == "redis"


def test_a_token_bound_to_the_name_may_register_and_heartbeat_it_and_nothing_else() -> None:
    bound = client("svc", "operator", "specialist", specialist="healer")
    assert post_json(bound, "/api/specialists", HIJACK).status_code == 200
    assert post_json(bound, "/api/specialists/healer/heartbeat").status_code == 200
    other = {"name": "scout-new", "transport": "redis"}
    refused = assert_error(post_json(bound, "/api/specialists", other), 403, "forbidden")
    assert "bound to specialist 'healer'" in refused["message"]
    assert not Specialist.objects.filter(name="scout-new").exists()
    assert AuditEvent.objects.get().detail["via"].startswith("token cmo_")


def test_a_new_name_belongs_to_whoever_registered_it() -> None:
    olga, bob = client("olga", "operator", "specialist"), client("bob", "operator")
    mine = {"name": "olgas-agent", "transport": "redis", "version": "1"}
    assert post_json(olga, "/api/specialists", mine).status_code == 200
    assert Specialist.objects.get(name="olgas-agent").owner.username == "olga"
    assert post_json(olga, "/api/specialists", {**mine, "version": "2"}).status_code == 200, "a restart re-registers"
    assert_error(post_json(bob, "/api/specialists", {**mine, "address": "evil"}), 403, "forbidden")
    assert_error(post_json(bob, "/api/specialists/olgas-agent/heartbeat"), 403, "forbidden")
    assert Specialist.objects.get(name="olgas-agent").version == "2"
    audit = [(e.actor, e.detail["after"]["version"]) for e in AuditEvent.objects.order_by("id")]
    assert audit == [("olga", "1"), ("olga", "2")]


def test_a_heartbeat_for_someone_elses_specialist_is_refused() -> None:
    assert_error(post_json(client("olga", "operator"), "/api/specialists/healer/heartbeat"), 403, "forbidden")


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_roles_that_may_not_manage_specialists_cannot_register(role: str) -> None:
    caller, _ = token_client(user_with(f"{role}-x", role), role)
    assert_error(post_json(caller, "/api/specialists", {"name": "x-new", "transport": "redis"}), 403, "forbidden")


def test_only_a_specialist_token_can_be_bound() -> None:
    with pytest.raises(TokenRoleError):
        api_token_create(user=user_with("olga", "operator"), role="operator", specialist="healer")
