"""A worker killed with -9 is noticed by its missing heartbeat: its runs resume on another worker within
seconds, not after the 30 s lease; a live worker busy with a slow step keeps its run. Real worker and
scheduler processes on PostgreSQL + Redis."""

from __future__ import annotations

import time

import pytest

from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]


def _scheduler() -> ManagedProcess:
    return ManagedProcess("cmo_scheduler", "--interval", "30", env={"DATABASE_URL": child_database_url()},
                          ready="using database")  # fmt: skip


def _holder(pk: int) -> str:
    return Run.objects.filter(pk=pk).values_list("lease_owner", flat=True).get()


def test_the_runs_of_a_killed_worker_resume_within_seconds_and_a_slow_live_worker_keeps_its_run(
    postgres_db: None, redis_url: str
) -> None:
    with _scheduler() as scheduler, worker("--poll", "0.2", "--concurrency", "2") as first:  # a 30 s lease
        slow = run_start(graph_name="t-slow", data={"sleep": 8}, seed=1)
        assert wait_for(lambda: _holder(slow.pk) != "", timeout=20), first.output
        owner = _holder(slow.pk)
        time.sleep(6)  # well past CMO_WORKER_DEAD_SECONDS while its step runs: a live worker keeps it
        slow.refresh_from_db()
        assert _holder(slow.pk) == owner, (slow.status, list(slow.events.values_list("kind", "message")))
        assert wait_for(lambda: Run.objects.filter(pk=slow.pk, status="COMPLETED").exists(), timeout=30)
        slow.refresh_from_db()
        assert slow.crash_count == 0 and not slow.events.filter(kind="resumed").exists()

        doomed = run_start(graph_name="t-slow", data={"sleep": 4}, seed=2)
        assert wait_for(lambda: _holder(doomed.pk) == owner, timeout=20), first.output
        with worker("--poll", "0.2", "--concurrency", "2") as second:
            first.kill()
            killed = time.monotonic()
            taken = wait_for(lambda: _holder(doomed.pk) not in ("", owner), timeout=25, interval=0.05)
            assert taken, scheduler.output + "\n" + second.output
            took = time.monotonic() - killed
            print(f"\nthe killed worker's run was taken over after {took:.2f} s (lease 30 s)")
            assert took < 15, took  # not the lease running out
            done = wait_for(lambda: Run.objects.filter(pk=doomed.pk, status="COMPLETED").exists(), timeout=30)
            doomed.refresh_from_db()
            assert done, (doomed.status, doomed.lease_owner, list(doomed.events.values_list("kind", "message")),
                          second.output)  # fmt: skip
    doomed.refresh_from_db()
    assert doomed.crash_count == 0  # reset by the step the second worker committed
    assert doomed.events.filter(kind="resumed").exists()
