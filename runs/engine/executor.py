"""The executor: runs a graph step by step against a Checkpointer.

One call to :meth:`Executor.run` drives a run until it ends, suspends, loses
its lease, or has used its step budget (so a worker can interleave runs).
Each step is committed in one transaction by the checkpointer; hashes are
canonical-JSON SHA-256 of the state before (input), after (state) and the
node's output.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import datetime as dt
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runs.engine import determinism
from runs.engine import observability as obs
from runs.engine import statemachine as sm
from runs.engine.boundary import NodeGuard
from runs.engine.composition import MAX_FANOUT, CompositionError, FanOut, Send, fanout_join, targets
from runs.engine.context import NodeContext, NodeResult
from runs.engine.determinism import NondeterministicCall
from runs.engine.errors import (
    ActivityError,
    BoundaryViolation,
    Cancelled,
    CheckpointUnavailable,
    LeaseLost,
    NodeTimeout,
    NonDeterminismError,
    NotJSONError,
    PolicyDenied,
    ReplayMiss,
    RoutingError,
    RunAborted,
    Suspend,
    SuspendSwallowed,
)
from runs.engine.graph import END, NODES, NodeRegistry, NodeSpec, RetryPolicy
from runs.engine.hashing import json_hash, normalize_text
from runs.engine.invoke import call_node
from runs.engine.plugins import Policy
from runs.engine.redaction import redact_text
from runs.engine.secrets import SecretInState, SecretMissing, refuse_secrets
from runs.engine.stores import CODE_HASH_CHARS, Checkpointer, RunSnapshot, StepRecord, StepWarning
from runs.engine.validation import route
from runs.engine.versions import code_mismatch

# Failures that a retry cannot fix: they come from the code, not the world.
NON_RETRYABLE = (
    NonDeterminismError,
    NotJSONError,
    BoundaryViolation,
    NondeterministicCall,
    ReplayMiss,
    PolicyDenied,
    SecretInState,
    SecretMissing,
    SuspendSwallowed,
    RoutingError,
    CompositionError,
)
# A backoff this short is slept in place; longer ones release the run to the scheduler.
SLEEP_IN_PLACE_SECONDS = 2.0


class Outcome(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABORTED = "aborted"
    SUSPENDED = "suspended"
    RETRY_LATER = "retry_later"
    YIELDED = "yielded"
    LEASE_LOST = "lease_lost"
    NOT_RUNNABLE = "not_runnable"
    NOT_SERVED = "not_served"  # its graph version's code is not the code loaded here


@dataclass
class Attempt:
    result: NodeResult | None
    error: BaseException | None
    ctx: NodeContext
    started_at: dt.datetime
    duration_ms: float
    findings: list[determinism.Finding]


class Executor:
    """Runs steps for a checkpointer under ``policy``: always given (``NO_POLICY`` to say there is none), so no
    new way of building an executor silently skips the policies."""

    def __init__(
        self,
        checkpointer: Checkpointer,
        *,
        policy: Policy,
        registry: NodeRegistry = NODES,
        sleep: Callable[[float], None] = time.sleep,
        on_step: Callable[[int, StepRecord], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.cp = checkpointer
        self.should_stop = should_stop or (lambda: False)
        self.registry = registry
        self.policy = policy
        self.sleep = sleep
        self.on_step = on_step
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def run(self, run_id: int, *, max_steps: int | None = None) -> Outcome:
        try:
            return self._run(run_id, max_steps)
        except LeaseLost:
            return Outcome.LEASE_LOST

    def _run(self, run_id: int, budget: int | None) -> Outcome:
        snap = self.cp.load(run_id)
        if snap.status in sm.TERMINAL or snap.status == sm.WAITING:
            return Outcome.NOT_RUNNABLE
        differ = code_mismatch(snap, self.registry)
        if differ:
            nodes = ", ".join(differ)
            reason = (
                f"waiting for a worker with {snap.graph_name} v{snap.graph_version}: this worker's code of {nodes} "
                "is another version (run such a worker, or move the run to the new version)"
            )
            self.cp.release_unserved(run_id, reason=reason)
            return Outcome.NOT_SERVED
        scope = obs.run_scope(run_id=run_id, trace_id=snap.trace_id, graph=snap.graph_name, version=snap.graph_version)
        with scope as span:
            outcome = self._drive(run_id, snap, budget)
            obs.mark(span, **{"cmo.outcome": outcome.value, "cmo.step_index": snap.step_index})
            return outcome

    def _drive(self, run_id: int, snap: RunSnapshot, budget: int | None) -> Outcome:
        self.cp.start(run_id)
        if snap.step_index == 0 and snap.attempt == 1:
            try:
                self.policy.check_run_start(snap)
            except PolicyDenied as exc:
                self.cp.finish(run_id, sm.FAILED, error=str(exc))
                return Outcome.FAILED
        taken = 0
        while True:
            if self.cp.abort_requested(run_id):
                self.cp.finish(run_id, sm.ABORTED, error="aborted on request")
                return Outcome.ABORTED
            if snap.deadline is not None and self.cp.now() >= snap.deadline:
                self.cp.finish(run_id, sm.TIMED_OUT, error=f"run timed out at step {snap.step_index}")
                return Outcome.TIMED_OUT
            if snap.step_index >= snap.max_steps:
                self.cp.finish(
                    run_id,
                    sm.FAILED,
                    error=(
                        f"max steps exceeded: the run reached {snap.max_steps} steps "
                        f"(last node {snap.node!r}); a cycle may not terminate"
                    ),
                )
                return Outcome.FAILED
            if (budget is not None and taken >= budget) or self.should_stop():
                return Outcome.YIELDED
            outcome = self._step(run_id, snap)
            taken += 1
            if outcome is not None:
                return outcome

    def _step(self, run_id: int, snap: RunSnapshot) -> Outcome | None:
        """Execute the node at ``snap``'s position and advance ``snap`` in place."""
        assert snap.node is not None
        scope = obs.step_scope(trace_id=snap.trace_id, step=snap.step_index, node=snap.node, attempt=snap.attempt)
        with scope as span:
            outcome = self._step_in_scope(run_id, snap)
            if span is not None and outcome is Outcome.FAILED:
                obs.mark_error(span, "the step failed")
            return outcome

    def _step_in_scope(self, run_id: int, snap: RunSnapshot) -> Outcome | None:
        assert snap.node is not None
        spec = self.registry.get(snap.node)
        if spec is None:
            self.cp.finish(run_id, sm.FAILED, error=f"node {snap.node!r} is not registered in this worker")
            return Outcome.FAILED
        node_def = _node_def(snap, snap.node)
        retry = RetryPolicy.from_dict(node_def["retry"]) if node_def.get("retry") else spec.retry
        timeout = node_def["timeout"] if "timeout" in node_def else spec.timeout
        input_hash = snap.state_hash or json_hash(snap.state)
        attempt = self._attempt(run_id, snap, spec, timeout)
        error = attempt.error
        if attempt.findings and not isinstance(error, (LeaseLost, CheckpointUnavailable)):
            self._warn_nondeterminism(run_id, snap, attempt)

        if isinstance(error, Suspend):
            if self.cp.suspend(run_id, step=snap.step_index, reason=error.reason):
                return Outcome.SUSPENDED
            return None  # the answer arrived before we could suspend: execute the step again
        if isinstance(error, RunAborted):
            self.cp.finish(run_id, sm.ABORTED, error="aborted on request")
            return Outcome.ABORTED
        if isinstance(error, (LeaseLost, CheckpointUnavailable)):
            raise error  # abandon the attempt: nothing is committed for it

        record: StepRecord | None = None
        next_node: str | None = None
        if error is None:
            assert attempt.result is not None
            try:
                record, next_node = self._record(snap, attempt, input_hash)
            except (NotJSONError, SecretInState, RoutingError, CompositionError) as exc:
                error = exc
        if error is not None:
            message = _describe(error, snap.node)
            if not isinstance(error, NON_RETRYABLE) and snap.attempt < retry.max_attempts:
                delay = retry.delay(snap.attempt)
                if delay > SLEEP_IN_PLACE_SECONDS:
                    self.cp.retry_later(run_id, step=snap.step_index, attempt=snap.attempt, error=message, delay=delay)
                    return Outcome.RETRY_LATER
                self.cp.retry_later(run_id, step=snap.step_index, attempt=snap.attempt, error=message, delay=0)
                self.sleep(delay)
                snap.attempt += 1
                return None
            failed = StepRecord(
                index=snap.step_index,
                node=snap.node,
                attempt=snap.attempt,
                state=snap.state,
                state_hash=input_hash,
                input_hash=input_hash,
                output=None,
                output_hash=json_hash(None),
                edge=None,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                error=message,
                code_hash=self._code_hash(snap.node),
            )
            self.cp.commit_step(run_id, failed, next_node=None, final_status=sm.FAILED, error=message)
            self._notify(run_id, failed)
            return Outcome.FAILED

        assert record is not None
        final = sm.COMPLETED if next_node is None else None
        self.cp.commit_step(run_id, record, next_node=next_node, final_status=final)
        self._notify(run_id, record)
        snap.step_index += 1
        snap.node = next_node
        snap.state = record.state
        snap.state_hash = record.state_hash
        snap.attempt = 1
        return Outcome.COMPLETED if final else None

    def _record(self, snap: RunSnapshot, attempt: Attempt, input_hash: str) -> tuple[StepRecord, str | None]:
        assert attempt.result is not None and snap.node is not None
        node = snap.node
        state, state_hash, size, text = normalize_text(
            attempt.result.state, what=f"node {node!r} returned a state that"
        )
        refuse_secrets(state, text, what=f"the state node {node!r} returned")
        output, output_hash, _, text = normalize_text(
            attempt.result.output, what=f"node {node!r} returned an output that"
        )
        refuse_secrets(output, text, what=f"the output node {node!r} returned")
        edge = attempt.result.edge
        fanout = _fanout(snap, attempt.result, state)
        target = fanout.join if fanout is not None else route(snap.definition, node, edge)
        if snap.until_node and target == snap.until_node:
            target = END  # a branch ends where its join is: the run it belongs to goes on there
        record = StepRecord(
            index=snap.step_index,
            node=node,
            attempt=snap.attempt,
            state=state,
            state_hash=state_hash,
            input_hash=input_hash,
            output=output,
            output_hash=output_hash,
            edge=edge,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            state_size=size,
            fanout=fanout,
            code_hash=self._code_hash(node),
        )
        return record, (None if target == END else target)

    def _code_hash(self, node: str) -> str:
        spec = self.registry.get(node)
        return spec.source_hash[:CODE_HASH_CHARS] if spec is not None else ""

    def _warn_nondeterminism(self, run_id: int, snap: RunSnapshot, attempt: Attempt) -> None:
        """Warn mode: one event per call site the detector found (in strict mode the step's error says it)."""
        if determinism.mode_of(snap.definition) != determinism.WARN:
            return
        self.cp.add_warnings(
            run_id,
            step=snap.step_index,
            warnings=[
                StepWarning(
                    kind=determinism.EVENT_KIND,
                    message=f.message,
                    detail={**f.as_detail(), "attempt": snap.attempt},
                )
                for f in attempt.findings
            ],
        )

    def _attempt(self, run_id: int, snap: RunSnapshot, spec: NodeSpec, timeout: float | None) -> Attempt:
        assert snap.node is not None
        ctx = NodeContext(
            run=snap,
            step=snap.step_index,
            node=snap.node,
            attempt=snap.attempt,
            activity_store=self.cp,
            abort_check=lambda: self.cp.abort_requested(run_id),
            policy=self.policy,
        )
        guard = NodeGuard(
            node=spec.name,
            determinism=determinism.mode_of(snap.definition),
            node_file=determinism.code_file(spec.fn),
        )
        started_at = self.cp.now()
        t0 = time.perf_counter()
        result: NodeResult | None = None
        error: BaseException | None = None
        try:
            result = self._invoke(spec, snap.state, ctx, timeout, guard)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            error = exc
        return Attempt(
            result=result,
            error=error,
            ctx=ctx,
            started_at=started_at,
            duration_ms=(time.perf_counter() - t0) * 1000,
            findings=list(guard.detector.findings),  # a copy: a timed-out node thread may still add to it
        )

    def _invoke(
        self, spec: NodeSpec, state: Any, ctx: NodeContext, timeout: float | None, guard: NodeGuard
    ) -> NodeResult:
        def call() -> NodeResult:
            return call_node(spec, state, ctx, guard)

        if timeout is None:
            return call()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmo-node")
        future = self._pool.submit(contextvars.copy_context().run, call)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            ctx.cancel()
            # The node thread cannot be killed; abandon it (its context is cancelled,
            # so it can do no further activity) and use a fresh thread next time.
            self._pool.shutdown(wait=False)
            self._pool = None
            raise NodeTimeout(f"node {spec.name!r} timed out after {timeout:g} s") from None

    def _notify(self, run_id: int, record: StepRecord) -> None:
        if self.on_step is not None:
            self.on_step(run_id, record)


