"""Log lines: JSON (one object per line) or text, with run and step ids, secrets redacted.

``settings.LOGGING`` puts :class:`RedactionFilter` and :class:`ContextFilter`
on the console handler and picks :class:`JsonFormatter` (``CMO_LOG_FORMAT=json``,
the default when DEBUG is off) or :class:`TextFormatter`.

A JSON line has ``ts`` (UTC ISO 8601), ``level``, ``logger``, ``message``,
then whatever is known where it was written: ``run_id``, ``trace_id``,
``step``, ``node``, ``activity``, ``worker`` (set by the executor and the
worker host), ``otel_trace_id``/``otel_span_id`` when a span is recording,
fields passed with ``extra=`` and ``exc`` for a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from runs.engine.observability import log_fields, tracing
from runs.engine.redaction import REDACTED, is_secret_key, redact, redact_text

# LogRecord's own attributes: anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "cmo"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactionFilter(logging.Filter):
    """Masks credentials in the message, its arguments, ``extra=`` fields and tracebacks.

    The message is rendered here once (``msg % args``), redacted, and stored
    back with no args, so every handler and formatter sees the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call still gets logged
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact_text(message), None
        for key, value in _extras(record).items():
            setattr(record, key, REDACTED if is_secret_key(key) else redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class ClientErrorFilter(logging.Filter):
    """A 4xx response logged by ``django.request`` (a refused role, a missing run) is one line, not a traceback:
    the client asked for something it may not have, and the server did nothing wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.name == "django.request" and isinstance(status, int) and 400 <= status < 500:
            record.exc_info, record.exc_text = None, None
        return True


class ContextFilter(logging.Filter):
    """Copies the engine's current run/step fields onto the record (as ``record.cmo``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(log_fields())
        if tracing():
            from opentelemetry import trace

            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                fields["otel_trace_id"] = format(ctx.trace_id, "032x")
                fields["otel_span_id"] = format(ctx.span_id, "016x")
        record.cmo = fields
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "cmo", None) or log_fields())
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger [run_id=.. step=..] message`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        fields = getattr(record, "cmo", None) or log_fields()
        if not fields:
            return text
        head, _, message = text.partition(f" {record.name} ")
        context = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {record.name} [{context}] {message}"
