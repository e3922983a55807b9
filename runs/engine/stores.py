"""The one interface between the engine and storage.

The runs app implements it over the Django ORM (``runs.services.run_store``);
verification implements it over a recorded run with no effects at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from runs.engine.composition import FanOut

ACTIVITY_COMPLETED = "completed"
ACTIVITY_FAILED = "failed"
ACTIVITY_PENDING = "pending"
CODE_HASH_CHARS = 16  # of a node's source hash, kept with each step: enough to tell two versions apart


@dataclass
class RunSnapshot:
    run_id: int
    trace_id: str
    graph_name: str
    graph_version: int
    definition: dict[str, Any]
    node_hashes: dict[str, str]
    seed: int
    status: str
    step_index: int
    node: str | None
    state: Any
    attempt: int
    deadline: dt.datetime | None
    max_steps: int
    context: dict[str, Any] = field(default_factory=dict)
    # A branch of a fan-out ends when its next node is this one (its join); "" for other runs.
    until_node: str = ""
    # Hash of ``state`` when known (the last step's state_hash), saving a serialization per step.
    state_hash: str | None = None


@dataclass
class ActivityRecord:
    step: int
    seq: int
    type: str
    request: Any
    request_hash: str
    status: str = ACTIVITY_COMPLETED
    response: Any = None
    error: str = ""
    duration_ms: float = 0.0
    attempt: int = 1
    # What the call spent (an LLM call's tokens and cost; see ActivityKind.usage), None for most kinds.
    usage: dict[str, Any] | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.step}:{self.seq}"


@dataclass
class StepRecord:
    index: int
    node: str
    attempt: int
    state: Any
    state_hash: str
    input_hash: str
    output: Any
    output_hash: str
    edge: str | None
    started_at: dt.datetime
    duration_ms: float
    error: str = ""
    state_size: int = 0
    # The branches this step fans out to, started in the same transaction as the step.
    fanout: FanOut | None = None
    # The first 16 hex digits of the SHA-256 of the node's source that executed the step (CODE_HASH_CHARS).
    code_hash: str = ""


@dataclass
class StepWarning:
    """Something a step did that does not fail it but should be fixed (stored as a run event of ``kind``)."""

    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


class ActivityStore(Protocol):
    """Where a step's activity records live: read once per step execution, written one by one."""

    def activities(self, run_id: int, step: int) -> dict[int, ActivityRecord]: ...

    def put_activity(self, run_id: int, record: ActivityRecord) -> ActivityRecord:
        """Store ``record`` at once; if one exists at its seq, return that one instead."""


class RunStore(Protocol):
    """A run's position, steps, status and lease, as the executor moves it along."""

    def load(self, run_id: int) -> RunSnapshot: ...

    def start(self, run_id: int) -> None:
        """PENDING/RUNNING(released) -> RUNNING under this worker's lease."""

    def commit_step(
        self, run_id: int, step: StepRecord, *, next_node: str | None, final_status: str | None, error: str = ""
    ) -> None:
        """One transaction: the step row, the run's position and, if given, its final status.

        Raises LeaseLost if this worker no longer holds the run.
        """

    def retry_later(self, run_id: int, *, step: int, attempt: int, error: str, delay: float) -> None:
        """Record a failed attempt; discard that attempt's failed activities so the retry redoes them."""

    def finish(self, run_id: int, status: str, *, error: str = "", detail: dict[str, Any] | None = None) -> None: ...

    def suspend(self, run_id: int, *, step: int, reason: str) -> bool:
        """RUNNING -> WAITING and release the lease, unless the step's pending activities
        were all answered meanwhile (then False: execute the step again)."""

    def abort_requested(self, run_id: int) -> bool: ...

    def release_unserved(self, run_id: int, *, reason: str) -> None:
        """Give back a run this code may not execute (runs.engine.versions), saying what it waits for."""

    def add_warnings(self, run_id: int, *, step: int, warnings: list[StepWarning]) -> None:
        """Store warnings about an execution of step ``step`` (one run event each); the step is unaffected."""

    def now(self) -> dt.datetime: ...


class Checkpointer(RunStore, ActivityStore, Protocol):
    """Both stores, as one worker's executor uses them."""
