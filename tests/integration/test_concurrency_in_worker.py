"""Many runs in flight per worker: slow I/O overlaps, long runs do not starve short ones."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from runs.models import Activity, Run
from runs.services.runs import run_start
from tests.fixtures.counting_server import CountingServer
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]


def _connections_to_test_db() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cur.fetchone()[0])


def test_100_runs_of_one_slow_http_call_overlap_across_2_workers_at_concurrency_50(
    postgres_db: None, redis_url: str
) -> None:
    with CountingServer(delay=1.0) as server:
        with worker("--concurrency", "50", "--poll", "0.2") as a, worker("--concurrency", "50", "--poll", "0.2") as b:
            started = time.monotonic()
            runs = [run_start(graph_name="t-http", data={"url": server.url, "calls": 1}) for _ in range(100)]
            peak = 0

            def all_done() -> bool:
                nonlocal peak
                peak = max(peak, _connections_to_test_db())
                return not Run.objects.filter(pk__in=[r.pk for r in runs]).exclude(status="COMPLETED").exists()

            assert wait_for(all_done, timeout=60, interval=0.2), a.output[-2000:] + b.output[-2000:]
            elapsed = time.monotonic() - started
    print(f"\n100 runs x 1 s HTTP on 2 workers x 50: {elapsed:.1f} s wall; peak database sessions {peak}")
    assert server.count("/count") == 100
    assert server.duplicates("/count") == {}
    assert Activity.objects.filter(run__in=runs, type="http").count() == 100
    # Pooled connections: 100 runs in flight did not hold 100 database sessions.
    assert peak < 50


def test_short_runs_submitted_after_a_2000_step_run_finish_while_it_is_still_going(
    postgres_db: None, redis_url: str
) -> None:
    with worker("--concurrency", "1", "--poll", "0.2") as proc:
        long_run = run_start(graph_name="t-grow", data={"kb": 1, "steps": 2000})
        assert wait_for(lambda: Run.objects.get(pk=long_run.pk).step_index > 0, timeout=30), proc.output
        short = [run_start(graph_name="t-count", data={"target": 3}) for _ in range(20)]
        ids = [r.pk for r in short]
        assert wait_for(lambda: Run.objects.filter(pk__in=ids, status="COMPLETED").count() == 20, timeout=120), (
            proc.output[-3000:]
        )
        long_run.refresh_from_db()
        assert long_run.status == "RUNNING", "the long run should still be going"
        assert long_run.step_index < 2000
        # The long run yielded its slot between slices; one worker kept it, so it was never "resumed".
        assert not long_run.events.filter(kind="resumed").exists()


def test_a_worker_reports_its_runs_in_flight_and_leaves_no_heartbeat_when_it_stops(
    postgres_db: None, redis_url: str, tmp_path
) -> None:
    from runs.selectors import queue_depth, workers_alive

    marker = tmp_path / "go"
    with worker("--concurrency", "2", "--poll", "0.2") as proc:
        runs = [run_start(graph_name="t-abort", data={"marker": str(marker), "target": 1}) for _ in range(3)]
        # Two runs in flight (they wait on the marker), one queued behind them.
        assert wait_for(lambda: any(w.in_flight == 2 for w in workers_alive()), timeout=20), proc.output
        assert queue_depth() == 1
        (status,) = [w for w in workers_alive() if w.owner.split(":")[1] == str(proc.pid)]
        assert status.concurrency == 2
        marker.write_text("go")
        assert wait_for(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="COMPLETED").count() == 3)
    assert workers_alive() == []
