"""In-process specialists: Python agents that nodes reach with ``send_a2a``.

``@specialist("healer", capabilities=[...])`` registers a handler
``fn(task, payload, meta) -> dict``. In the embedded mode the call happens in
the worker process, inside the activity (so it is recorded like any other);
``runs.activities.specialists`` decides where a ``send_a2a`` goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runs.engine.errors import ActivityError

if TYPE_CHECKING:
    from runs.engine.context import NodeContext

Handler = Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]]
DecisionHandler = Callable[[dict[str, Any]], None]

# In-process retries sleep in the worker thread; longer waits are cut to this.
INPROCESS_RETRY_CAP_SECONDS = 30.0


class Retry(Exception):
    """Raised by a specialist handler: invoke me again after ``after_ms``, with ``modifications`` merged
    into the payload, at most ``max_attempts`` times in all (a RetryDirective on the wire)."""

    def __init__(
        self, reason: str, *, after_ms: int = 1000, max_attempts: int = 3, modifications: dict[str, Any] | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.after_ms = after_ms
        self.max_attempts = max_attempts
        self.modifications = dict(modifications or {})

    def directive(self) -> dict[str, Any]:
        directive: dict[str, Any] = {
            "retryable": True,
            "after_ms": self.after_ms,
            "max_attempts": self.max_attempts,
            "reason": self.reason,
        }
        if self.modifications:
            directive["modifications"] = self.modifications
        return directive


@dataclass(frozen=True)
class SpecialistSpec:
    name: str
    handler: Handler
    capabilities: list[str] = field(default_factory=list)
    version: str = "1"
    on_decision: DecisionHandler | None = None


SPECIALISTS: dict[str, SpecialistSpec] = {}


def specialist(
    name: str,
    *,
    capabilities: list[str] | None = None,
    version: str = "1",
    on_decision: DecisionHandler | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``fn(task, payload, meta) -> dict`` as specialist ``name``.

    ``on_decision(notice)`` receives the DecisionNotice of approvals decided in runs that called it.
    """

    def decorate(fn: Handler) -> Handler:
        SPECIALISTS[name] = SpecialistSpec(
            name=name, handler=fn, capabilities=list(capabilities or []), version=version, on_decision=on_decision
        )
        return fn

    return decorate


def invoke_in_process(ctx: NodeContext, name: str, task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Call the specialist registered in this process, retrying as its Retry asks (cut to 30 s waits)."""
    spec = SPECIALISTS.get(name)
    if spec is None:
        raise ActivityError("send_a2a", f"specialist {name!r} is not hosted in this process")
    attempt = 1
    while True:
        meta = {"trace_id": ctx.trace_id, "step": ctx.step, "node": ctx.node, "specialist": name, "attempt": attempt}
        try:
            result = spec.handler(task, payload, meta)
            break
        except Retry as retry:
            if attempt >= retry.max_attempts:
                raise ActivityError(
                    "send_a2a", f"specialist {name!r} asked to retry {attempt} times: {retry.reason}"
                ) from None
            attempt += 1
            payload = {**payload, **retry.modifications}
            if ctx.cancelled.wait(min(retry.after_ms / 1000, INPROCESS_RETRY_CAP_SECONDS)):
                raise ActivityError("send_a2a", "cancelled while waiting to retry") from None
    if not isinstance(result, dict):
        raise ActivityError("send_a2a", f"specialist {name!r} returned {type(result).__name__}, not an object")
    return result
