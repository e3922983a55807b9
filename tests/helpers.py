"""Run a graph to its end in the test process, with the real ORM checkpointer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runs.engine.executor import Executor, Outcome
from runs.engine.plugins import NO_POLICY
from runs.models import Run
from runs.services.leases import run_claim
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_start

OWNER = "test-worker"


def execute(run: Run, *, owner: str = OWNER, max_steps: int | None = None, **executor_kwargs: Any) -> Outcome:
    assert run_claim(run_id=run.pk, owner=owner), "run was not claimable"
    executor_kwargs.setdefault("policy", NO_POLICY)
    executor = Executor(DjangoCheckpointer(owner=owner), sleep=lambda s: None, **executor_kwargs)
    try:
        return executor.run(run.pk, max_steps=max_steps)
    finally:
        executor.close()


def start_and_execute(graph: str, data: Any = None, **kwargs: Any) -> Run:
    run = run_start(graph_name=graph, data=data or {}, seed=kwargs.pop("seed", 42))
    execute(run, **kwargs)
    run.refresh_from_db()
    return run


def drain(
    *, owner: str = OWNER, rounds: int = 10_000, before: Callable[[int], None] | None = None, **executor_kwargs: Any
) -> int:
    """Execute every runnable run (branches, children, resumed parents) in this process until none is left,
    as workers would (``before(run_id)`` is called as each slice starts); returns how many slices ran."""
    from runs.services.leases import run_claim_next

    executor_kwargs.setdefault("policy", NO_POLICY)
    executor = Executor(DjangoCheckpointer(owner=owner), sleep=lambda s: None, **executor_kwargs)
    slices = 0
    try:
        for _ in range(rounds):
            run_id = run_claim_next(owner=owner)
            if run_id is None:
                return slices
            if before is not None:
                before(run_id)
            executor.run(run_id)
            slices += 1
    finally:
        executor.close()
    raise AssertionError(f"still runnable runs after {rounds} slices")
