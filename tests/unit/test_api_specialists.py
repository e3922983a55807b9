"""The specialists API: register, heartbeat, list; a "specialist" token may register and heartbeat only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from runs.models import Specialist
from tests.unit.api_fixtures import assert_error, client_as, post_json, token_client, user_with

pytestmark = pytest.mark.django_db

HEALER = {
    "name": "healer",
    "version": "2.1",
    "capabilities": ["heal"],
    "transport": "redis",
    "address": "cmo:sp:healer",
}


def test_a_specialist_token_registers_and_heartbeats_but_reads_nothing() -> None:
    client, _ = token_client(user_with("ops", "operator"), "specialist")
    registered = post_json(client, "/api/specialists", HEALER)
    assert registered.status_code == 200, registered.content
    assert registered.json()["status"] == "online" and registered.json()["capabilities"] == ["heal"]
    Specialist.objects.filter(name="healer").update(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert client_as("viewer").get("/api/specialists").json()["specialists"][0]["status"] == "offline"

    beat = post_json(client, "/api/specialists/healer/heartbeat")
    assert beat.status_code == 200 and beat.json()["status"] == "online"
    assert_error(client.get("/api/specialists"), 403, "forbidden")
    assert_error(client.get("/api/runs"), 403, "forbidden")
    assert_error(post_json(client, "/api/runs", {"graph": "t-count"}), 403, "forbidden")


def test_registering_again_updates_the_row() -> None:
    operator = client_as("operator")
    post_json(operator, "/api/specialists", HEALER)
    post_json(operator, "/api/specialists", {**HEALER, "version": "2.2", "capabilities": ["heal", "triage"]})
    row = Specialist.objects.get(name="healer")
    assert (row.version, row.capabilities) == ("2.2", ["heal", "triage"])
    listed = client_as("viewer").get("/api/specialists").json()["specialists"]
    assert [s["name"] for s in listed] == ["healer"]


def test_a_heartbeat_for_an_unregistered_specialist_is_a_404() -> None:
    assert_error(post_json(client_as("operator"), "/api/specialists/ghost/heartbeat"), 404, "not_found")


def test_viewers_and_tokens_of_viewers_may_not_register() -> None:
    assert_error(post_json(client_as("viewer"), "/api/specialists", HEALER), 403, "forbidden")
    client, _ = token_client(user_with("v", "viewer"), "specialist")
    assert_error(post_json(client, "/api/specialists", HEALER), 403, "forbidden")


def test_a_bad_registration_is_a_422() -> None:
    operator = client_as("operator")
    assert_error(
        post_json(operator, "/api/specialists", {**HEALER, "transport": "carrier-pigeon"}), 422, "validation_error"
    )
    assert_error(post_json(operator, "/api/specialists", {**HEALER, "name": "has spaces"}), 422, "validation_error")
