"""1,000 runs suspended on an answer hold no worker; recording the answers completes them all."""

from __future__ import annotations

import pytest

from runs.models import Run
from runs.services.runs import run_start
from runs.services.signals import run_signal
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

N = 1000


def test_a_thousand_waiting_runs_hold_no_worker_and_all_resume(postgres_db: None, redis_url: str) -> None:
    with worker("--concurrency", "4", "--poll", "0.5") as proc:
        runs = [run_start(graph_name="t-signal", data={"target": 1}) for _ in range(N)]
        ids = [r.pk for r in runs]
        assert wait_for(lambda: Run.objects.filter(pk__in=ids, status="WAITING").count() == N, timeout=240), (
            proc.output[-3000:]
        )
        assert not Run.objects.filter(pk__in=ids).exclude(lease_owner="").exists()
        for run in runs:
            run_signal(run=run, name="go", payload={"n": run.pk}, actor="test")
        assert wait_for(lambda: Run.objects.filter(pk__in=ids, status="COMPLETED").count() == N, timeout=240), (
            proc.output[-3000:]
        )
    for run in Run.objects.filter(pk__in=ids):
        assert run.state["answer"] == {"n": run.pk}
        # `now` before the wait was recorded once and replayed on resumption, not re-executed.
        assert run.activities.filter(type="now").count() == 1
