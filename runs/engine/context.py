"""What a node sees: ``ctx.activities`` and ``ctx.result``.

Every side effect goes through :class:`Activities`. The nth call of a step
has key (run, step, n). A record with the same request hash is returned (or
its error raised) without doing the effect; a different hash raises
NonDeterminismError. Otherwise the effect runs outside the boundary guard and
its record is committed at once, before the node sees the answer.

An activity call is the engine's code, not the node's: it runs entirely in
``activity_region``, so neither the boundary guard nor the determinism
detector watches it (nor costs anything there).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runs.engine import http as http_effect
from runs.engine import observability as obs
from runs.engine.boundary import activity_region
from runs.engine.composition import Send
from runs.engine.errors import (
    ActivityError,
    Cancelled,
    CheckpointUnavailable,
    EngineError,
    NonDeterminismError,
    PolicyDenied,
    ReplayMiss,
    RunAborted,
    Suspend,
)
from runs.engine.hashing import normalize
from runs.engine.plugins import PLUGINS, Policy
from runs.engine.redaction import redact, redact_text
from runs.engine.secrets import secret_get
from runs.engine.stores import (
    ACTIVITY_COMPLETED,
    ACTIVITY_FAILED,
    ACTIVITY_PENDING,
    ActivityRecord,
    ActivityStore,
    RunSnapshot,
)

__all__ = ["Activities", "Cancelled", "NodeContext", "NodeResult"]


@dataclass
class NodeResult:
    state: Any
    edge: str | None = None
    output: Any = None
    # A dynamic fan-out (runs.engine.composition): one branch per Send, at most ``limit`` at once.
    send: list[Send] | None = None
    limit: int | None = None


# The response of a failed record that a policy refused (replayed as PolicyDenied, never retried).
DENIED_KEY = "denied_by_policy"


def _sent_size(request: Any, redacted_size: int) -> int:
    """Bytes of ``request`` as JSON before redaction: what the effect sends, not what the record keeps."""
    try:
        return len(json.dumps(request, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError, RecursionError):
        return redacted_size


# The activities the engine itself provides; apps register the others (runs.engine.plugins).
ENGINE_ACTIVITIES = ("now", "rand", "randint", "uuid4", "http")


class Activities:
    def __init__(
        self,
        ctx: NodeContext,
        activity_store: ActivityStore,
        *,
        replay_only: bool = False,
        policy: Policy | None = None,
    ):
        self._ctx = ctx
        self._store = activity_store
        self._seq = 0
        self._records: dict[int, ActivityRecord] | None = None
        self._replay_only = replay_only
        self._policy = policy
        self.executed: list[ActivityRecord] = []
        # The activity this step is waiting for, once it raised Suspend: a node that caught the
        # signal gets it again on its next activity, and may not return (the executor checks).
        self.pending: ActivityRecord | None = None

    # -- the recording boundary ------------------------------------------------

    def _recorded(self) -> dict[int, ActivityRecord]:
        if self._records is None:
            try:
                self._records = self._store.activities(self._ctx.run.run_id, self._ctx.step)
            except CheckpointUnavailable as exc:
                raise self._ctx.fatal_error(exc) from exc
        return self._records

    def call(
        self,
        kind: str,
        request: dict[str, Any],
        effect: Callable[[], Any],
        *,
        sent_bytes: int | None = None,
        facts: dict[str, Any] | None = None,
        usage: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> Any:
        """Run ``effect`` at most once per (run, step, seq); return its recorded response.

        ``sent_bytes`` is the size of what the effect sends when the request does not hold it
        (an artifact's content); otherwise the policies see the size of the request before
        redaction, because that is what leaves the process. ``facts`` join the policies' input;
        ``usage`` reads what a completed response spent (recorded with it).
        """
        with activity_region():  # the engine's work and the effect: not the node's code
            return self._call(kind, request, effect, sent_bytes, facts, usage)

    def _call(
        self,
        kind: str,
        request: dict[str, Any],
        effect: Callable[[], Any],
        sent_bytes: int | None,
        facts: dict[str, Any] | None = None,
        usage: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> Any:
        self._ctx._check_live()
        if self.pending is not None:
            raise Suspend(f"waiting for {self.pending.type} #{self.pending.seq} of step {self.pending.step}")
        seq = self._seq
        self._seq += 1
        stored_request, request_hash, size = normalize(redact(request), what=f"{kind} request")
        existing = self._recorded().get(seq)
        if existing is not None:
            if existing.type != kind or existing.request_hash != request_hash:
                raise self._ctx.fatal_error(
                    NonDeterminismError(
                        trace_id=self._ctx.run.trace_id,
                        step=self._ctx.step,
                        seq=seq,
                        recorded={"type": existing.type, "request": existing.request},
                        requested={"type": kind, "request": stored_request},
                    )
                )
            if existing.status == ACTIVITY_PENDING:
                self._resend(existing, effect)
            return self._replay(existing)
        if self._replay_only:
            raise self._ctx.fatal_error(
                ReplayMiss(
                    f"step {self._ctx.step} asks for a new activity #{seq} ({kind} {stored_request}) "
                    "that the recorded run does not have"
                )
            )
        if self._policy is not None:
            sent = _sent_size(request, size) if sent_bytes is None else sent_bytes
            try:
                self._policy(kind, {"request": stored_request, "size": sent, "facts": facts or {}}, self._ctx)
            except PolicyDenied as exc:
                self._record_denial(kind, seq, stored_request, request_hash, exc)
                raise
        started = time.perf_counter()
        reason = f"waiting for {kind} #{seq} of step {self._ctx.step}"
        after_record: Callable[[], object] | None = None
        record = ActivityRecord(
            step=self._ctx.step,
            seq=seq,
            type=kind,
            request=stored_request,
            request_hash=request_hash,
            attempt=self._ctx.attempt,
        )
        ctx = self._ctx
        with obs.activity_scope(trace_id=ctx.trace_id, step=ctx.step, node=ctx.node, kind=kind, seq=seq) as span:
            try:
                response = effect()
                record.response, _, _ = normalize(redact(response), what=f"{kind} response")
                record.status = ACTIVITY_COMPLETED
                if usage is not None:
                    record.usage = usage(record.response)
            except Suspend as exc:
                record.status, record.error = ACTIVITY_PENDING, ""
                reason, after_record = exc.reason, exc.after_record
            except ActivityError as exc:
                record.status, record.error = ACTIVITY_FAILED, redact_text(exc.message)
            except Exception as exc:  # noqa: BLE001 - any effect failure is recorded, then re-raised as ActivityError
                record.status, record.error = ACTIVITY_FAILED, redact_text(f"{type(exc).__name__}: {exc}")
            if span is not None:
                obs.mark(span, **{"cmo.activity_status": record.status})
                if record.status == ACTIVITY_FAILED:
                    obs.mark_error(span, record.error)
        record.duration_ms = (time.perf_counter() - started) * 1000
        self._ctx._check_live()
        try:
            stored = self._store.put_activity(self._ctx.run.run_id, record)
        except CheckpointUnavailable as exc:
            raise self._ctx.fatal_error(exc) from exc
        self._recorded()[seq] = stored
        self.executed.append(stored)
        if stored.status == ACTIVITY_PENDING:
            if after_record is not None and stored is record:
                after_record()
            self.pending = stored
            raise Suspend(reason)
        return self._replay(stored)

    def refusal(self, kind: str, request: dict[str, Any]) -> str:
        """Why the policies refuse ``kind`` with ``request``, or "" (none, or no policy): for an activity that
        picks among several targets, each checked as if it were named (runs.specialists.routing)."""
        if self._policy is None:
            return ""
        with activity_region():
            stored, _, size = normalize(redact(request), what=f"{kind} request")
            try:
                self._policy(kind, {"request": stored, "size": _sent_size(request, size), "facts": {}}, self._ctx)
            except PolicyDenied as exc:
                return exc.message
        return ""

    def _record_denial(self, kind: str, seq: int, request: Any, request_hash: str, denial: PolicyDenied) -> None:
        """Keep a policy's refusal as the activity's record, so a replay or a verify reproduces it."""
        record = ActivityRecord(
            step=self._ctx.step,
            seq=seq,
            type=kind,
            request=request,
            request_hash=request_hash,
            status=ACTIVITY_FAILED,
            response={DENIED_KEY: True},
            error=redact_text(denial.message),
            attempt=self._ctx.attempt,
        )
        try:
            stored = self._store.put_activity(self._ctx.run.run_id, record)
        except CheckpointUnavailable as exc:
            raise self._ctx.fatal_error(exc) from exc
        self._recorded()[seq] = stored

    def _resend(self, record: ActivityRecord, effect: Callable[[], Any]) -> None:
        """A step re-executed while its activity is still pending: let the effect send its
        request again (a crash may have come between the record and the send); answers are
        recorded once, so a duplicate is harmless."""
        try:
            effect()
        except Suspend as exc:
            if exc.after_record is not None:
                exc.after_record()
        except Exception:  # noqa: BLE001 - the record stands; the run waits for its answer as before
            pass

    def _replay(self, record: ActivityRecord) -> Any:
        if record.status == ACTIVITY_COMPLETED:
            return record.response
        if record.status == ACTIVITY_FAILED:
            if isinstance(record.response, dict) and record.response.get(DENIED_KEY):
                raise PolicyDenied(record.type, record.error, kind="policy")
            raise ActivityError(record.type, record.error)
        self.pending = record
        raise Suspend(f"waiting for {record.type} #{record.seq} of step {record.step}")

    # -- the activities -----------------------------------------------------------

    def now(self) -> dt.datetime:
        """The current UTC time, recorded: a replay sees the same instant."""
        iso = self.call("now", {}, lambda: dt.datetime.now(dt.UTC).isoformat())
        return dt.datetime.fromisoformat(iso)

    def rand(self) -> float:
        """A float in [0, 1) drawn from the run's seed (and recorded)."""
        seed = f"{self._ctx.run.seed}:{self._ctx.step}:{self._seq}"
        return float(self.call("rand", {}, lambda: random.Random(seed).random()))

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high] drawn from the run's seed (and recorded)."""
        seed = f"{self._ctx.run.seed}:{self._ctx.step}:{self._seq}"
        return int(self.call("randint", {"low": low, "high": high}, lambda: random.Random(seed).randint(low, high)))

    def uuid4(self) -> str:
        """A random UUID (version 4) as a string, generated once and recorded: a replay, a
        resumed step and a verification see the same id, and a fork draws new ones."""
        return str(self.call("uuid4", {}, lambda: str(uuid.uuid4())))

    def http(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """A real HTTP request; returns {status, headers, body} (body parsed when JSON).

        The idempotency key travels as the Idempotency-Key header so a server
        can drop the one duplicate that a crash mid-request may cause.
        """
        key = f"{self._ctx.run.trace_id}:{self._ctx.step}:{self._seq}"
        request = {"method": method.upper(), "url": url, "headers": headers or {}, "json": json, "params": params or {}}
        return dict(
            self.call(
                "http",
                request,
                lambda: http_effect.http_request(
                    method, url, headers=headers, json=json, params=params, timeout=timeout, idempotency_key=key
                ),
            )
        )

    def __getattr__(self, method: str) -> Callable[..., Any]:
        """An activity kind an app registered (runs.engine.plugins): ``ctx.activities.write_artifact(...)``."""
        kind = PLUGINS.activity(method)
        if kind is None:
            known = ", ".join([*ENGINE_ACTIVITIES, *PLUGINS.activity_methods()])
            raise AttributeError(f"ctx.activities has no activity {method!r}; the activities here are: {known}")

        def activity(*args: Any, **kwargs: Any) -> Any:
            call = kind.build(self._ctx, self._seq, *args, **kwargs)
            response = self.call(
                kind.name, call.request, call.effect, sent_bytes=call.sent_bytes, facts=call.facts, usage=kind.usage
            )
            return kind.answer(response) if kind.answer is not None else response

        activity.__name__ = method
        return activity


class NodeContext:
    """Per-step context handed to a node; ``check_live`` enforces abort, timeouts and cancellation."""

    def __init__(
        self,
        *,
        run: RunSnapshot,
        step: int,
        node: str,
        attempt: int,
        activity_store: ActivityStore,
        abort_check: Callable[[], bool] | None = None,
        replay_only: bool = False,
        policy: Policy | None = None,
    ):
        self.run = run
        self.step = step
        self.node = node
        self.attempt = attempt
        self.trace_id = run.trace_id
        self._cancelled = threading.Event()
        self.fatal: EngineError | None = None
        self._abort_check = abort_check
        self.activities = Activities(self, activity_store, replay_only=replay_only, policy=policy)

    def secret(self, name: str) -> str:
        """Secret ``name`` from the worker's environment; not recorded, and refused in state (runs.engine.secrets)."""
        return secret_get(name)

    def result(
        self,
        state: Any,
        edge: str | None = None,
        output: Any = None,
        *,
        send: list[Send] | None = None,
        limit: int | None = None,
    ) -> NodeResult:
        """What the step returns: the new state, the edge to follow, an output; or, with ``send``, branches to
        fan out to (``Send(node, input)`` each, at most ``limit`` running at once), which meet at a join."""
        return NodeResult(state=state, edge=edge, output=output, send=send, limit=limit)

    def fatal_error(self, error: EngineError) -> EngineError:
        """Remember an error the step must fail with even if the node catches it."""
        if self.fatal is None:
            self.fatal = error
        return error

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> threading.Event:
        """Set when the step is abandoned (timeout, shutdown): wait on it instead of sleeping."""
        return self._cancelled

    def check_live(self) -> None:
        """Raise Cancelled or RunAborted if the step must stop (node code may call it between long computations)."""
        with activity_region():  # the abort check is the engine's own read
            self._check_live()

    def _check_live(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"step {self.step} ({self.node}) was abandoned; no more activities may run")
        if self._abort_check is not None and self._abort_check():
            raise RunAborted(f"run {self.trace_id} was aborted")
