"""The Procfile as ``honcho start`` runs it, against PostgreSQL and Redis: a run completes through the
web, worker, scheduler and specialist processes, and SIGTERM stops them all cleanly, leases released."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from runs.engine import statemachine as sm
from runs.models import Run, SchedulerStatus, Specialist
from runs.services.runs import run_start
from tests.fixtures.counting_server import unused_port
from tests.integration.processes import ROOT, SPAWNED, child_database_url, wait_for

pytestmark = [pytest.mark.integration]
PROCESSES = ["web.1", "worker.1", "scheduler.1", "healer.1"]


class Honcho:
    """``honcho start`` on the repository's Procfile, as is, with its output collected."""

    def __init__(self, *, port: int, env: dict[str, str], env_file: Path):
        honcho = shutil.which("honcho", path=str(Path(sys.executable).parent))
        assert honcho, "honcho is not installed (pip install -r requirements-dev.txt)"
        self.proc = subprocess.Popen(
            # -e: an empty env file, so a developer's ./.env cannot point the processes elsewhere
            [honcho, "start", "--no-colour", "-p", str(port), "-e", str(env_file), "-f", str(ROOT / "Procfile")],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        SPAWNED.append(self.proc.pid)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-150:])

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def exit_codes(self) -> dict[str, str]:
        found = (re.search(r"system\s+\| (\S+) stopped \(rc=(-?\d+)\)", line) for line in list(self.lines))
        return {m.group(1): m.group(2) for m in found if m}

    def stop(self) -> None:
        """After a failure: SIGTERM (honcho SIGKILLs its children 5 s after the first one exits), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_honcho_runs_the_procfile_completes_a_run_and_stops_cleanly_on_sigterm(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    port = unused_port()
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": child_database_url(),
        "REDIS_URL": redis_url,
        "CMO_GRAPH_MODULES": "runs.demo,tests.graphs",
        "CMO_DB_POOL_SIZE": "4",
        "CMO_POLL_SECONDS": "0.5",
        "CMO_SWEEP_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    honcho = Honcho(port=port, env=env, env_file=env_file)
    try:
        ready = wait_for(
            lambda: (
                honcho.saw(r"worker\.1 .*running \d+ runner threads")
                and honcho.saw(r"healer\.1 .*specialist healer consuming")
                and honcho.saw(r"scheduler\.1 .*using database")
            ),
            timeout=30,
        )
        assert ready, honcho.output
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json() == {"status": "ok"}
        assert Specialist.objects.get(name="healer").transport == Specialist.TRANSPORT_REDIS

        # The demo incident: auto-approved, healed by the healer process over Redis Streams.
        run = run_start(graph_name="incident-healing", data={"service": "checkout", "symptom": "slow"}, seed=3)
        assert wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=20), honcho.output
        run.refresh_from_db()
        assert run.status == sm.COMPLETED, run.error
        assert run.events.filter(kind="status", to_status=sm.WAITING).exists()  # waited for the specialist
        assert run.events.filter(kind="answered").exists()
        assert wait_for(SchedulerStatus.objects.exists, timeout=10), honcho.output  # the scheduler's heartbeat

        # A run mid-step when SIGTERM arrives: its step finishes, then the worker lets go of it.
        marker = tmp_path / "go"
        held = run_start(graph_name="t-abort", data={"marker": str(marker), "max_wait": 20, "target": 2})
        assert wait_for(lambda: Run.objects.get(pk=held.pk).status == sm.RUNNING, timeout=15), honcho.output
        honcho.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: honcho.saw(r"sending SIGTERM to worker\.1"), timeout=5), honcho.output
        marker.write_text("go")
        code = honcho.proc.wait(30)
    finally:
        honcho.stop()

    assert honcho.exit_codes() == dict.fromkeys(PROCESSES, "0"), honcho.output
    assert code == 128 + signal.SIGTERM, honcho.output  # honcho's own status says it was told to stop
    assert not Run.objects.exclude(lease_owner="").exists(), honcho.output
    held.refresh_from_db()
    assert held.status == sm.RUNNING and held.step_index == 1  # the step in flight committed; no more ran
