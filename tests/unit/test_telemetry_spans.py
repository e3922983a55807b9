"""OpenTelemetry: run, step and activity spans with the cmo.* attributes; HTTP spans; the trace carrier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cmo_site.shared.telemetry import exporter_names, id_generator, trace_carrier
from runs.engine import observability
from runs.engine import statemachine as sm
from runs.services.leases import lease_yield
from runs.services.runs import run_start
from tests.helpers import OWNER, execute, start_and_execute

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Engine spans go to an in-memory exporter for the test (a provider of its own, not the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=id_generator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.use_tracer(provider.get_tracer("test"))
    yield exporter
    observability.use_tracer(None)
    provider.shutdown()


def _by_name(finished: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name.startswith(prefix)]


@pytest.mark.django_db(transaction=True)
def test_a_run_gives_run_step_and_activity_spans_with_cmo_attributes(spans: InMemorySpanExporter) -> None:
    run = start_and_execute("t-cycle", {"target": 2})
    other = start_and_execute("t-now-rand", {})
    assert run.status == other.status == sm.COMPLETED
    finished = spans.get_finished_spans()

    run_spans = _by_name(finished, "cmo.run")
    assert [s.attributes["cmo.trace_id"] for s in run_spans] == [run.trace_id, other.trace_id]
    assert run_spans[0].attributes["cmo.graph"] == "t-cycle"
    assert run_spans[0].attributes["cmo.outcome"] == "completed"

    steps = [s for s in _by_name(finished, "cmo.step") if s.attributes["cmo.trace_id"] == run.trace_id]
    assert [(s.name, s.attributes["cmo.step_index"], s.attributes["cmo.node_id"]) for s in steps] == [
        ("cmo.step t_count", 0, "t_count"),
        ("cmo.step t_count", 1, "t_count"),
    ]
    assert all(s.parent is not None and s.parent.span_id == run_spans[0].context.span_id for s in steps)

    activities = _by_name(finished, "cmo.activity")
    assert [s.attributes["cmo.activity_type"] for s in activities] == ["now", "rand", "randint"]
    step_span = next(s for s in _by_name(finished, "cmo.step") if s.attributes["cmo.trace_id"] == other.trace_id)
    for s in activities:
        assert s.attributes["cmo.trace_id"] == other.trace_id
        assert s.attributes["cmo.step_index"] == 0 and s.attributes["cmo.node_id"] == "t_now_rand"
        assert s.parent is not None and s.parent.span_id == step_span.context.span_id
        assert s.context.trace_id == run_spans[1].context.trace_id


@pytest.mark.django_db(transaction=True)
def test_every_slice_of_a_run_is_in_the_trace_named_by_the_runs_trace_id(spans: InMemorySpanExporter) -> None:
    run = run_start(graph_name="t-cycle", data={"target": 3}, seed=1)
    for _ in range(3):  # one step per slice, as a worker yielding after each step would
        execute(run, max_steps=1)
        lease_yield(run_id=run.pk, owner=OWNER)
    run.refresh_from_db()
    assert run.status == sm.COMPLETED
    finished = spans.get_finished_spans()
    slices = _by_name(finished, "cmo.run")
    assert len(slices) == 3 and all(s.parent is None for s in slices)
    assert {f"{s.context.trace_id:032x}" for s in finished} == {run.trace_id}


@pytest.mark.django_db(transaction=True)
def test_without_a_tracer_no_span_is_made() -> None:
    observability.use_tracer(None)
    exporter = InMemorySpanExporter()
    run = start_and_execute("t-now-rand", {})
    assert run.status == sm.COMPLETED
    assert exporter.get_finished_spans() == ()
    assert trace_carrier() == {}


def test_the_trace_carrier_is_the_current_span_as_a_w3c_traceparent(spans: InMemorySpanExporter) -> None:
    tracer = TracerProvider().get_tracer("carrier")
    with tracer.start_as_current_span("invoke") as span:
        carrier = trace_carrier()
    ctx = span.get_span_context()
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


@pytest.mark.parametrize(
    ("value", "names"), [(None, []), ("none", []), ("otlp", ["otlp"]), ("console,otlp", ["console", "otlp"])]
)
def test_the_exporter_comes_from_otel_traces_exporter(
    monkeypatch: pytest.MonkeyPatch, value: str | None, names: list[str]
) -> None:
    if value is None:
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert exporter_names() == names


def test_console_exporter_prints_http_spans_with_secrets_masked_in_the_url() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "cmo-test",
        "DJANGO_SETTINGS_MODULE": "cmo_site.settings",
    }
    code = (
        "import django; django.setup(); from cmo_site.shared.telemetry import configure; assert configure(); "
        "from django.test import Client; assert Client().get('/health?token=tk-0987654321').status_code == 200"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    span = json.loads(result.stdout)
    assert span["name"] == "GET health" and span["kind"] == "SpanKind.SERVER"
    assert span["attributes"]["http.status_code"] == 200
    assert span["resource"]["attributes"]["service.name"] == "cmo-test"
    assert "tk-0987654321" not in result.stdout
