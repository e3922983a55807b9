"""Calling a node: the one way node code is executed, by the executor and by verification alike."""

from __future__ import annotations

import copy
from typing import Any

from runs.engine.boundary import NodeGuard, node_region
from runs.engine.composition import CompositionError, Join, join_failure, join_of, merge
from runs.engine.context import NodeContext, NodeResult
from runs.engine.errors import SuspendSwallowed
from runs.engine.graph import NodeSpec
from runs.engine.plugins import PLUGINS


def call_node(spec: NodeSpec, state: Any, ctx: NodeContext, guard: NodeGuard) -> NodeResult:
    """Run ``spec`` on a private copy of ``state`` inside the boundary (``guard``); its result, or what the step
    must fail with.

    A violation or strict-mode finding the node swallowed still fails the step, even if the node then
    returned or raised something else; so does an engine error it caught (``ctx.fatal``). A node that
    returns (or raises an ordinary exception) while one of its activities is pending caught the
    engine's Suspend signal: SuspendSwallowed. Engine signals themselves propagate.
    """
    join = join_of(ctx.run.definition, ctx.node)
    if join is not None:
        state = _joined(ctx, state, join)
    fresh = copy.deepcopy(state)  # outside the region: the engine's copy is not the node's code
    try:
        with node_region(guard):
            out = spec.fn(fresh, ctx)
    except Exception as exc:
        remembered = guard.failure()
        if remembered is not None and type(remembered) is not type(exc):
            raise remembered from exc
        if ctx.activities.pending is not None:
            raise _swallowed(ctx, exc) from exc
        raise
    remembered = guard.failure()
    if remembered is not None:
        raise remembered
    if ctx.fatal is not None:
        raise ctx.fatal
    if ctx.activities.pending is not None:
        raise _swallowed(ctx, None)
    return out if isinstance(out, NodeResult) else NodeResult(state=out)


def _joined(ctx: NodeContext, state: Any, join: Join) -> Any:
    """A join node's input: its state merged with the results of the branches of the fan-out one step before.

    The results come from the ``join`` activity (registered by the app that runs branches): recorded,
    so a resumed step or a verification merges exactly the same; until they are all in, it suspends.
    """
    kind = PLUGINS.activity("join")
    if kind is None:
        raise CompositionError(f"join node {ctx.node!r}: no app in this process runs branches")
    call = kind.build(ctx, ctx.activities._seq, **join.as_request(ctx.step - 1))
    results = ctx.activities.call(kind.name, call.request, call.effect)
    failure = join_failure(results, join)
    if failure:
        raise CompositionError(f"join node {ctx.node!r}: {failure}")
    return merge(state, results, join)


def _swallowed(ctx: NodeContext, error: BaseException | None) -> SuspendSwallowed:
    pending = ctx.activities.pending
    assert pending is not None
    did = "returned" if error is None else f"raised {type(error).__name__}"
    return SuspendSwallowed(
        f"node {ctx.node!r} {did} while its {pending.type} activity #{pending.seq} is still waiting for an answer: "
        "it caught the engine's Suspend signal (a bare except or except BaseException); let it propagate, and "
        "the run waits without holding a worker, then re-executes the step once the answer is recorded"
    )
