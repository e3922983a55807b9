"""What the engine tells logs and traces: the current run/step, and spans when tracing is on.

The executor and the activity boundary call :func:`run_scope`,
:func:`step_scope` and :func:`activity_scope`. Each sets the log fields (a
ContextVar read by ``cmo_site.shared.log_format``) and, only when a tracer has been
installed (``cmo_site.shared.telemetry.configure`` with an exporter), opens a span
with the ``cmo.*`` attributes. With tracing off a scope costs a ContextVar set
and reset (well under a microsecond); no OpenTelemetry code runs.

Pure Python: the engine imports no Django and no OpenTelemetry SDK here.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# run_id, trace_id, step, node, activity: whatever is known where a log line is written.
LOG_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("cmo_log_fields", default=None)

_tracer: Any = None


def use_tracer(tracer: Any) -> None:
    """Install an OpenTelemetry tracer for engine spans, or None to turn them off."""
    global _tracer
    _tracer = tracer


def tracing() -> bool:
    return _tracer is not None


def log_fields() -> dict[str, Any]:
    return LOG_FIELDS.get() or {}


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to the log fields for the block (e.g. ``worker=owner``)."""
    token = LOG_FIELDS.set({**(LOG_FIELDS.get() or {}), **fields})
    try:
        yield
    finally:
        LOG_FIELDS.reset(token)


# The OpenTelemetry trace id a new root span should take (read by cmo_site.shared.telemetry's id generator).
ROOT_TRACE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("cmo_root_trace_id", default=None)


def otel_trace_id(trace_id: str) -> int | None:
    """A CMO trace id (32 hex digits, as uuid4().hex makes) as an OpenTelemetry trace id."""
    if len(trace_id) != 32:
        return None
    try:
        value = int(trace_id, 16)
    except ValueError:
        return None
    return value or None


class _Scope:
    """Sets the log fields; opens a span only when a tracer is installed (attributes built only then).

    A run scope's span is a root whose OpenTelemetry trace id is the run's CMO
    trace id, so every slice of a run, on any worker, lands in one trace that
    is found by the id the dashboard shows.
    """

    __slots__ = ("_attributes", "_fields", "_name", "_root", "_span_cm", "_token")

    def __init__(
        self, name: str, fields: dict[str, Any], attributes: Callable[[], dict[str, Any]], root: str | None = None
    ):
        self._name = name
        self._fields = fields
        self._attributes = attributes
        self._root = root
        self._span_cm: Any = None

    def __enter__(self) -> Any:
        self._token = LOG_FIELDS.set(self._fields)
        if _tracer is None:
            return None
        if self._root is None:
            self._span_cm = _tracer.start_as_current_span(self._name, attributes=self._attributes())
        else:
            from opentelemetry.context import Context

            wanted = ROOT_TRACE_ID.set(otel_trace_id(self._root))
            try:
                self._span_cm = _tracer.start_as_current_span(
                    self._name, context=Context(), attributes=self._attributes()
                )
                span = self._span_cm.__enter__()
            finally:
                ROOT_TRACE_ID.reset(wanted)
            return span
        return self._span_cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._span_cm is not None:
                self._span_cm.__exit__(*exc)
        finally:
            LOG_FIELDS.reset(self._token)


def run_scope(*, run_id: int, trace_id: str, graph: str, version: int) -> _Scope:
    """One slice of a run's execution (a worker holding its lease)."""
    return _Scope(
        "cmo.run",
        {**(LOG_FIELDS.get() or {}), "run_id": run_id, "trace_id": trace_id},
        lambda: {"cmo.trace_id": trace_id, "cmo.run_id": run_id, "cmo.graph": graph, "cmo.graph_version": version},
        root=trace_id,
    )


def step_scope(*, trace_id: str, step: int, node: str, attempt: int) -> _Scope:
    return _Scope(
        f"cmo.step {node}",
        {**(LOG_FIELDS.get() or {}), "step": step, "node": node},
        lambda: {"cmo.trace_id": trace_id, "cmo.step_index": step, "cmo.node_id": node, "cmo.attempt": attempt},
    )


def activity_scope(*, trace_id: str, step: int, node: str, kind: str, seq: int) -> _Scope:
    """An activity whose effect is executed (replayed records open no span)."""
    return _Scope(
        f"cmo.activity {kind}",
        {**(LOG_FIELDS.get() or {}), "activity": f"{kind}#{seq}"},
        lambda: {
            "cmo.trace_id": trace_id,
            "cmo.step_index": step,
            "cmo.node_id": node,
            "cmo.activity_type": kind,
            "cmo.activity_seq": seq,
        },
    )


def mark(span: Any, **attributes: Any) -> None:
    """Set attributes on a scope's span (a no-op when tracing is off)."""
    if span is not None:
        for key, value in attributes.items():
            span.set_attribute(key, value)


def mark_error(span: Any, message: str) -> None:
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, message))
