"""Re-execute a recorded step with no effects: the heart of verification.

A step is re-run against its recorded activities only (a new activity is a
ReplayMiss, a different request a NonDeterminismError) and the result is
hashed exactly as the executor hashes it, so a verifier can compare hashes.
Django-free: the caller supplies the recorded data.

The determinism detector watches the re-execution as it watches a run: its
findings come back in :attr:`Replayed.nondeterministic_calls` (nothing is
stored), and in a strict graph such a call fails the re-execution as it
failed the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runs.engine import determinism
from runs.engine.boundary import NodeGuard
from runs.engine.context import NodeContext
from runs.engine.errors import (
    EngineError,
    EngineSignal,
    NonDeterminismError,
    NotJSONError,
    ReplayMiss,
)
from runs.engine.graph import NodeSpec
from runs.engine.hashing import json_hash, normalize
from runs.engine.invoke import call_node
from runs.engine.stores import ActivityRecord, RunSnapshot, StepRecord


class _Recorded:
    """An ActivityStore that only answers from records; anything that would write is refused."""

    def __init__(self, records: dict[int, ActivityRecord]):
        self.records = records

    def activities(self, run_id: int, step: int) -> dict[int, ActivityRecord]:
        return dict(self.records)

    def put_activity(self, run_id: int, record: ActivityRecord) -> ActivityRecord:
        raise ReplayMiss(f"step {record.step} would record a new activity #{record.seq} ({record.type})")


@dataclass
class Replayed:
    """What one re-execution produced."""

    state: Any = None
    state_hash: str = ""
    output_hash: str = ""
    edge: str | None = None
    error: str = ""
    error_kind: str = ""  # "", "non_determinism", "replay_miss", "not_json", "node_error"
    mismatch: dict[str, Any] = field(default_factory=dict)
    activities_used: int = 0
    # A fan-out's branches: (node, hash of its input) per Send, in order; None when the step did not send.
    sends: list[tuple[str, str]] | None = None
    # What the determinism detector found, e.g. "node 'triage' called time.time() (in ..., line 12): use ..."
    nondeterministic_calls: list[str] = field(default_factory=list)


def reexecute(
    spec: NodeSpec,
    *,
    snapshot: RunSnapshot,
    step: StepRecord | Any,
    input_state: Any,
    records: dict[int, ActivityRecord],
) -> Replayed:
    """Run ``spec`` for ``step`` on ``input_state`` against ``records``; never raises for node failures."""
    ctx = NodeContext(
        run=snapshot,
        step=step.index,
        node=step.node,
        attempt=step.attempt,
        activity_store=_Recorded(records),
        replay_only=True,
    )
    guard = NodeGuard(
        node=spec.name,
        determinism=determinism.mode_of(snapshot.definition),
        node_file=determinism.code_file(spec.fn),
    )
    out = Replayed()
    try:
        result = call_node(spec, input_state, ctx, guard)
        out.state, out.state_hash, _ = normalize(result.state, what=f"node {step.node!r} returned a state that")
        out.output_hash = json_hash(normalize(result.output, what="output")[0])
        out.edge = result.edge
        if result.send is not None:
            out.sends = [(send.node, normalize(send.input, what="a branch input")[1]) for send in result.send]
    except NonDeterminismError as exc:
        out.error, out.error_kind = str(exc), "non_determinism"
        out.mismatch = {"seq": exc.seq, "recorded": exc.recorded, "requested": exc.requested}
    except ReplayMiss as exc:
        out.error, out.error_kind = str(exc), "replay_miss"
    except NotJSONError as exc:
        out.error, out.error_kind = str(exc), "not_json"
    except (EngineError, Exception) as exc:  # noqa: BLE001 - a node's failure is a finding, not a crash
        out.error, out.error_kind = f"{type(exc).__name__}: {exc}", "node_error"
    except EngineSignal as exc:  # a recorded step never waits: it suspended on a record still pending
        out.error, out.error_kind = f"{type(exc).__name__}: {exc}", "node_error"
    out.activities_used = ctx.activities._seq
    out.nondeterministic_calls = [f.message for f in guard.detector.findings]
    return out
