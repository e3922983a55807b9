"""Two workers, 200 concurrent 20-step runs: all complete, no step duplicated or skipped, one executor per run."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db.models import Count, Max, Min

from runs.models import Run, RunEvent, Step
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]


def test_two_workers_complete_200_runs_of_20_steps_each_exactly_once(postgres_db: None, redis_url: str) -> None:
    with worker("--concurrency", "4", "--poll", "0.5") as a, worker("--concurrency", "4", "--poll", "0.5") as b:
        runs = [run_start(graph_name="t-count", data={"target": 20}) for _ in range(200)]
        done = wait_for(lambda: not Run.objects.exclude(status__in=["COMPLETED", "FAILED"]).exists(), timeout=240)
        assert done, a.output[-3000:] + b.output[-3000:]
    ids = [r.pk for r in runs]
    assert Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"COMPLETED": 200}
    per_run = (
        Step.objects.filter(run_id__in=ids).values("run_id").annotate(n=Count("id"), lo=Min("index"), hi=Max("index"))
    )
    assert all(r["n"] == 20 and r["lo"] == 0 and r["hi"] == 19 for r in per_run)
    assert len(per_run) == 200
    # One executor per run: each run started once and was never resumed by another worker.
    started = RunEvent.objects.filter(run_id__in=ids, kind="status", to_status="RUNNING")
    assert started.count() == 200
    assert not RunEvent.objects.filter(run_id__in=ids, kind="resumed").exists()
    workers = Counter(e.detail["worker"].split(":")[1] for e in started)
    assert set(workers) == {str(a.pid), str(b.pid)}, workers
