"""The one error hierarchy: CMOError, with the engine's own errors and signals here.

Every error carries what an API answer needs: ``status`` and ``code`` (class attributes, or set
per instance) and ``details``. The apps' errors subclass CMOError too, so the API maps an error by
its class and keeps no table of other modules' errors. Each message names the thing that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class CMOError(Exception):
    """The root of CMO's errors. An API answer is ``status`` with ``{"code", "message", "details"}``;
    500 (a server failure) for an error no request should be able to cause."""

    status = 500
    code = "error"
    details: Any = None


class EngineError(CMOError):
    """Base class of the engine's own errors."""


class GraphValidationError(EngineError):
    """A graph definition is invalid; ``problems`` lists every problem found."""

    status, code = 422, "invalid_graph"

    def __init__(self, graph_name: str, problems: list[str]):
        self.graph_name = graph_name
        self.problems = problems
        self.details = problems
        super().__init__(f"graph {graph_name!r} is invalid: " + "; ".join(problems))


class InvalidTransition(EngineError):
    status, code = 409, "invalid_transition"

    def __init__(self, current: str, target: str):
        self.current = current
        self.target = target
        super().__init__(f"invalid run transition {current} -> {target}")


class NotJSONError(EngineError):
    """A value that must be JSON (state, output, activity payload) is not."""

    status, code = 422, "not_json"


class NonDeterminismError(EngineError):
    """A re-executed step asked for a different activity than the one recorded."""

    def __init__(self, *, trace_id: str, step: int, seq: int, recorded: Any, requested: Any):
        self.trace_id = trace_id
        self.step = step
        self.seq = seq
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"non-determinism in run {trace_id} at step {step}, activity #{seq}: "
            f"recorded {json.dumps(recorded, sort_keys=True, default=str)} "
            f"but the node now requests {json.dumps(requested, sort_keys=True, default=str)}"
        )


class BoundaryViolation(PermissionError):
    """A node did I/O without going through ``ctx.activities``.

    Subclasses PermissionError so library code that tolerates OSError (e.g.
    the import system skipping a .pyc write) keeps working; the step fails
    anyway because the context remembers the violation.
    """


class NodeTimeout(EngineError):
    pass


class EngineSignal(BaseException):
    """Control flow that must reach the engine through node code.

    A BaseException, not an Exception, so a node's ``except Exception:`` cannot
    swallow it (Temporal's SDK raises ``_WorkflowBeingEvictedError(BaseException)``
    for the same reason). Suspension, cancellation, abort and a lost lease are signals.
    """


class RunAborted(EngineSignal):
    pass


class CheckpointUnavailable(EngineError):
    """Storage is unreachable: the step is abandoned (not failed) and the run resumes later."""


class LeaseLost(EngineSignal):
    """The worker no longer holds the run's lease; it must stop touching the run."""


class Suspend(EngineSignal):
    """An activity has no answer yet: the run waits and frees its worker.

    Node code must let it propagate; a step that returns while one of its
    activities is pending fails (:class:`SuspendSwallowed`).

    ``after_record`` runs once the pending record is committed (publishing a
    request there means an answer can never arrive before its record). It
    must be idempotent: a pending step that re-executes runs it again.
    """

    def __init__(self, reason: str, after_record: Callable[[], object] | None = None):
        self.reason = reason
        self.after_record = after_record
        super().__init__(reason)


class Cancelled(EngineSignal):
    """The step was abandoned (timeout, abort); the node must not do more effects."""


class SuspendSwallowed(EngineError):
    """A node returned although one of its activities is still pending: it caught the engine's Suspend."""


class RoutingError(EngineError, ValueError):
    """A node returned an edge label its graph has no edge for (deterministic: never retried)."""


class ActivityError(EngineError):
    """A recorded activity failure, raised again identically on replay."""

    def __init__(self, activity_type: str, message: str, kind: str = "error"):
        self.activity_type = activity_type
        self.kind = kind
        super().__init__(f"{activity_type} failed: {message}")
        self.message = message


class PolicyDenied(ActivityError):
    pass


class ReplayMiss(EngineError):
    """Verification needed an activity that the recorded run does not have."""
