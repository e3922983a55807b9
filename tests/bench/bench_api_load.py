"""API load: concurrent clients start runs and poll them, against daphne and 2 workers on PostgreSQL + Redis.

``python -m tests.bench.bench_api_load [--clients 50] [--seconds 60]``. Each
client loops: POST /api/runs (a 5-step graph), then GET /api/runs/{trace_id}
every 0.2 s until the run has ended. Prints the latency of start and get
(median, p95), runs finished and the error rate (any non-2xx answer or failed
request is an error). It asserts nothing; it prints figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bench.common import describe, header, setup_database

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
POLL_SECONDS = 0.2


@dataclass
class Tally:
    start_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    finished: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_until_up(base: str, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"daphne did not answer at {base} within {timeout} s")


def _client(base: str, token: str, until: float, tally: Tally) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30.0) as http:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                started = http.post("/api/runs", json={"graph": "t-count", "input": {"target": 5}})
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.errors.append(f"start: {exc!r}")
                continue
            with tally.lock:
                tally.start_ms.append((time.perf_counter() - t0) * 1000)
            if started.status_code != 201:
                with tally.lock:
                    tally.errors.append(f"start: {started.status_code} {started.text[:200]}")
                continue
            trace = started.json()["trace_id"]
            while time.monotonic() < until:
                time.sleep(POLL_SECONDS)
                t0 = time.perf_counter()
                try:
                    got = http.get(f"/api/runs/{trace}")
                except httpx.HTTPError as exc:
                    with tally.lock:
                        tally.errors.append(f"get: {exc!r}")
                    continue
                with tally.lock:
                    tally.get_ms.append((time.perf_counter() - t0) * 1000)
                if got.status_code != 200:
                    with tally.lock:
                        tally.errors.append(f"get: {got.status_code} {got.text[:200]}")
                    continue
                if got.json()["terminal"]:
                    with tally.lock:
                        tally.finished += 1
                    break


def main(url: str, clients: int = 50, seconds: float = 60.0) -> None:
    from django.contrib.auth.models import Group, User
    from django.db.models import Count

    from cmo_site.shared.tokens import api_token_create
    from runs.models import Run
    from runs.services.graphs import graph_sync_all

    graph_sync_all()
    user, _ = User.objects.get_or_create(username="load")
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    _, token = api_token_create(user=user, role="operator", name="load test")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "CMO_GRAPH_MODULES": "runs.demo,tests.graphs",
        "CMO_LOG_LEVEL": "WARNING",
    }
    web = _spawn([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cmo_site.asgi:application"], env)
    workers = [_spawn([sys.executable, "manage.py", "cmo_worker", "--poll", "0.5"], env) for _ in range(WORKERS)]
    try:
        _wait_until_up(base, token)
        header(f"API load: {clients} clients for {seconds:.0f} s, daphne + {WORKERS} workers, PostgreSQL + Redis")
        tally = Tally()
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(base, token, until, tally)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in [web, *workers]:
            p.terminate()
        for p in [web, *workers]:
            p.wait(30)
    requests = len(tally.start_ms) + len(tally.get_ms) + len(tally.errors)
    print(f"start (POST /api/runs):        {describe(tally.start_ms) if tally.start_ms else 'none'}")
    print(f"get   (GET /api/runs/{{id}}):   {describe(tally.get_ms) if tally.get_ms else 'none'}")
    print(f"runs started {len(tally.start_ms)}, seen finished {tally.finished}; requests {requests}")
    print(f"errors {len(tally.errors)} ({100 * len(tally.errors) / max(requests, 1):.2f} %)")
    for line in tally.errors[:5]:
        print(f"  {line}")
    by_status = Run.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
    print(f"runs in the database by status: {dict(by_status)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run")
    options = parser.parse_args()
    main(setup_database(), clients=options.clients, seconds=options.seconds)
