"""Workers survive a PostgreSQL restart and a Redis restart in the middle of a batch of runs.

These restart the machine's real services (as root, with the commands the
machine documents); they run last in the suite's integration folder.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest
from django.db import connection

from runs.models import Run
from runs.services.runs import run_start
from tests.fixtures.counting_server import CountingServer
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

RUNS = 30
CALLS = 10


def _pg_restart() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _redis_restart(down_seconds: float) -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True, timeout=30)
    time.sleep(down_seconds)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert wait_for(
        lambda: (
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True).stdout.strip()
            == "PONG"
        ),
        timeout=30,
    )


def _all_completed(ids: list[int]) -> bool:
    try:
        return not Run.objects.filter(pk__in=ids).exclude(status="COMPLETED").exists()
    except Exception:  # noqa: BLE001 - the test's own connection may be the one that broke
        connection.close()
        return False


def _statuses(ids: list[int]) -> str:
    connection.close()
    counts = Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True))
    errors = list(Run.objects.filter(pk__in=ids).exclude(error="").values_list("error", flat=True)[:5])
    return f"{counts} {errors}"


def test_runs_complete_across_a_postgresql_restart(postgres_db: None, redis_url: str) -> None:
    with (
        CountingServer(delay=0.05) as server,
        worker("--poll", "0.3", "--lease", "5") as a,
        worker("--poll", "0.3", "--lease", "5") as b,
    ):
        ids = [run_start(graph_name="t-http", data={"url": server.url, "calls": CALLS}).pk for _ in range(RUNS)]
        assert server.wait_for(RUNS * CALLS // 4, path="/count", timeout=60)
        _pg_restart()
        connection.close()
        done = wait_for(lambda: _all_completed(ids), timeout=180, interval=0.5)
        assert done, f"{_statuses(ids)}\n{a.output[-3000:]}\n{b.output[-3000:]}"
        assert a.proc.poll() is None and b.proc.poll() is None, "a worker died on the restart"
    # At most the one request in flight per run when its step was abandoned was sent twice.
    per_run = Counter(key.split(":")[0] for (_, key) in server.duplicates("/count") if key)
    assert all(n <= 1 for n in per_run.values()), per_run


def test_runs_complete_across_a_redis_restart_by_polling_the_database(postgres_db: None, redis_url: str) -> None:
    with CountingServer(delay=0.05) as server, worker("--poll", "0.3") as a:
        ids = [run_start(graph_name="t-http", data={"url": server.url, "calls": CALLS}).pk for _ in range(RUNS)]
        assert server.wait_for(RUNS * CALLS // 4, path="/count", timeout=60)
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True, timeout=30)
        # While Redis is down, submissions still succeed and runs progress by database polling.
        more = [run_start(graph_name="t-http", data={"url": server.url, "calls": 2}).pk for _ in range(5)]
        progressed = server.count("/count")
        time.sleep(3)
        assert server.count("/count") > progressed, "no progress while Redis was down"
        _redis_restart(0)
        done = wait_for(lambda: _all_completed(ids + more), timeout=180, interval=0.5)
        assert done, f"{_statuses(ids + more)}\n{a.output[-3000:]}"
        assert a.proc.poll() is None, "the worker died on the restart"
        # After the restart the worker listens again: a new run starts at once, not at the next poll.
    with worker("--poll", "60") as b:
        run = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=20), b.output
