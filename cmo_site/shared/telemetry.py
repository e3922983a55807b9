"""OpenTelemetry: HTTP spans (opentelemetry-instrumentation-django) and the engine's run/step/activity spans.

Configured from the standard variables, read when :func:`configure` runs
(process start: ``cmo_serve``, ``cmo_worker``, ``cmo_scheduler``; the ASGI
entry point for a bare daphne):

- ``OTEL_TRACES_EXPORTER``: ``none`` (the default: no provider is installed,
  the engine's scopes skip span code entirely), ``otlp`` (OTLP over HTTP/protobuf
  to ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
  headers from ``OTEL_EXPORTER_OTLP_HEADERS``), ``console`` (spans as JSON on
  stdout), or a comma-separated list;
- ``OTEL_SERVICE_NAME`` (default ``cmo``), ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER`` / ``_ARG``: read by the SDK itself.

Engine spans: ``cmo.run`` (one slice of a run on a worker), ``cmo.step <node>``
and ``cmo.activity <type>`` (an executed effect; a replayed record opens no
span), with ``cmo.trace_id``, ``cmo.step_index``, ``cmo.node_id`` and
``cmo.activity_type``. :func:`trace_carrier` gives the W3C ``traceparent`` of the
current span for envelopes sent to specialists.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from runs.engine import observability
from runs.engine.redaction import redact_text

EXPORTERS = ("otlp", "console", "none")
_lock = threading.Lock()
_provider: Any = None


def id_generator() -> Any:
    """Random ids, except that a run's root span takes the run's CMO trace id as its trace id.

    CMO trace ids are uuid4 hex: 128 bits whose low 7 bytes are random, as
    the W3C random trace-id flag requires.
    """
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class CmoIdGenerator(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            wanted = observability.ROOT_TRACE_ID.get()
            return wanted if wanted is not None else super().generate_trace_id()

    return CmoIdGenerator()


def exporter_names() -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER asks for (empty for ``none`` or unset)."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r} (use otlp, console or none)")
    return [n for n in names if n != "none"]


def configure(*, span_exporter: Any = None, instrument_django: bool = True) -> bool:
    """Install the tracer provider and instrumentation once per process; False when tracing is off.

    ``span_exporter`` (tests) is used instead of the environment's exporters.
    Call before the first request is handled: the Django instrumentation adds
    its middleware to settings.MIDDLEWARE.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return True
        names = exporter_names()
        if span_exporter is None and not names:
            observability.use_tracer(None)
            return False
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create(
            {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "cmo"}
        )  # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
        provider = TracerProvider(resource=resource, id_generator=id_generator())
        if span_exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        for name in names:
            if name == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            elif name == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        observability.use_tracer(provider.get_tracer("cmo.engine"))
        if instrument_django:
            from opentelemetry.instrumentation.django import DjangoInstrumentor

            DjangoInstrumentor().instrument(tracer_provider=provider, request_hook=_scrub_request_span)
        _provider = provider
        return True


def _scrub_request_span(span: Any, request: Any) -> None:
    """Mask credentials in the URL attributes of an HTTP span (``?token=...``)."""
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "http.target", "url.full", "url.query"):
        value = attributes.get(key)
        if isinstance(value, str):
            masked = redact_text(value)
            if masked != value:
                span.set_attribute(key, masked)


def shutdown() -> None:
    """Flush and stop exporting (the SDK also does this at interpreter exit)."""
    global _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
            _provider = None
        observability.use_tracer(None)


def trace_carrier() -> dict[str, str]:
    """The W3C trace context of the current span ({"traceparent": ...}); {} when no span is recording."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier
