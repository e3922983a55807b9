"""The run state machine; every transition is recorded as a RunEvent by the caller."""

from __future__ import annotations

from runs.engine.errors import InvalidTransition

PENDING = "PENDING"
RUNNING = "RUNNING"
WAITING = "WAITING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
ABORTED = "ABORTED"

STATUSES = [PENDING, RUNNING, WAITING, COMPLETED, FAILED, TIMED_OUT, ABORTED]
TERMINAL = frozenset({COMPLETED, FAILED, TIMED_OUT, ABORTED})
ACTIVE = frozenset({PENDING, RUNNING, WAITING})

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, FAILED, TIMED_OUT, ABORTED}),
    RUNNING: frozenset({WAITING, COMPLETED, FAILED, TIMED_OUT, ABORTED}),
    WAITING: frozenset({RUNNING, FAILED, TIMED_OUT, ABORTED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    TIMED_OUT: frozenset(),
    ABORTED: frozenset(),
}


def check_transition(current: str, target: str) -> None:
    """Raise InvalidTransition unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(current, target)
