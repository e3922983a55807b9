"""Log lines: one JSON object per event in production, with run/step fields and secrets masked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cmo_site.shared.log_format import ContextFilter, JsonFormatter, RedactionFilter, TextFormatter
from runs.engine import observability as obs

ROOT = Path(__file__).resolve().parents[2]


def _through_handler(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    for f in (ContextFilter(), RedactionFilter()):
        f.filter(record)
    return formatter.format(record)


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom with password=hunter2")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("cmo.test", logging.ERROR, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_a_json_line_carries_the_run_step_and_extra_fields_with_secrets_masked() -> None:
    with obs.run_scope(run_id=7, trace_id="abc123", graph="g", version=1):
        with obs.step_scope(trace_id="abc123", step=3, node="triage", attempt=1):
            record = _record("sent %s", {"token": "t-secret-1"}, exc=True, cookie="c-secret-2", user="bob")
            line = _through_handler(record, JsonFormatter())
    assert "\n" not in line  # one event, one line, traceback included
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "cmo.test"
    assert data["run_id"] == 7 and data["trace_id"] == "abc123" and data["step"] == 3 and data["node"] == "triage"
    assert data["user"] == "bob" and data["cookie"] == "[redacted]"
    assert data["ts"].endswith("+00:00")
    assert "RuntimeError" in data["exc"]
    for secret in ("t-secret-1", "c-secret-2", "hunter2"):
        assert secret not in line


def test_the_log_fields_end_with_their_scope() -> None:
    with obs.run_scope(run_id=1, trace_id="t1", graph="g", version=1):
        assert obs.log_fields()["run_id"] == 1
    assert obs.log_fields() == {}
    data = json.loads(_through_handler(_record("outside"), JsonFormatter()))
    assert "run_id" not in data


def test_the_text_format_puts_the_fields_in_brackets() -> None:
    with obs.bound(worker="host:1"), obs.run_scope(run_id=9, trace_id="t9", graph="g", version=1):
        line = _through_handler(_record("step done"), TextFormatter())
    assert "ERROR cmo.test [worker=host:1 run_id=9 trace_id=t9] step done" in line


def test_production_settings_log_json_lines_to_stderr() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CMO_LOG_FORMAT")},
        "DEBUG": "false",
        "SECRET_KEY": "log-test-" + "k" * 40,
        "DJANGO_SETTINGS_MODULE": "cmo_site.settings",
    }
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('cmo.child').warning('connecting with %s', 'postgres://app:pw-123456@db/cmo'); "
        "logging.getLogger('django.request').error('bad request')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["cmo.child", "django.request"]
    assert lines[0]["message"] == "connecting with postgres://app:[redacted]@db/cmo"
