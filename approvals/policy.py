"""Policies as code: the Rego files in ``approvals/policies`` evaluated with regopy.

The files are compiled once into a bundle (``Interpreter.build``) with the
specialist registry as data, and every evaluation is one
``query_bundle_entrypoint`` of ``data.cmo.main.deny`` (the union of every
package's ``deny`` set). The bundle is rebuilt only when the registry's
names change; the registry is re-read at most every
``CMO_POLICY_REGISTRY_TTL`` seconds.

Decisions are cached by input (the policies are pure functions of input and
data), so the many identical inputs of ``now``, ``rand`` or a loop's same call
skip Rego; the cache is cleared whenever the bundle is rebuilt.

The input of an evaluation (see :func:`policy_input`)::

    {"activity": "send_a2a", "specialist": "healer", "task": "heal",
     "fields": ["email"], "write_scopes": ["healing/checkout"], "size": 1234, "role": "operator"}

``fields`` and ``write_scopes`` are what an activity declares it reads and
writes: the ``fields`` and ``write_scope`` (or ``write_scopes``) keys of a
specialist invocation's payload, an MCP call's arguments or an HTTP JSON
body. ``role`` is ``Run.context["role"]``, the role of whoever started the
run. ``size`` is the request's canonical JSON size in bytes.

A :class:`PolicyEngine` instance is the ``policy=`` of an Executor: it is
called before every new activity effect, and :meth:`PolicyEngine.check_run_start`
at run start. A denial is recorded as a ``policy_denied`` RunEvent and raised
as PolicyDenied, which fails the activity (and the step) with the rules'
messages.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regopy import Interpreter

from runs.engine.boundary import activity_region
from runs.engine.errors import PolicyDenied
from runs.engine.plugins import Policy

if TYPE_CHECKING:
    from runs.engine.context import NodeContext
    from runs.engine.stores import RunSnapshot

POLICY_DIR = Path(__file__).resolve().parent / "policies"
ENTRYPOINT = "cmo/main/deny"
RUN_START = "run_start"


def registered_specialists() -> list[str]:
    """Names a run may call: registered and enabled rows, plus in-process specialists not yet synced
    (the same view as ``runs.specialists.registry.specialist_refusal``)."""
    from runs.engine.specialists import SPECIALISTS
    from runs.models import Specialist

    rows = dict(Specialist.objects.values_list("name", "registered"))
    allowed = set(Specialist.objects.filter(registered=True, enabled=True).values_list("name", flat=True))
    allowed |= {name for name in SPECIALISTS if name not in rows}
    return sorted(allowed)


def _strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def policy_input(
    kind: str, request: dict[str, Any], *, size: int, role: str, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Rego input for an activity ``kind`` with (stored, redacted) ``request``, and the ``facts`` its kind
    adds (an LLM call's ``input.llm``: provider, model, estimated tokens, the run's spend and budget)."""
    declared: Any = request.get("payload") or request.get("arguments") or request.get("json") or {}
    if not isinstance(declared, dict):
        declared = {}
    fields = _strings(declared.get("fields")) + _strings(request.get("fields"))
    scopes = _strings(declared.get("write_scope")) + _strings(declared.get("write_scopes"))
    # The facts come first, so none can stand in for the engine's own keys (the role above all).
    return {
        **(facts or {}),
        "activity": kind,
        "specialist": str(request.get("specialist") or ""),
        "task": str(request.get("task") or ""),
        "fields": fields,
        "write_scopes": scopes,
        "size": int(size),
        "role": role,
    }


