"""kill -9 a worker mid-run: another worker finishes the runs and no completed activity runs twice."""

from __future__ import annotations

from collections import Counter

import pytest

from runs.models import Activity, Run, Step
from runs.services.runs import run_start
from tests.fixtures.counting_server import CountingServer
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

RUNS = 20
CALLS = 8


def test_it_resumes_after_a_worker_is_killed_and_repeats_no_completed_activity(
    postgres_db: None, redis_url: str
) -> None:
    with CountingServer(delay=0.05) as server:
        first = worker("--lease", "2", "--poll", "0.2", "--concurrency", "4").start()
        runs = [run_start(graph_name="t-http", data={"url": server.url, "calls": CALLS}) for _ in range(RUNS)]
        # Kill once a good part of the work is done but not all of it.
        assert server.wait_for(RUNS * CALLS // 3, path="/count", timeout=60), first.output
        first.kill()
        recorded_before_kill = {
            (a.run.trace_id, a.step, a.seq) for a in Activity.objects.select_related("run").filter(status="completed")
        }
        assert 0 < len(recorded_before_kill) < RUNS * CALLS
        with worker("--lease", "2", "--poll", "0.2", "--concurrency", "4") as second:
            finished = wait_for(lambda: not Run.objects.exclude(status="COMPLETED").exists(), timeout=90)
            assert finished, second.output + "\n" + str(Counter(Run.objects.values_list("status", flat=True)))

        counts = server.counts()
        for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
            assert list(Step.objects.filter(run=run).values_list("index", flat=True)) == list(range(CALLS))
            keys = [f"{run.trace_id}:{a.step}:{a.seq}" for a in Activity.objects.filter(run=run, type="http")]
            assert len(keys) == CALLS
            seen = {k: counts.get(("/count", k), 0) for k in keys}
            assert all(n >= 1 for n in seen.values()), seen
            twice = [k for k, n in seen.items() if n > 1]
            # Only the activity in flight at the kill may have run twice, with the same idempotency key.
            assert len(twice) <= 1, seen
            for key in keys:
                trace, step, seq = key.split(":")
                if (trace, int(step), int(seq)) in recorded_before_kill:
                    assert seen[key] == 1, f"{key} was recorded before the kill yet ran {seen[key]} times"
        # Every request the server saw belongs to a recorded activity: nothing ran that was then lost.
        recorded_keys = {f"{a.run.trace_id}:{a.step}:{a.seq}" for a in Activity.objects.select_related("run")}
        assert {k for (_, k) in counts} <= recorded_keys
        resumed = Run.objects.filter(events__kind="resumed").distinct().count()
        assert resumed >= 1
