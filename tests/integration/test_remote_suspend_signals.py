"""A remote send_a2a suspends through node code that catches Exception, and fails a node that swallows it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from runs.engine.executor import Outcome
from runs.models import Activity, Specialist
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = [pytest.mark.integration]


@pytest.fixture
def remote_specialist(postgres_db: None, redis_url: str) -> str:
    Specialist.objects.create(
        name="h-remote", transport=Specialist.TRANSPORT_REDIS, address="cmo:spec:h-remote",
        last_heartbeat_at=timezone.now(),
    )
    return "h-remote"


def test_except_exception_does_not_swallow_a_remote_specialist_wait(remote_specialist: str) -> None:
    run = run_start(graph_name="h-catch-exception", data={"wait": "a2a", "specialist": remote_specialist}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING" and Activity.objects.get(run=run).status == "pending"


def test_a_swallowed_remote_specialist_wait_fails_the_step(remote_specialist: str) -> None:
    run = run_start(graph_name="h-catch-everything", data={"wait": "a2a", "specialist": remote_specialist}, seed=1)
    assert execute(run) is Outcome.FAILED
    run.refresh_from_db()
    assert "send_a2a activity #0 is still waiting for an answer" in run.error
