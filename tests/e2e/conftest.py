"""E2E fixtures: `cmo_serve` (daphne + a worker, SQLite) in a child process per module, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing
from tests.integration.processes import ROOT, ManagedProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("CMO_CHROMIUM", "/usr/bin/chromium")
GRAPH_MODULES = "runs.demo,tests.graphs,tests.e2e.graphs_e2e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(var: Path, extra_env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Migrate and seed a SQLite database in ``var``, then run ``cmo_serve`` on it (``extra_env`` for both)."""
    if not Path(CHROMIUM).exists():
        service_missing(f"Chromium at {CHROMIUM}")
    env = {
        "CMO_VAR_DIR": str(var),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "CMO_GRAPH_MODULES": GRAPH_MODULES,
        "CMO_POLL_SECONDS": "0.2",
        **(extra_env or {}),
    }
    child_env = {**os.environ, **env}
    for command in (["migrate", "--noinput", "-v0"], ["cmo_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=child_env, check=True, capture_output=True
        )
    port = _free_port()
    proc = ManagedProcess("cmo_serve", "--port", str(port), env=env, ready="CMO is serving").start(timeout=60)
    try:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "var": var,
            "env": env,
            "passwords": {
                r: (var / f"{r}-password").read_text().strip() for r in ("admin", "operator", "viewer", "approver")
            },
            "proc": proc,
        }
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve(tmp_path_factory.mktemp("e2e-var")) as served:
        yield served


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()
