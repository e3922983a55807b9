"""A refused form post kept for the page it redirects to (POST-redirect-GET): why, and what was typed.

The post stores the refusal in the session and redirects; the page's GET takes it (once) and shows
the reason beside the form with the text as it was typed, so the address bar never holds the post's
URL and a reload does not post again.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

_KEY = "cmo-refused:"
TYPED_MAX = 20_000  # what is kept of a field as typed (a longer one is refused anyway)


def refusal_keep(request: HttpRequest, *, form: str, error: str, **typed: str) -> None:
    """Keep ``error`` and the ``typed`` fields for the next GET of the page that shows ``form``."""
    request.session[_KEY + form] = {"error": error, **{k: v[:TYPED_MAX] for k, v in typed.items()}}


def refusal_take(request: HttpRequest, *, form: str) -> dict[str, Any]:
    """The refusal kept for ``form`` (then forgotten), or {} when there is none."""
    if not hasattr(request, "session"):
        return {}
    return dict(request.session.pop(_KEY + form, None) or {})