class PolicyEngine(Policy):
    """The compiled policies; callable as an Executor's ``policy``. Thread-safe (one lock per engine)."""

    def __init__(
        self,
        *,
        policy_dir: Path = POLICY_DIR,
        registry: Callable[[], Sequence[str]] | None = None,
        registry_ttl: float | None = None,
        record: bool = True,
        cache_size: int = 4096,
    ):
        self.policy_dir = policy_dir
        self.modules = {p.name: p.read_text() for p in sorted(policy_dir.glob("*.rego"))}
        if not self.modules:
            raise FileNotFoundError(f"no .rego files in {policy_dir}")
        self._registry = registry or registered_specialists
        if registry_ttl is None:
            from django.conf import settings

            registry_ttl = float(settings.CMO_POLICY_REGISTRY_TTL)
        self.registry_ttl = registry_ttl
        self.record = record
        self._lock = threading.Lock()
        self._specialists: tuple[str, ...] | None = None
        self._checked_at = float("-inf")
        self._bundle: Any = None
        self._rego = Interpreter()
        # Denials by input (canonical JSON): the policies are pure functions of input and data,
        # so a repeated input (every `now`, `rand`, the same call in a loop) skips Rego. Cleared on rebuild.
        self._decisions: dict[str, list[str]] = {}
        self.cache_size = cache_size
        self.builds = 0

    # -- compiling --------------------------------------------------------------------

    def compile(self, specialists: Sequence[str]) -> None:
        """Build the bundle with ``specialists`` as ``data.registry.specialists`` (RegoError on a bad file)."""
        builder = Interpreter()
        for name, text in self.modules.items():
            builder.add_module(name, text)
        builder.add_data({"registry": {"specialists": sorted(specialists)}})
        bundle = builder.build(None, [ENTRYPOINT])
        self._bundle = bundle
        self._specialists = tuple(sorted(specialists))
        self._decisions.clear()
        self.builds += 1

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the registry if the TTL passed (or ``force``); rebuild the bundle if it changed."""
        now = time.monotonic()
        if not force and self._bundle is not None and now - self._checked_at < self.registry_ttl:
            return
        with activity_region():  # the engine's own database read, even when called inside a node
            names = tuple(sorted(self._registry()))
        self._checked_at = now
        if names != self._specialists or self._bundle is None:
            self.compile(names)

    # -- evaluating -------------------------------------------------------------------------

    def evaluate(self, inp: dict[str, Any]) -> list[str]:
        """The denial messages for ``inp`` (empty: allowed), sorted."""
        key = json.dumps(inp, sort_keys=True, separators=(",", ":"))
        with self._lock:
            self.refresh()
            cached = self._decisions.get(key)
            if cached is not None:
                return list(cached)
            denials = self._evaluate(inp)
            if len(self._decisions) >= self.cache_size:
                self._decisions.clear()
            self._decisions[key] = denials
            return list(denials)

    def _evaluate(self, inp: dict[str, Any]) -> list[str]:
        """One evaluation of the compiled bundle (no cache). Caller holds the lock."""
        self._rego.set_input(inp)
        out = self._rego.query_bundle_entrypoint(self._bundle, ENTRYPOINT)
        # Never out.binding(): on an undefined result it aborts the process. `deny` is always defined.
        if not out.ok() or len(out) == 0:
            raise RuntimeError(f"policy evaluation gave no result for {inp}: {out}")
        return sorted(str(m) for m in out[0].expressions[0])

    def evaluate_uncached(self, inp: dict[str, Any]) -> list[str]:
        """:meth:`evaluate` without the decision cache (benchmarks, tests)."""
        with self._lock:
            self.refresh()
            return self._evaluate(inp)

    def __call__(self, kind: str, payload: dict[str, Any], ctx: NodeContext) -> None:
        """The executor's hook before a new activity: PolicyDenied on any denial."""
        request, size, facts = payload.get("request") or {}, payload.get("size", 0), payload.get("facts")
        inp = policy_input(kind, request, size=size, role=_role(ctx.run), facts=facts)
        denials = self.evaluate(inp)
        if denials:
            self._deny(ctx.run.run_id, ctx.step, kind, inp, denials)

    def check_run_start(self, snapshot: RunSnapshot) -> None:
        """Evaluate the policies for the run itself before its first step; PolicyDenied on a denial."""
        state = snapshot.state if isinstance(snapshot.state, dict) else {}
        request = {"fields": state.get("fields"), "specialist": state.get("specialist") or ""}
        inp = policy_input(RUN_START, request, size=0, role=_role(snapshot))
        denials = self.evaluate(inp)
        if denials:
            self._deny(snapshot.run_id, snapshot.step_index, RUN_START, inp, denials)

    def _deny(self, run_id: int, step: int, kind: str, inp: dict[str, Any], denials: list[str]) -> None:
        message = "denied by policy: " + "; ".join(denials)
        if self.record:
            from runs.services.events import run_event_add

            with activity_region():
                run_event_add(
                    run_id=run_id,
                    kind="policy_denied",
                    step=step,
                    actor="policy",
                    message=f"{kind}: {message}",
                    detail={"activity": kind, "denials": denials, "input": inp},
                )
        raise PolicyDenied(kind, message, kind="policy")


def _role(snapshot: RunSnapshot) -> str:
    return str((snapshot.context or {}).get("role") or "")