def _node_def(snap: RunSnapshot, name: str) -> dict[str, Any]:
    for n in snap.definition.get("nodes", []):
        if n["name"] == name:
            return dict(n)
    return {}


def _fanout(snap: RunSnapshot, result: NodeResult, state: Any) -> FanOut | None:
    """The branches this step starts: a static fan-out (several edges for the label) or the node's Sends."""
    assert snap.node is not None
    if result.send is not None:  # a list, even empty: a fan-out of that many branches
        if len(result.send) > MAX_FANOUT:
            raise CompositionError(f"node {snap.node!r} sends {len(result.send)} branches; at most {MAX_FANOUT}")
        nodes = {n["name"] for n in snap.definition["nodes"]}
        branches = []
        for i, send in enumerate(result.send):
            if not isinstance(send, Send) or send.node not in nodes:
                raise CompositionError(f"node {snap.node!r} sends branch {i} to {getattr(send, 'node', send)!r}, "
                                       "which is not a node of the graph")
            value, _, _, text = normalize_text(send.input, what=f"the input of branch {i}")
            refuse_secrets(value, text, what=f"the input of branch {i}")
            branches.append((send.node, value))
        limit = result.limit if result.limit and result.limit > 0 else None
        starts = sorted({b[0] for b in branches}) or [t for t in targets(snap.definition, snap.node, result.edge)
                                                     if t != END]
        return FanOut(join=fanout_join(snap.definition, starts), branches=branches, limit=limit, dynamic=True)
    following = [t for t in targets(snap.definition, snap.node, result.edge) if t != END]
    if len(following) < 2:
        return None
    return FanOut(join=fanout_join(snap.definition, following), branches=[(t, state) for t in following])


