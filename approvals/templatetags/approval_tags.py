"""Template helpers for the approvals inbox: the navigation badge and marked (highlighted) text."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from approvals import selectors

register = template.Library()


@register.inclusion_tag("approvals/_nav_badge.html")
def approvals_badge() -> dict[str, Any]:
    """The number of requests waiting, for the "Approvals" link of the navigation on every page."""
    return {"count": selectors.pending_count()}


@register.filter
def marked(segments: list[dict[str, Any]]) -> SafeString:
    """Segments from ``selectors.highlight`` as HTML: marked ones in <mark> (titled with their rules), all escaped."""
    parts = [
        format_html('<mark title="{}">{}</mark>', s["rules"], s["text"]) if s["mark"] else conditional_escape(s["text"])
        for s in segments
    ]
    return mark_safe("".join(parts))  # every part was escaped above


@register.filter
def category_title(category: str) -> str:
    """A risk category as people read it: "api_calls" is "API calls"."""
    return selectors.CATEGORY_TITLES.get(category, category)
