"""Child runs: ``ctx.activities.start_run(graph, input, version=None, detach=False)`` and
``ctx.activities.wait_runs(handles, mode="all"|"any")``.

A child runs with the identity and role of its parent and is aborted with it (unless ``detach``).
Starting it is recorded (a resumed or replayed step gets the same child, never a second one);
waiting suspends the parent, holding no worker, until the children end, and returns their final
states and statuses: ``[{"trace_id", "graph", "status", "state", "error"}]``.
"""

from __future__ import annotations

from typing import Any

from runs.engine.errors import Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.services.spawn import WAIT_RUNS, child_start, children_result, settle


def _start(ctx: Any, seq: int, graph: str, input: Any = None, version: int | None = None, detach: bool = False) -> Call:
    request = {"graph": graph, "version": version, "input": input if input is not None else {}, "detach": bool(detach)}
    run_id, step = ctx.run.run_id, ctx.step

    def effect() -> Any:
        child = child_start(
            parent_id=run_id, step=step, seq=seq, graph_name=graph, version=version, data=request["input"],
            detached=bool(detach),
        )
        return {"trace_id": child.trace_id, "graph": child.graph.name, "version": child.graph.version}

    return Call(request=request, effect=effect)


def _trace_id(handle: Any) -> str:
    return str(handle.get("trace_id") if isinstance(handle, dict) else handle)


def _wait(ctx: Any, seq: int, handles: list[Any], mode: str = "all") -> Call:
    trace_ids = [_trace_id(h) for h in handles]
    run_id = ctx.run.run_id

    def effect() -> Any:
        if mode not in ("all", "any"):
            raise ValueError(f"wait_runs mode is 'all' or 'any', not {mode!r}")
        results = children_result(run_id=run_id, trace_ids=trace_ids, mode=mode)
        if results is None:
            reason = f"waiting for {len(trace_ids)} child runs ({mode})"
            raise Suspend(reason, after_record=lambda: settle(run_id=run_id))
        return results

    return Call(request={"runs": trace_ids, "mode": mode}, effect=effect)


KINDS = [
    ActivityKind(name="start_run", method="start_run", build=_start, answer=dict),
    ActivityKind(name=WAIT_RUNS, method=WAIT_RUNS, build=_wait, answer=list),
]