# Errors whose own message is the step's error text.
_KNOWN = (
    NotJSONError,
    NonDeterminismError,
    BoundaryViolation,
    NondeterministicCall,
    NodeTimeout,
    ReplayMiss,
    Cancelled,
    SecretInState,
    SuspendSwallowed,
    RoutingError,
    CompositionError,
)


def _describe(error: BaseException, node: str) -> str:
    """The stored error text of a failed step (credentials in it masked, no server file paths)."""
    if isinstance(error, SecretMissing) and error.name:  # not "raised SecretMissing: ...", a key: value to redaction
        return f"node {node!r} asked for a secret {error.name!r} that is not set on this worker: {error.hint}"
    if isinstance(error, _KNOWN):
        return redact_text(str(error))
    if isinstance(error, ActivityError):  # its message says which activity and why; where it was raised is noise
        return redact_text(f"node {node!r}: {error}")
    return redact_text(f"node {node!r} raised {type(error).__name__}: {error}{_where(error)}")


def _where(error: BaseException) -> str:
    """The innermost frame of the node's own code, by module and function: never a path on this server."""
    where = ""
    tb = error.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module and not module.startswith("runs.engine"):
            where = f" (in {module}.{tb.tb_frame.f_code.co_name}, line {tb.tb_lineno})"
        tb = tb.tb_next
    return where
