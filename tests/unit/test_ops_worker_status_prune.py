"""The scheduler removes the heartbeat rows of workers that stopped beating (a crash leaves its row behind)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from runs.models import WorkerStatus
from runs.scheduler import WORKER_STATUS_STALE_SECONDS, SchedulerLoop, worker_status_prune
from runs.services.leases import worker_heartbeat
from runs.worker.host import HEARTBEAT_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)


def _row(owner: str, *, seen_seconds_ago: float) -> None:
    now = timezone.now()
    WorkerStatus.objects.create(
        owner=owner,
        concurrency=4,
        in_flight=0,
        started_at=now - dt.timedelta(hours=1),
        last_seen_at=now - dt.timedelta(seconds=seen_seconds_ago),
    )


def test_the_bound_is_well_past_missed_heartbeats_and_the_dashboards_30_s() -> None:
    assert WORKER_STATUS_STALE_SECONDS >= 10 * HEARTBEAT_SECONDS and WORKER_STATUS_STALE_SECONDS > 30


def test_a_scheduler_round_deletes_rows_not_seen_for_ten_heartbeats_and_keeps_the_rest() -> None:
    _row("crashed", seen_seconds_ago=WORKER_STATUS_STALE_SECONDS + 5)
    _row("slow-beat", seen_seconds_ago=WORKER_STATUS_STALE_SECONDS - 5)
    _row("live", seen_seconds_ago=0)

    result = SchedulerLoop.sweep_round()

    assert result["workers_pruned"] == 1
    assert set(WorkerStatus.objects.values_list("owner", flat=True)) == {"slow-beat", "live"}


def test_the_once_command_prunes_too() -> None:
    _row("crashed", seen_seconds_ago=3600)
    call_command("cmo_scheduler", "--once", stdout=io.StringIO())
    assert not WorkerStatus.objects.exists()


def test_a_live_worker_whose_row_was_pruned_recreates_it_with_its_next_heartbeat() -> None:
    started = timezone.now() - dt.timedelta(minutes=5)
    worker_heartbeat(owner="stalled", concurrency=2, in_flight=1, started_at=started)
    assert worker_status_prune(now=timezone.now() + dt.timedelta(seconds=WORKER_STATUS_STALE_SECONDS + 1)) == 1
    assert not WorkerStatus.objects.exists()

    worker_heartbeat(owner="stalled", concurrency=2, in_flight=1, started_at=started)

    row = WorkerStatus.objects.get(owner="stalled")
    assert (row.concurrency, row.in_flight, row.started_at) == (2, 1, started)
