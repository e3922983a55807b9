"""Per-step overhead of a trivial 20-step graph, next to the raw limit of one psycopg transaction."""

from __future__ import annotations

import itertools
import statistics
import time

import psycopg

from tests.bench.common import describe, header, start_event_loop

RUNS = 50
STEPS = 20


def raw_limit(url: str, iterations: int, run_id: int) -> list[float]:
    """One psycopg transaction on CMO's own tables: BEGIN; INSERT a step row; UPDATE the run row; COMMIT.

    The same rows, indexes and constraints the engine writes, without the engine.
    """
    times = []
    with psycopg.connect(url) as conn:
        for i in range(iterations):
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute(
                    "INSERT INTO runs_step (run_id, index, node, attempt, state, state_size, state_hash, input_hash,"
                    " output, output_hash, edge, started_at, duration_ms, error)"
                    " VALUES (%s, %s, 't_count', 1, %s, 24, %s, %s, %s, %s, 'again', now(), 0.01, '')",
                    (run_id, i, '{"n": 1, "target": 20}', "a" * 64, "b" * 64, '{"n": 1}', "c" * 64),
                )
                conn.execute(
                    "UPDATE runs_run SET step_index = %s, node = 't_count', attempt = 1, updated_at = now(),"
                    " not_before = NULL WHERE id = %s AND lease_owner = 'raw' AND status = 'RUNNING'",
                    (i + 1, run_id),
                )
            times.append((time.perf_counter() - t0) * 1000)
    return times


def raw_minimal(url: str, iterations: int) -> list[float]:
    """The floor of the floor: the same transaction on two bare tables with only primary keys."""
    times = []
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS b_step, b_run")
        conn.execute("CREATE TABLE b_run (id bigint PRIMARY KEY, step_index int)")
        conn.execute("CREATE TABLE b_step (run_id bigint, index int, state jsonb, PRIMARY KEY (run_id, index))")
        conn.execute("INSERT INTO b_run VALUES (1, 0)")
        conn.commit()
        for i in range(iterations):
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO b_step VALUES (1, %s, %s)", (i, '{"n": 1, "target": 20}'))
                conn.execute("UPDATE b_run SET step_index = %s WHERE id = 1", (i + 1,))
            times.append((time.perf_counter() - t0) * 1000)
    return times


def raw_run() -> int:
    """A run row for the raw limit to write to, held by the lease owner 'raw'."""
    from runs.models import Run
    from runs.services.runs import run_start

    run = run_start(graph_name="t-count", data={"target": 1})
    Run.objects.filter(pk=run.pk).update(status="RUNNING", lease_owner="raw")
    return int(run.pk)


def engine_steps() -> list[float]:
    """Time between consecutive step commits of trivial-node runs, as a worker executes them."""
    from runs.engine.executor import Executor
    from runs.engine.plugins import NO_POLICY
    from runs.services.leases import run_claim
    from runs.services.run_store import DjangoCheckpointer
    from runs.services.runs import run_start

    gaps: list[float] = []
    checkpointer = DjangoCheckpointer(owner="bench", abort_flag=lambda run_id: False)
    for _ in range(RUNS):
        run = run_start(graph_name="t-count", data={"target": STEPS})
        run_claim(run_id=run.pk, owner="bench")
        marks: list[float] = [time.perf_counter()]
        executor = Executor(
            checkpointer, policy=NO_POLICY, on_step=lambda run_id, rec, marks=marks: marks.append(time.perf_counter())
        )
        executor.run(run.pk)
        # Gaps between commits of steps 1..19: the time a step costs once a run is going.
        gaps.extend((b - a) * 1000 for a, b in itertools.pairwise(marks[1:]))
    return gaps


def main(url: str) -> dict[str, float]:
    header("Checkpoint: per-step overhead, 20-step trivial graph, PostgreSQL (fsync on)")
    start_event_loop()
    raw_limit(url, 200, raw_run())  # warm-up
    raw = raw_limit(url, 1000, raw_run())
    bare = raw_minimal(url, 1000)
    steps = engine_steps()
    raw_median, step_median = statistics.median(raw), statistics.median(steps)
    print(f"raw limit (psycopg on CMO's tables: BEGIN, INSERT step, UPDATE run, COMMIT): {describe(raw)}")
    print(f"bare tables (two primary keys, no other index): {describe(bare)}")
    print(f"CMO step (executor + ORM checkpointer, steps 2..20 of {RUNS} runs): {describe(steps)}")
    print(
        f"ratio of medians: {step_median / raw_median:.2f}x the raw limit on CMO's tables (target <= 1.5x), "
        f"{step_median / statistics.median(bare):.2f}x the bare-table transaction"
    )
    return {"raw_median_ms": raw_median, "step_median_ms": step_median}
