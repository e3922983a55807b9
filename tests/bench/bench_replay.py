"""Verify and compare times for 1,000-step runs of a trivial graph (target: under 1 s each)."""

from __future__ import annotations

import statistics
import time

from tests.bench.common import describe, header


def _thousand_steps() -> object:
    from runs.engine.executor import Executor
    from runs.engine.plugins import NO_POLICY
    from runs.models import Run
    from runs.services.leases import run_claim
    from runs.services.run_store import DjangoCheckpointer
    from runs.services.runs import run_start

    run = run_start(graph_name="t-count", data={"target": 1000}, seed=1)
    run_claim(run_id=run.pk, owner="bench")
    Executor(DjangoCheckpointer(owner="bench", abort_flag=lambda r: False), policy=NO_POLICY).run(run.pk)
    return Run.objects.select_related("graph").get(pk=run.pk)


def main(url: str) -> None:
    from replay.services import run_compare, run_verify

    header("Replay: verify and compare of 1,000-step runs (trivial graph)")
    left, right = _thousand_steps(), _thousand_steps()
    verify_times, compare_times = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        report = run_verify(run=left)  # type: ignore[arg-type]
        verify_times.append((time.perf_counter() - t0) * 1000)
        assert report.ok
        t0 = time.perf_counter()
        compared = run_compare(left=left, right=right)  # type: ignore[arg-type]
        compare_times.append((time.perf_counter() - t0) * 1000)
        assert compared.match_percent == 100.0
    print(f"verify (re-execute 1,000 steps against their records): {describe(verify_times)}")
    print(f"compare (align and diff two 1,000-step runs): {describe(compare_times)}")
    print(
        f"target 1000 ms: verify {statistics.median(verify_times) / 1000:.2f}x, "
        f"compare {statistics.median(compare_times) / 1000:.2f}x of it"
    )
