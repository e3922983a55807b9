"""A run that kills every worker that executes it stops being claimed (hole 16), with real worker processes."""

from __future__ import annotations

import pytest

from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

ENV = {
    "CMO_GRAPH_MODULES": "runs.demo,tests.graphs,tests.graphs_holes",
    "CMO_MAX_CRASHES": "3",
    "CMO_CRASH_BACKOFF_SECONDS": "0.5",
}


def test_a_poison_run_fails_after_three_crashed_workers_and_the_others_finish(
    postgres_db: None, redis_url: str
) -> None:
    poison = run_start(graph_name="h-poison", data={"kill": True}, seed=1)
    deaths = 0
    for _ in range(6):
        proc = worker("--lease", "1", "--poll", "0.2", "--concurrency", "1", env=ENV).start()
        assert proc.proc is not None
        ended = wait_for(lambda p=proc.proc: p.poll() is not None, timeout=20)  # type: ignore[misc]
        if not ended:  # it lived: the run no longer kills anyone
            healthy = proc
            break
        deaths += 1
    else:
        raise AssertionError("every worker died: the poison run was claimed forever")
    try:  # the healthy worker is already running: stop it, do not start it again
        assert wait_for(lambda: Run.objects.get(pk=poison.pk).status == "FAILED", timeout=20), healthy.output
        fine = run_start(graph_name="h-poison", data={}, seed=1)
        assert wait_for(lambda: Run.objects.get(pk=fine.pk).status == "COMPLETED", timeout=20), healthy.output
    finally:
        healthy.stop()
    poison.refresh_from_db()
    assert deaths == 3, deaths
    assert "died or stalled 3 times in a row" in poison.error
    assert poison.events.filter(kind="crash_backoff").count() == 1
