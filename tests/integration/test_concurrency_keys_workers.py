"""Concurrency keys on PostgreSQL + Redis with two real worker processes: one run of a key at a time, in
submission order per key, every run completed."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import defaultdict

import pytest

from runs.models import Run, Step
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

MODULES = {"CMO_GRAPH_MODULES": "runs.demo,tests.graphs,tests.graphs_concurrency"}
KEYS = ["billing", "checkout", "search", "auth"]


def test_20_runs_over_4_keys_with_limit_1_never_overlap_and_run_in_submission_order_per_key(
    postgres_db: None, redis_url: str
) -> None:
    # Two runner threads each, so running the 4 keys side by side takes both workers.
    with worker("--concurrency", "2", "--poll", "0.1", env=MODULES) as a, worker(
        "--concurrency", "2", "--poll", "0.1", env=MODULES
    ) as b:
        # Interleaved: billing, checkout, search, auth, billing, ... (5 runs per key)
        runs = [
            run_start(graph_name="k-service", data={"service": KEYS[i % 4], "sleep": 0.3, "i": i}, seed=i)
            for i in range(20)
        ]
        started = time.monotonic()
        done = wait_for(
            lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="COMPLETED").count() == 20, timeout=120
        )
        assert done, a.output[-3000:] + b.output[-3000:]
        elapsed = time.monotonic() - started
        workers = set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("last_worker", flat=True))
    steps = {s.run_id: s for s in Step.objects.filter(run__in=runs)}
    assert len(steps) == 20
    by_key: dict[str, list[Run]] = defaultdict(list)
    for r in Run.objects.filter(pk__in=[r.pk for r in runs]).order_by("queued_at", "id"):
        by_key[r.concurrency_key].append(r)
    assert sorted(by_key) == sorted(f"k-service:{k}" for k in KEYS)
    most_at_once = 0
    for key, key_runs in by_key.items():
        assert [r.pk for r in key_runs] == sorted(r.pk for r in key_runs)  # submission order
        spans = [
            (steps[r.pk].started_at, steps[r.pk].started_at + dt.timedelta(milliseconds=steps[r.pk].duration_ms))
            for r in key_runs
        ]
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert next_start >= end, f"{key}: a step started at {next_start} before the previous ended at {end}"
        for earlier, later in itertools.pairwise(key_runs):
            assert earlier.finished_at is not None and later.started_at is not None
            assert later.started_at >= earlier.finished_at, f"{key}: runs {earlier.pk} and {later.pk} overlapped"
    # The keys did run side by side: at some moment more than one run (of different keys) was running.
    moments = sorted(
        [(r.started_at, 1) for rs in by_key.values() for r in rs] + [(r.finished_at, -1) for rs in by_key.values()
                                                                     for r in rs],
        key=lambda m: (m[0], m[1]),
    )
    now = 0
    for _, change in moments:
        now += change
        most_at_once = max(most_at_once, now)
    assert most_at_once > 1
    assert len(workers) == 2, workers  # both workers took part
    span = (moments[-1][0] - moments[0][0]).total_seconds()
    print(f"\n20 runs over 4 keys (limit 1, 0.3 s steps): first start to last end {span:.2f} s "
          f"(5 x 0.3 s = 1.5 s per key at best), all done {elapsed:.2f} s after the last submission, "
          f"at most {most_at_once} at once")
