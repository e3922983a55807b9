"""Specialists in Django admin: each stream's depth, pending, in-flight, held and DLQ figures, and re-driving
dead letters, against the machine's Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from runs.models import Specialist
from runs.specialists.a2a import transport
from runs.specialists.streams import StreamConsumer, dlq_key, held_key, inflight_key, stream_key
from tests.integration.test_redis_streams import envelope

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def remote_specialist(redis_url: str) -> Iterator[Specialist]:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    row = Specialist.objects.create(
        name=name, transport=Specialist.TRANSPORT_REDIS, address=stream_key(name), max_in_flight=1
    )
    yield row
    t = transport()
    t.redis.delete(stream_key(name), dlq_key(name), inflight_key(name), held_key(name), held_key(name) + ":bodies")


def test_admin_shows_stream_figures_and_redrives_a_dead_letter(remote_specialist: Specialist) -> None:
    name = remote_specialist.name
    t = transport()
    t.publish_capped(name, envelope(1, name), cap=1)
    t.publish_capped(name, envelope(2, name), cap=1)  # over the cap: held
    t.redis.xadd(stream_key(name), {"kind": "SpecialistInvocationRequest", "body": json.dumps({"meta": {}})})
    handled: list[int] = []
    consumer = StreamConsumer(t, name, "c1", lambda d: handled.append(d.envelope["payload"]["n"]))
    for _ in range(5):
        consumer.poll_once(block_ms=50)
    consumer.drain()
    assert handled == [1] and t.stats(name)["dlq"] == 1

    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/runs/specialist/").content.decode()
    assert name in page
    assert "1 dead letters" in page
    assert "Held over cap" in page
    home = client.get("/").content.decode()
    assert f"<strong>{name}</strong> 1 of 1 in flight, 1 waiting" in home
    metrics = client.get("/metrics").content.decode()
    assert f'cmo_specialist_in_flight{{specialist="{name}"}} 1.0' in metrics
    assert f'cmo_specialist_held{{specialist="{name}"}} 1.0' in metrics
    assert f'cmo_specialist_dead_letters{{specialist="{name}"}} 1.0' in metrics

    letters_url = f"/admin/runs/specialist/{remote_specialist.pk}/dead-letters/"
    letters = client.get(letters_url).content.decode()
    assert "invalid envelope" in letters and "&#x27;schema_version&#x27; is a required property" in letters
    dead_id = t.dead_letters(name)[0]["id"]
    response = client.post(letters_url, {"id": [dead_id]})
    assert response.status_code == 302
    assert t.stats(name)["dlq"] == 0
    assert t.stats(name)["depth"] == 3  # the re-driven message is back on the stream (and invalid again)

    detail = client.get(f"/admin/runs/specialist/{remote_specialist.pk}/change/").content.decode()
    assert "1 in flight, 1 held over the cap" in detail


def test_a_viewer_cannot_open_the_dead_letters_page(remote_specialist: Specialist) -> None:
    staff = User.objects.create_user("staffer", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(f"/admin/runs/specialist/{remote_specialist.pk}/dead-letters/").status_code == 403
    assert (
        client.post(f"/admin/runs/specialist/{remote_specialist.pk}/dead-letters/", {"id": ["1-0"]}).status_code == 403
    )
