"""Throughput of worker processes on 1,000 runs of a trivial 20-step graph (PostgreSQL + Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.db.models import Max, Min

from tests.bench.common import header

ROOT = Path(__file__).resolve().parents[2]
RUNS = 1000
STEPS = 20
# (worker processes, runner threads each); CMO_DB_POOL_SIZE (default 8) bounds sessions per worker.
CONFIGS = [(1, 1), (1, 8), (1, 32), (2, 1), (2, 8), (2, 32)]


def _workers(n: int, concurrency: int, url: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CMO_GRAPH_MODULES": "runs.demo,tests.graphs",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "CMO_LOG_LEVEL": "WARNING",
    }
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "cmo_worker", "--concurrency", str(concurrency), "--poll", "0.5"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def measure(workers: int, concurrency: int, url: str) -> dict[str, float]:
    from runs.models import Run, Step
    from runs.services.runs import run_start

    Run.objects.all().delete()
    runs = [run_start(graph_name="t-count", data={"target": STEPS}).pk for _ in range(RUNS)]
    procs = _workers(workers, concurrency, url)
    peak_connections = 0
    try:
        deadline = time.monotonic() + 600
        while Run.objects.filter(pk__in=runs).exclude(status="COMPLETED").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("runs did not complete in 600 s")
            peak_connections = max(peak_connections, _sessions() - 1)  # less this process's own
            time.sleep(0.25)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    span = Run.objects.filter(pk__in=runs).aggregate(start=Min("started_at"), end=Max("finished_at"))
    seconds = (span["end"] - span["start"]).total_seconds()
    steps = Step.objects.filter(run_id__in=runs).count()
    return {
        "seconds": seconds,
        "runs_per_s": RUNS / seconds,
        "steps_per_s": steps / seconds,
        "connections": peak_connections,
    }


def _sessions() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cur.fetchone()[0])


def main(url: str, configs: list[tuple[int, int]] | None = None) -> None:
    header(f"Throughput: {RUNS} runs x {STEPS} steps, worker processes on PostgreSQL + Redis")
    results = {}
    for workers, concurrency in configs or CONFIGS:
        r = measure(workers, concurrency, url)
        results[(workers, concurrency)] = r
        print(
            f"{workers} worker(s) x concurrency {concurrency:>2}: {r['seconds']:5.1f} s, "
            f"{r['runs_per_s']:4.0f} runs/s, {r['steps_per_s']:5.0f} durable steps/s, "
            f"peak database sessions {r['connections']}"
        )
    base = results.get((1, 1))
    if base:
        for (w, c), r in results.items():
            print(f"  {w} x {c} vs 1 x 1: {r['steps_per_s'] / base['steps_per_s']:.2f}x")
