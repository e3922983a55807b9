"""With real processes: a killed worker's heartbeat row is removed by the scheduler; a live worker's comes back.

Ten heartbeats (50 s) are not waited out: the rows' last_seen_at is moved back instead.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from runs.models import WorkerStatus
from runs.scheduler import WORKER_STATUS_STALE_SECONDS
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]


def _owner_of(pid: int) -> str | None:
    return next((o for o in WorkerStatus.objects.values_list("owner", flat=True) if o.split(":")[1] == str(pid)), None)


def test_a_killed_workers_row_is_pruned_and_a_live_workers_pruned_row_is_recreated(
    postgres_db: None, redis_url: str
) -> None:
    with worker("--poll", "0.5") as live, worker("--poll", "0.5") as doomed:
        assert wait_for(lambda: _owner_of(live.pid) and _owner_of(doomed.pid), timeout=20), doomed.output
        dead_owner, live_owner = _owner_of(doomed.pid), _owner_of(live.pid)
        doomed.kill()
        long_ago = timezone.now() - dt.timedelta(seconds=WORKER_STATUS_STALE_SECONDS + 1)
        WorkerStatus.objects.update(last_seen_at=long_ago)

        scheduler = ManagedProcess(
            "cmo_scheduler", "--interval", "0.2", env={"DATABASE_URL": child_database_url()}, ready="using database"
        )
        with scheduler:
            assert wait_for(lambda: not WorkerStatus.objects.filter(owner=dead_owner).exists(), timeout=20), (
                scheduler.output
            )
            # Pruned with the dead row or beaten fresh just before: either way it is there and recent.
            recent = timezone.now() - dt.timedelta(seconds=WORKER_STATUS_STALE_SECONDS)
            fresh = WorkerStatus.objects.filter(owner=live_owner, last_seen_at__gt=recent)
            assert wait_for(fresh.exists, timeout=20), live.output
        assert live.proc is not None and live.proc.poll() is None
        assert not WorkerStatus.objects.filter(owner=dead_owner).exists()
