"""Composition on PostgreSQL + Redis: wide fan-outs, the cost of a branch step, and many waiting parents.

1. 100 branches, each one 1 s HTTP call, on 2 worker processes (50 runner threads each): wall time
   from the run's start to its end (the issue's bar: <= 3 s).
2. A branch step against a plain step, in this process (one runner, no network): N one-step runs
   against one run that fans out to N one-step branches; ms per slice and the ratio, per round.
3. A 1,000-branch dynamic fan-out on one worker: the time until all 1,000 branch rows exist (the
   fan-out step commits them at once), the time until the join ran, and the worker's peak RSS.
4. 1,000 parents each waiting on 5 children (6,000 waiting runs): the time to suspend them all,
   the leases they hold (0 is the point) and the worker's peak RSS.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import header, pct

ROOT = Path(__file__).resolve().parents[2]
MODULES = "runs.demo,tests.graphs,tests.graphs_composition"
ROUNDS = 5


def _workers(n: int, concurrency: int, url: str, pool: int = 8) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CMO_GRAPH_MODULES": MODULES,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "CMO_LOG_LEVEL": "WARNING",
        "CMO_DB_POOL_SIZE": str(pool),
    }
    args = ["cmo_worker", "--concurrency", str(concurrency), "--poll", "0.2"]
    procs = [subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
             for _ in range(n)]
    time.sleep(4)  # started and listening
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_ended(pk: int, timeout: float = 600) -> None:
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while not Run.objects.filter(pk=pk, status__in=["COMPLETED", "FAILED", "ABORTED", "TIMED_OUT"]).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {pk} did not end in {timeout} s")
        time.sleep(0.02)


def wide_http(url: str) -> None:
    from runs.models import Run
    from runs.services.runs import run_start
    from tests.fixtures.counting_server import CountingServer

    header("Composition 1: 100 branches x one 1 s HTTP call, 2 workers x 50 runner threads")
    seconds = []
    with CountingServer(delay=1.0) as server:
        procs = _workers(2, 50, url, pool=16)
        try:
            for _ in range(ROUNDS):
                Run.objects.all().delete()
                docs = [f"doc-{i}" for i in range(100)]
                started = time.monotonic()
                run = run_start(graph_name="c-dynamic", data={"docs": docs, "url": server.url})
                _wait_ended(run.pk)
                seconds.append(time.monotonic() - started)
                run.refresh_from_db()
                assert run.status == "COMPLETED" and len(run.state["summaries"]) == 100, run.error
        finally:
            _stop(procs)
    print(f"start to end: median {statistics.median(seconds):.2f} s, p95 {pct(seconds, 95):.2f} s "
          f"over {ROUNDS} rounds ({', '.join(f'{s:.2f}' for s in seconds)}); 100 calls in sequence would take 100 s")


def branch_step_cost(url: str) -> None:
    from runs.models import Run
    from runs.services.runs import run_start
    from tests.helpers import drain

    n = 300
    header(f"Composition 2: a branch step against a plain step, {n} each, one runner in this process")
    plain_ms, branch_ms, ratios = [], [], []
    for _ in range(ROUNDS):
        Run.objects.all().delete()
        for _ in range(n):
            run_start(graph_name="t-count", data={"target": 1})
        started = time.perf_counter()
        slices = drain()
        plain = (time.perf_counter() - started) * 1000 / slices
        Run.objects.all().delete()
        run_start(graph_name="c-dynamic", data={"docs": [str(i) for i in range(n)]})
        started = time.perf_counter()
        slices = drain()
        branch = (time.perf_counter() - started) * 1000 / n  # the parent's 2 slices are charged to the branches
        plain_ms.append(plain)
        branch_ms.append(branch)
        ratios.append(branch / plain)
    print(f"plain one-step run: median {statistics.median(plain_ms):.2f} ms per run, p95 {pct(plain_ms, 95):.2f}")
    print(f"one-step branch:    median {statistics.median(branch_ms):.2f} ms per branch, p95 {pct(branch_ms, 95):.2f}")
    print(f"branch / plain: median {statistics.median(ratios):.2f}x, p95 {pct(ratios, 95):.2f}x "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


def thousand_branches(url: str) -> None:
    from runs.models import Run
    from runs.services.runs import run_start

    header("Composition 3: a 1,000-branch dynamic fan-out, 1 worker x 8 runner threads")
    procs = _workers(1, 8, url)
    try:
        Run.objects.all().delete()
        started = time.monotonic()
        run = run_start(graph_name="c-dynamic", data={"docs": [str(i) for i in range(1000)], "limit": 100})
        while Run.objects.filter(spawned_by=run).count() < 1000:
            time.sleep(0.01)
        created = time.monotonic() - started
        _wait_ended(run.pk)
        ended = time.monotonic() - started
        rss = _peak_rss_mb(procs[0].pid)
        run.refresh_from_db()
        assert run.status == "COMPLETED" and run.state["count"] == 1000, run.error
        step = run.steps.get(index=0)
    finally:
        _stop(procs)
    print(f"all 1,000 branch rows exist {created:.2f} s after the start (the fan-out step itself: "
          f"{step.duration_ms:.0f} ms); the join ran {ended:.1f} s after the start; worker peak RSS {rss:.0f} MB")


def waiting_parents(url: str) -> None:
    from runs.models import Run
    from runs.services.runs import run_start

    header("Composition 4: 1,000 parents waiting on 5 children each, 1 worker x 4 runner threads")
    Run.objects.all().delete()
    parents = [run_start(graph_name="c-child", data={"graph": "c-signal", "targets": [1, 2, 3, 4, 5]}).pk
               for _ in range(1000)]
    procs = _workers(1, 4, url)
    try:
        started = time.monotonic()
        while Run.objects.filter(status__in=["PENDING", "RUNNING"]).exists():
            if time.monotonic() - started > 1200:
                raise RuntimeError("runs did not all suspend in 1200 s")
            time.sleep(0.25)
        suspended = time.monotonic() - started
        rss = _peak_rss_mb(procs[0].pid)
        waiting = Run.objects.filter(status="WAITING")
        leases = waiting.exclude(lease_owner="").count()
        parents_waiting = waiting.filter(pk__in=parents).count()
        total = waiting.count()
    finally:
        _stop(procs)
    print(f"{parents_waiting} parents and {total - parents_waiting} children WAITING after {suspended:.1f} s "
          f"({suspended * 1000 / 6000:.1f} ms per run suspended); leases held by waiting runs: {leases}; "
          f"worker peak RSS {rss:.0f} MB")


def main(url: str, parts: Any = None) -> None:
    os.environ["CMO_GRAPH_MODULES"] = MODULES
    import tests.graphs_composition  # noqa: F401 - this process starts and drains the runs too
    from runs.services.graphs import graph_sync_all
    from tests.bench.common import start_event_loop

    start_event_loop()
    graph_sync_all()
    for part in parts or (wide_http, branch_step_cost, thousand_branches, waiting_parents):
        part(url)
