"""The ``join`` activity the engine records at a join node (runs.engine.invoke): the results of the branches
of the fan-out one step before. Not for node code: a node reaches its join by its graph's edges."""

from __future__ import annotations

from typing import Any

from runs.engine.composition import CompositionError, Join
from runs.engine.errors import Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.services.spawn import JOIN, fanned_out, join_result, settle


def _build(ctx: Any, seq: int, fanout_step: int, mode: str, k: int, errors: str) -> Call:
    join = Join(mode=mode, k=k, errors=errors)
    run_id = ctx.run.run_id

    def effect() -> Any:
        results = join_result(run_id=run_id, fanout_step=fanout_step, join=join)
        if results == [] and not fanned_out(run_id=run_id, step=fanout_step):
            raise CompositionError(
                f"join node {ctx.node!r} has no branches to join: step {fanout_step} did not fan out "
                "(a join is reached by the edges or Sends of a fan-out)"
            )
        if results is None:
            raise Suspend(f"waiting for the branches of step {fanout_step}", after_record=lambda: settle(run_id=run_id))
        return results

    return Call(request=join.as_request(fanout_step), effect=effect)


KINDS = [ActivityKind(name=JOIN, method=JOIN, build=_build, answer=list)]
