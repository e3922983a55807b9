"""The site's error pages: 403 and 404 in the site's layout (navigation kept), saying why.

``handler403``/``handler404`` in cmo_site.urls point here; the 500 page is Django's
``server_error`` rendering templates/500.html (with no request, so it needs no database).
A page that knows what was not found calls :func:`not_found_page` itself, which also
works with DEBUG on (where Django would show its debug 404 instead of ``handler404``).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def not_found_page(request: HttpRequest, *, reason: str = "", **extra: Any) -> HttpResponse:
    """The styled 404; ``extra`` goes to the template (a run id prefix's choices, say)."""
    return render(request, "404.html", {"reason": reason, "request_path": request.path, **extra}, status=404)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Http404("no graph named x") says why; a URL that matches nothing carries a dict of the patterns tried.
    message = exception.args[0] if exception is not None and exception.args else ""
    return not_found_page(request, reason=message if isinstance(message, str) else "")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403 with the reason the check gave (cmo_site.shared.permissions.require: "your role does not allow operate")."""
    reason = str(exception) if exception is not None else ""
    return render(request, "403.html", {"reason": reason}, status=403)
