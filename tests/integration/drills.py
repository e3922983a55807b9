"""Helpers for the disaster drills (tests/integration/test_disaster_drills.py): dump, restore and query a
PostgreSQL database beside the test database, run one-off ``manage.py`` commands against it, and flush the
drill's own Redis database.

Everything here acts on names the drill chose (its test database, a restored copy with a unique name, the
Redis database index of REDIS_URL); nothing touches another database or another Redis index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import redis
from django.db import connection

from tests.integration.processes import ROOT, SPAWNED, ManagedProcess

# The graphs the drills' processes load (the approval graphs live in their own module).
GRAPH_MODULES = "runs.demo,tests.graphs,tests.graphs_approvals"


@dataclass(frozen=True)
class Server:
    """The PostgreSQL server the test database lives on (from Django's connection settings)."""

    host: str
    port: int
    user: str

    @classmethod
    def of_test_database(cls) -> Server:
        s = connection.settings_dict
        return cls(host=s.get("HOST") or "127.0.0.1", port=int(s.get("PORT") or 5432), user=s.get("USER") or "postgres")

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True)

    def client_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]


def start_together(procs: Sequence[ManagedProcess], timeout: float = 60.0) -> None:
    """Start every process at once and wait until all are ready (a restored installation comes up as a set)."""
    errors: list[BaseException] = []

    def start(proc: ManagedProcess) -> None:
        try:
            proc.start(timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(proc,)) for proc in procs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for proc in procs:
            proc.stop()
        raise errors[0]


def pg_restart() -> None:
    """Restart the machine's PostgreSQL cluster, as tests/integration/test_service_restarts.py does (as root)."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def unique_database_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_database(server: Server, name: str) -> None:
    with server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server: Server, name: str) -> None:
    """Drop ``name`` (ending its sessions: the drill's own workers may have left some)."""
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(server: Server, name: str) -> bool:
    with server.connect() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def pg_dump(server: Server, dbname: str, path: Path) -> float:
    """``pg_dump -Fc`` of ``dbname`` into ``path``; the wall-clock time (epoch seconds) it started.

    pg_dump reads one consistent snapshot taken as it starts, so what the dump holds is the database as of
    (about) that moment, whatever commits while it runs.
    """
    started = time.time()
    subprocess.run(
        ["pg_dump", *server.client_args(), "--format=custom", "--file", str(path), dbname],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return started


def pg_restore(server: Server, path: Path, dbname: str) -> None:
    """Restore a custom-format dump into the (empty, existing) database ``dbname``."""
    subprocess.run(
        ["pg_restore", *server.client_args(), "--no-owner", "--exit-on-error", "--dbname", dbname, str(path)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def rows(server: Server, dbname: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with server.connect(dbname) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(server: Server, dbname: str, sql: str, params: Sequence[Any] = ()) -> Any:
    found = rows(server, dbname, sql, params)
    return found[0][0] if found else None


def manage(*args: str, database_url: str, timeout: float = 60.0) -> str:
    """Run a one-off ``manage.py`` command against ``database_url``; its output (it must exit 0)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CMO_GRAPH_MODULES": GRAPH_MODULES,
        "CMO_DB_POOL_SIZE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    SPAWNED.append(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"manage.py {args[0]} timed out:\n{out}") from None
    if proc.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} exited {proc.returncode}:\n{out}")
    return out


def django_shell(code: str, *, database_url: str, timeout: float = 60.0) -> str:
    """Run Python ``code`` in ``manage.py shell`` against ``database_url`` (the services, on another database)."""
    return manage("shell", "-c", code, database_url=database_url, timeout=timeout)


def redis_db_index(url: str) -> int:
    path = urlparse(url).path.strip("/")
    return int(path) if path else 0


def redis_flush_own_db(url: str) -> int:
    """FLUSHDB on REDIS_URL's own database index (never FLUSHALL); how many keys it held.

    Refuses database 0, the index every other user of the machine's Redis gets by default: the drill
    needs a database of its own (e.g. redis://127.0.0.1:6379/11).
    """
    index = redis_db_index(url)
    if index == 0:
        raise AssertionError(f"the drill flushes REDIS_URL's database; give it one of its own, not 0 ({url})")
    client = redis.Redis.from_url(url)
    try:
        keys = int(client.dbsize())
        client.flushdb()
        return keys
    finally:
        client.close()


@contextmanager
def restored_database(server: Server, dump: Path, prefix: str) -> Iterator[tuple[str, float, float]]:
    """Create a fresh database with a unique name, restore ``dump`` into it, and drop it afterwards.

    Yields (name, when the restore started, when it finished), in epoch seconds.
    """
    name = unique_database_name(prefix)
    started = time.time()
    create_database(server, name)
    try:
        pg_restore(server, dump, name)
        yield name, started, time.time()
    finally:
        drop_database(server, name)
