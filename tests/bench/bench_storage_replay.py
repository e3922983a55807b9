"""Bytes stored per step for a 100 KB state that changes a little, and replay-to-step time."""

from __future__ import annotations

import statistics
import time

from django.db import connection

from tests.bench.common import describe, header


def _run_to_end(graph: str, data: dict) -> int:
    from runs.engine.executor import Executor
    from runs.engine.plugins import NO_POLICY
    from runs.services.leases import run_claim
    from runs.services.run_store import DjangoCheckpointer
    from runs.services.runs import run_start

    run = run_start(graph_name=graph, data=data)
    run_claim(run_id=run.pk, owner="bench")
    Executor(DjangoCheckpointer(owner="bench", abort_flag=lambda r: False), policy=NO_POLICY).run(run.pk)
    return int(run.pk)


def storage() -> dict[str, float]:
    header("Checkpoint storage: 100 KB state, a few hundred bytes change per step, 200 steps")
    run_id = _run_to_end("t-grow", {"kb": 100, "steps": 200})
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*),"
            " sum(coalesce(octet_length(state::text), 0) + coalesce(octet_length(state_delta::text), 0)),"
            " sum(coalesce(pg_column_size(state), 0) + coalesce(pg_column_size(state_delta), 0)),"
            " max(state_size), count(*) FILTER (WHERE state_delta IS NULL)"
            " FROM runs_step WHERE run_id = %s",
            [run_id],
        )
        steps, stored, on_disk, full = cur.fetchone()[:4]
    print(
        f"full state: {full / 1024:.1f} KB; stored per step: {stored / steps / 1024:.2f} KB as JSON "
        f"({on_disk / steps / 1024:.2f} KB on disk after TOAST compression); "
        f"a snapshot per step would store {full / 1024:.1f} KB: {full * steps / stored:.0f}x more"
    )
    return {"bytes_per_step": float(stored) / steps}


def replay() -> dict[str, float]:
    from runs.services.run_store import step_state

    header("Replay to step 500 of a 1,000-step run (100 KB state)")
    run_id = _run_to_end("t-grow", {"kb": 100, "steps": 1000})
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        state = step_state(run_id=run_id, index=500)
        times.append((time.perf_counter() - t0) * 1000)
    assert state["i"] == 501
    print(f"step_state(run, 500): {describe(times)}")
    return {"replay_500_ms": statistics.median(times)}


def main(url: str) -> None:
    storage()
    replay()
