"""A real ``cmo_scheduler`` keeps sweeping after its database connection is lost.

The scheduler's connections are found in pg_stat_activity by their
application_name, which the child gets from libpq's PGAPPNAME variable.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from runs.engine.executor import Outcome
from runs.models import Run, RunEvent
from runs.services.runs import run_start
from tests.helpers import execute
from tests.integration.processes import ManagedProcess, child_database_url, wait_for

pytestmark = [pytest.mark.integration]

APP_NAME = "cmo-ops-test-scheduler"


def _scheduler() -> ManagedProcess:
    return ManagedProcess(
        "cmo_scheduler",
        "--interval",
        "0.2",
        env={"DATABASE_URL": child_database_url(), "PGAPPNAME": APP_NAME},
        ready="using database",
    )


def _scheduler_backends() -> list[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        return [pid for (pid,) in cur.fetchall()]


def _terminate_scheduler_backends() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0


def _overdue_run(*, served: bool = False) -> int:
    """A run waiting on a signal and past its deadline: only a scheduler's sweep moves it (to TIMED_OUT).

    ``served``: cmo_serve's own worker runs it to its wait, rather than this test.
    """
    run = run_start(graph_name="t-signal", data={"target": 1})
    if served:
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "WAITING", timeout=20)
    else:
        assert execute(run) is Outcome.SUSPENDED
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    return run.pk


def _timed_out_by_scheduler(run_id: int) -> bool:
    try:
        return RunEvent.objects.filter(run_id=run_id, to_status="TIMED_OUT", actor="scheduler").exists()
    except Exception:  # noqa: BLE001 - the test's own connection may be the one that broke
        connection.close()
        return False


def _assert_survived(scheduler: ManagedProcess) -> None:
    assert scheduler.proc is not None and scheduler.proc.poll() is None, f"the scheduler exited:\n{scheduler.output}"
    assert "Traceback" not in scheduler.output, scheduler.output
    warnings = [line for line in scheduler.lines if "scheduler lost the database" in line]
    assert warnings, scheduler.output
    assert all("reconnecting in" in line for line in warnings), warnings


def test_the_scheduler_keeps_sweeping_after_its_database_backend_is_terminated(postgres_db: None) -> None:
    with _scheduler() as scheduler:
        before = _overdue_run()
        assert wait_for(lambda: _timed_out_by_scheduler(before), timeout=20), scheduler.output
        assert wait_for(lambda: bool(_scheduler_backends()), timeout=20), "no scheduler connection in pg_stat_activity"

        assert _terminate_scheduler_backends() >= 1
        after = _overdue_run()

        assert wait_for(lambda: _timed_out_by_scheduler(after), timeout=30), scheduler.output
        _assert_survived(scheduler)


def test_the_scheduler_inside_cmo_serve_keeps_sweeping_after_its_database_backend_is_terminated(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A 60 s poll keeps the runner threads off the database, so the sweep (every 0.2 s) is
    # what meets the terminated connections first; runs still reach them through Redis.
    env = {
        "DATABASE_URL": child_database_url(),
        "PGAPPNAME": APP_NAME,
        "CMO_SWEEP_SECONDS": "0.2",
        "CMO_POLL_SECONDS": "60",
        "CMO_VAR_DIR": str(tmp_path),
    }
    serve = ManagedProcess("cmo_serve", "--port", str(port), env=env, ready="CMO is serving").start(timeout=60)
    try:
        before = _overdue_run(served=True)
        assert wait_for(lambda: _timed_out_by_scheduler(before), timeout=20), serve.output

        assert _terminate_scheduler_backends() >= 1
        assert wait_for(lambda: "scheduler lost the database" in serve.output, timeout=20), serve.output
        after = _overdue_run(served=True)

        assert wait_for(lambda: _timed_out_by_scheduler(after), timeout=30), serve.output
        assert serve.proc is not None and serve.proc.poll() is None, f"cmo_serve exited:\n{serve.output}"
        # The runner threads in the same process log their own retries; the scheduler writes one warning.
        assert "scheduler sweep failed" not in serve.output, serve.output
        lost = [line for line in serve.lines if "scheduler lost the database" in line]
        assert all(" WARNING " in line and "reconnecting in" in line for line in lost), lost
    finally:
        serve.stop()


def _pg_restart() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_the_scheduler_keeps_sweeping_across_a_postgresql_restart(postgres_db: None) -> None:
    with _scheduler() as scheduler:
        before = _overdue_run()
        assert wait_for(lambda: _timed_out_by_scheduler(before), timeout=20), scheduler.output

        _pg_restart()
        connection.close()
        created: list[int] = []

        def create() -> bool:
            try:
                created.append(_overdue_run())
            except Exception:  # noqa: BLE001 - PostgreSQL may still be starting
                connection.close()
                return False
            return True

        assert wait_for(create, timeout=60, interval=0.5)
        assert wait_for(lambda: _timed_out_by_scheduler(created[0]), timeout=60, interval=0.5), scheduler.output
        _assert_survived(scheduler)
