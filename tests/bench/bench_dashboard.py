"""Dashboard server time with 100,000 runs and one 1,000-step run (PostgreSQL).

Times the whole Django request in process (Client, signed in): the runs list's
first page, a filtered page, a deep keyset page, and the run page of the
1,000-step run. Target from the issue: median at most 150 ms each.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

N_RUNS = 100_000
REPEAT = 15


def _seed_runs() -> None:
    """100,000 runs through the ORM (so new columns keep their defaults), spread over about 28 hours."""
    from django.db import connection

    from runs.models import Run
    from runs.services.graphs import graph_resolve

    graphs = [graph_resolve(name="incident-healing"), graph_resolve(name="t-count")]
    statuses = ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "RUNNING", "WAITING"]
    batch = 5000
    for start in range(0, N_RUNS, batch):
        Run.objects.bulk_create(
            [
                Run(graph=graphs[i % 2], seed=i, status=statuses[i % 6], step_index=5, input={})
                for i in range(start, min(N_RUNS, start + batch))
            ]
        )
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE runs_run SET created_at = now() - (id || ' seconds')::interval, "
            "started_at = now() - (id || ' seconds')::interval, "
            "finished_at = now() - (id || ' seconds')::interval + interval '2 seconds'"
        )
        cur.execute("ANALYZE runs_run")


def _long_run() -> Any:
    from runs.engine.executor import Executor
    from runs.engine.plugins import NO_POLICY
    from runs.services.leases import run_claim
    from runs.services.run_store import DjangoCheckpointer
    from runs.services.runs import run_start

    run = run_start(graph_name="t-count", data={"target": 1000}, seed=1, run_timeout=3600)
    from runs.models import Run

    Run.objects.filter(pk=run.pk).update(max_steps=2000)
    assert run_claim(run_id=run.pk, owner="bench")
    executor = Executor(DjangoCheckpointer(owner="bench"), policy=NO_POLICY, sleep=lambda s: None)
    try:
        executor.run(run.pk)
    finally:
        executor.close()
    run.refresh_from_db()
    return run


def _time(client: Any, url: str) -> tuple[float, float]:
    samples = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    ordered = sorted(samples)
    return statistics.median(samples), ordered[int(0.95 * (len(ordered) - 1))]


def main(url: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from runs import selectors
    from runs.models import Run

    t0 = time.perf_counter()
    _seed_runs()
    run = _long_run()
    took = time.perf_counter() - t0
    print(f"dashboard: seeded {Run.objects.count()} runs and a {run.steps.count()}-step run in {took:.1f} s")
    user = User.objects.create_superuser("bench", password="bench-password-xyz")
    client = Client()
    client.force_login(user)
    deep = selectors.run_list(filters=selectors.RunFilters(), limit=5000).runs[-1]
    cases = {
        "runs list, first page": "/runs/",
        "runs list, filtered (FAILED, t-count)": "/runs/?status=FAILED&graph=t-count",
        "runs list, 100th page (keyset)": f"/runs/?c={selectors.encode_cursor(deep)}",
        "runs list, trace search": "/runs/?trace="
        + Run.objects.order_by("id").values_list("trace_id", flat=True)[500][:8],
        f"run page, {run.steps.count()} steps": f"/runs/{run.trace_id}/",
        "home": "/",
    }
    for name, target in cases.items():
        median, p95 = _time(client, target)
        print(f"dashboard: {name:42s} median {median:7.1f} ms  p95 {p95:7.1f} ms")
