"""How apps plug into the engine: activity kinds, and the policy every executor must be given.

The engine knows the activities that need nothing but the run (``now``, ``rand``, ``randint``,
``uuid4``, ``http``, ``wait_for_signal``). Every other kind is registered by the app that owns it,
from its ``AppConfig.ready()``: the runs app registers artifacts, ``db_query``, ``call_mcp`` and
``send_a2a``; approvals registers ``request_approval`` and ``require_approval`` and the policy
engine. A node calls a registered kind as ``ctx.activities.<method>(...)``; the kind's ``build``
turns the arguments into the request to record and the effect to run, and the engine does the
rest (policy, redaction, recording, replay) exactly as for its own kinds.

To add an activity kind::

    from runs.engine.plugins import ActivityKind, Call, PLUGINS

    def build(ctx, seq, text):
        return Call(request={"text": text}, effect=lambda: shout(text))

    PLUGINS.register_activity(ActivityKind(name="shout", method="shout", build=build))

Registering the same method again replaces it (a reloaded module); the recorded ``name`` is the
activity's type in every record, so renaming it changes the hashes of runs in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runs.engine.context import NodeContext
    from runs.engine.stores import RunSnapshot


@dataclass(frozen=True)
class Call:
    """One activity call as the engine records it: the request, the effect that answers it, and the bytes it
    sends when the request does not hold them (an artifact's content)."""

    request: dict[str, Any]
    effect: Callable[[], Any]
    sent_bytes: int | None = None
    # More of the policies' input (merged into it, not recorded): what the request alone does not say, e.g.
    # an LLM call's estimated input tokens and the run's spend so far, as {"llm": {...}}.
    facts: dict[str, Any] | None = None


@dataclass(frozen=True)
class ActivityKind:
    """``ctx.activities.<method>(*args, **kwargs)``: ``build(ctx, seq, *args, **kwargs)`` gives the Call,
    recorded as type ``name``; ``answer`` turns the recorded response into what the node gets."""

    name: str
    method: str
    build: Callable[..., Call]
    answer: Callable[[Any], Any] | None = None
    # What a completed call spent, from its response: {"tokens": int, "cost_usd": float, ...labels}; the
    # store adds it to the run's totals in the record's own transaction (runs.services.run_store).
    usage: Callable[[Any], dict[str, Any] | None] | None = None


class Policy:
    """What an Executor asks before a run starts and before each new activity effect.

    ``check`` raises PolicyDenied (runs.engine.errors) to refuse; see approvals.policy.PolicyEngine.
    """

    def __call__(self, kind: str, payload: dict[str, Any], ctx: NodeContext) -> None:
        raise NotImplementedError

    def check_run_start(self, snapshot: RunSnapshot) -> None:
        raise NotImplementedError


class NoPolicy(Policy):
    """Allows everything: for a test or a tool that wants no policy, said out loud (``policy=NO_POLICY``)."""

    def __call__(self, kind: str, payload: dict[str, Any], ctx: NodeContext) -> None:
        return None

    def check_run_start(self, snapshot: RunSnapshot) -> None:
        return None


NO_POLICY = NoPolicy()


class Plugins:
    """The registry the apps fill at start-up; the engine reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._activities: dict[str, ActivityKind] = {}
        self._policy_factory: Callable[[], Policy] | None = None

    def register_activity(self, kind: ActivityKind) -> None:
        with self._lock:
            self._activities[kind.method] = kind

    def activity(self, method: str) -> ActivityKind | None:
        return self._activities.get(method)

    def activity_methods(self) -> list[str]:
        return sorted(self._activities)

    def register_policy(self, factory: Callable[[], Policy]) -> None:
        """The policy a worker gives its executors (one per worker host: it compiles once)."""
        self._policy_factory = factory

    def policy(self) -> Policy:
        """A new policy from the registered factory; LookupError when no app registered one."""
        if self._policy_factory is None:
            raise LookupError("no policy engine is registered: add the approvals app to INSTALLED_APPS")
        return self._policy_factory()


PLUGINS = Plugins()
