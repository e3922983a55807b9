"""The scheduler's sweep: wake-ups for runnable runs, timeouts for overdue ones."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from runs.engine.executor import Outcome
from runs.models import Run
from runs.scheduler import sweep
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


def _drain() -> list[dict]:
    layer = get_channel_layer()
    received = []

    async def take() -> None:
        import asyncio

        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(settings.CMO_WORKER_CHANNEL), 0.05))
            except TimeoutError:
                return

    async_to_sync(take)()
    return received


def test_new_orphaned_and_backed_off_runs_are_woken_and_nothing_else() -> None:
    _drain()
    new = run_start(graph_name="t-count", data={"target": 1})
    orphan = run_start(graph_name="t-count", data={"target": 1})
    Run.objects.filter(pk=orphan.pk).update(
        status="RUNNING", lease_owner="dead-worker", lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    leased = run_start(graph_name="t-count", data={"target": 1})
    Run.objects.filter(pk=leased.pk).update(
        status="RUNNING", lease_owner="live-worker", lease_expires_at=timezone.now() + dt.timedelta(seconds=60)
    )
    backing_off = run_start(graph_name="t-count", data={"target": 1})
    Run.objects.filter(pk=backing_off.pk).update(not_before=timezone.now() + dt.timedelta(seconds=60))
    done = run_start(graph_name="t-count", data={"target": 1})
    execute(done)
    _drain()

    result = sweep()
    woken = {m["run_id"] for m in _drain()}
    assert woken == {new.pk, orphan.pk}
    assert result["woken"] == 2 and result["timed_out"] == 0 and result["approvals_expired"] == 0
    assert result["spawned_settled"] == 0


def test_overdue_waiting_and_pending_runs_time_out_but_leased_ones_are_left_to_their_worker() -> None:
    waiting = run_start(graph_name="t-signal", data={"target": 1})
    assert execute(waiting) is Outcome.SUSPENDED
    pending = run_start(graph_name="t-count", data={"target": 1})
    leased = run_start(graph_name="t-count", data={"target": 1})
    past = timezone.now() - dt.timedelta(seconds=1)
    Run.objects.filter(pk__in=[waiting.pk, pending.pk, leased.pk]).update(deadline_at=past)
    Run.objects.filter(pk=leased.pk).update(
        status="RUNNING", lease_owner="live", lease_expires_at=timezone.now() + dt.timedelta(seconds=60)
    )
    call_command("cmo_scheduler", "--once", stdout=io.StringIO())
    statuses = dict(Run.objects.filter(pk__in=[waiting.pk, pending.pk, leased.pk]).values_list("pk", "status"))
    assert statuses == {waiting.pk: "TIMED_OUT", pending.pk: "TIMED_OUT", leased.pk: "RUNNING"}
    assert Run.objects.get(pk=waiting.pk).events.filter(to_status="TIMED_OUT", actor="scheduler").exists()
