"""Template helpers for the dashboard: role checks and small formatting."""

from __future__ import annotations

import json
from typing import Any

from django import template

from cmo_site.shared.permissions import can as _can
from cmo_site.shared.permissions import primary_role
from runs.engine.redaction import redact
from runs.selectors import shown_error as _shown_error

register = template.Library()


@register.filter
def can(user: Any, action: str) -> bool:
    return _can(user, action)


@register.filter
def role(user: Any) -> str:
    return primary_role(user)


@register.filter
def shown_error(text: str) -> str:
    """runs.selectors.shown_error: no server paths in a displayed error."""
    return _shown_error(text)


@register.filter
def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON as text, secrets masked; the template escapes it."""
    return json.dumps(redact(value), indent=2, sort_keys=True, default=str)


@register.filter
def percent_of(value: float, peak: float) -> float:
    return round(100.0 * float(value) / float(peak), 1) if peak else 0.0


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key)
