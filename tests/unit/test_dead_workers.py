"""A dead worker's leases are released as soon as its heartbeat stops, not when the lease runs out; a live
worker's are never touched."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import tests.graphs  # noqa: F401 - t-count
from runs.models import Run, WorkerStatus
from runs.services import leases
from runs.services.leases import leases_release_dead, run_claim
from runs.services.runs import run_start

pytestmark = pytest.mark.django_db(transaction=True)


def _leased(owner: str) -> Run:
    run = run_start(graph_name="t-count", data={"target": 1}, seed=1)
    assert run_claim(run_id=run.pk, owner=owner)
    return run


def _beat(owner: str, seconds_ago: float) -> None:
    now = timezone.now()
    WorkerStatus.objects.create(
        owner=owner, concurrency=4, in_flight=1, started_at=now, last_seen_at=now - dt.timedelta(seconds=seconds_ago)
    )


def test_the_runs_of_a_worker_whose_heartbeat_stopped_are_released_and_a_live_workers_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leases, "_dead_checked", [0.0])
    dead, alive = _leased("dead-worker"), _leased("live-worker")
    _beat("dead-worker", 10)
    _beat("live-worker", 0.5)
    assert leases_release_dead() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.lease_owner == "dead-worker" and dead.lease_expires_at <= timezone.now()  # claimable now
    assert alive.lease_expires_at > timezone.now() + dt.timedelta(seconds=20)
    assert run_claim(run_id=dead.pk, owner="another-worker")  # taken over, counted as a crash
    dead.refresh_from_db()
    assert dead.lease_owner == "another-worker" and dead.crash_count == 1
    assert not run_claim(run_id=alive.pk, owner="another-worker")


def test_it_looks_at_most_twice_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "_dead_checked", [0.0])
    _leased("dead-worker")
    _beat("dead-worker", 10)
    assert leases_release_dead() == 1
    second = _leased("dead-worker-2")
    _beat("dead-worker-2", 10)
    assert leases_release_dead() == 0  # within DEAD_CHECK_SECONDS of the last look
    monkeypatch.setattr(leases, "_dead_checked", [0.0])
    assert leases_release_dead() == 1
    second.refresh_from_db()
    assert second.lease_expires_at <= timezone.now()


def test_a_heartbeat_is_one_update_and_recreates_a_pruned_row() -> None:
    start = timezone.now()
    leases.worker_heartbeat(owner="w", concurrency=2, in_flight=0, started_at=start)
    first = WorkerStatus.objects.get(owner="w").last_seen_at
    leases.worker_heartbeat(owner="w", concurrency=2, in_flight=1, started_at=start)
    row = WorkerStatus.objects.get(owner="w")
    assert row.in_flight == 1 and row.last_seen_at >= first
    WorkerStatus.objects.all().delete()
    leases.worker_heartbeat(owner="w", concurrency=2, in_flight=0, started_at=start)
    assert WorkerStatus.objects.filter(owner="w").exists()
