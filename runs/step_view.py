"""One step as the step inspector shows it: the fragment the run page's player fetches when it moves."""

from __future__ import annotations

from typing import Any

from runs import lanes
from runs.models import Run, Step
from runs.selectors import run_steps_view


def step_inspector(*, run: Run, index: int) -> dict[str, Any] | None:
    """Step ``index`` of ``run`` in the run page's shape (runs.selectors.run_steps_view: state, input, diff,
    output, activities, hashes; secret-named fields masked, and :func:`with_composition`'s branch and join),
    or None when the run has no such step.

    Any later step is read on from the step before it (two state reads: a snapshot and its deltas); a run's
    first step (index 0, or a fork's first own step) has the run's input before it, and run_steps_view
    reads that one as it reads a whole page.
    """
    before = (
        Step.objects.filter(run_id=run.pk, index__lt=index).order_by("-index").values_list("index", flat=True).first()
    )
    steps = run_steps_view(run=run, after=-1 if before is None else before, limit=1)
    return with_composition(run=run, step=steps[0]) if steps and steps[0]["index"] == index else None


def with_composition(*, run: Run, step: dict[str, Any] | None) -> dict[str, Any] | None:
    """``step`` (a run_steps_view step) with ``branch`` (runs.lanes.branch_place: which branch of which fan-out,
    for a branch's step) and ``joined`` (runs.lanes.join_summary, for a step that recorded a join)."""
    if step is None:
        return None
    extra: dict[str, Any] = {}
    if run.kind == Run.KIND_BRANCH:
        extra["branch"] = lanes.branch_place(run=run)
    join = next((a for a in step["activities"] if a["type"] == "join" and a["status"] == "completed"), None)
    if join is not None:
        extra["joined"] = lanes.join_summary(run=run, activity=join)
    return {**step, **extra} if extra else step
