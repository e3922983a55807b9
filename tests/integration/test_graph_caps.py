"""A per-graph cap: never more than N runs of the graph RUNNING, and they start in submission order."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from runs.models import GraphLimit, Run, RunEvent
from runs.selectors import caps_waiting
from runs.services.runs import run_start
from tests.fixtures.counting_server import CountingServer
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]


def test_a_cap_of_5_holds_across_two_workers_and_runs_start_in_submission_order(
    postgres_db: None, redis_url: str
) -> None:
    GraphLimit.objects.create(graph_name="t-http", max_running=5)
    peak = 0
    most_waiting = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak, most_waiting
        while not stop.is_set():
            running = Run.objects.filter(graph__name="t-http", status="RUNNING").count()
            peak = max(peak, running)
            most_waiting = max(most_waiting, caps_waiting().get("t-http", 0))
            time.sleep(0.02)
        connection.close()

    with CountingServer(delay=0.2) as server:
        runs = [run_start(graph_name="t-http", data={"url": server.url, "calls": 2}) for _ in range(20)]
        assert caps_waiting() == {}  # nothing in flight yet: no cap is full
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with worker("--concurrency", "8", "--poll", "0.2") as a, worker("--concurrency", "8", "--poll", "0.2") as b:
                done = wait_for(
                    lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="COMPLETED").count() == 20,
                    timeout=120,
                )
                assert done, a.output[-3000:] + b.output[-3000:]
        finally:
            stop.set()
            watcher.join()
    assert 1 <= peak <= 5, peak
    assert most_waiting > 0  # runs over the cap were visibly waiting
    started = list(
        RunEvent.objects.filter(run__in=runs, kind="status", to_status="RUNNING")
        .order_by("id")
        .values_list("run_id", flat=True)
    )
    assert started == [r.pk for r in runs]
