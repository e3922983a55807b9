"""Start real worker processes the way the README does, against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# Set once a test started a process that talks to the test database.
SPAWNED: list[int] = []


def child_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


class ManagedProcess:
    """A ``manage.py`` subprocess whose output is collected for assertions and failure messages."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, ready: str | None = None):
        self.args = args
        # Children run as in production, with a connection pool (the test process itself runs without one).
        self.env = {
            **os.environ,
            "CMO_GRAPH_MODULES": "runs.demo,tests.graphs",
            "PYTHONUNBUFFERED": "1",
            "CMO_DB_POOL_SIZE": os.environ.get("CMO_CHILD_DB_POOL_SIZE", "8"),
            **(env or {}),
        }
        self.ready = ready
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> ManagedProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *self.args],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        SPAWNED.append(self.proc.pid)
        threading.Thread(target=self._pump, daemon=True).start()
        if self.ready and not self._ready.wait(timeout):
            self.stop()
            raise AssertionError(f"{self.args} did not become ready:\n{self.output}")
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self.ready and self.ready in line:
                self._ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """kill -9: no cleanup, no lease release."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def worker(*extra: str, env: dict[str, str] | None = None) -> ManagedProcess:
    return ManagedProcess(
        "cmo_worker", *extra, env={"DATABASE_URL": child_database_url(), **(env or {})}, ready="runner threads"
    )


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
