"""Request body limits by endpoint, before anything reads a body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

# Where a trace bundle is uploaded: these take CMO_MAX_BUNDLE_BYTES, every other request CMO_MAX_REQUEST_BYTES.
BUNDLE_API = "/api/runs/import"
BUNDLE_PAGE = "/runs/import/"
# The page's multipart form wraps the file; its own check (ImportForm) then names the file's size.
FORM_OVERHEAD = 1024 * 1024


def body_limit(path: str) -> int:
    if path == BUNDLE_API:
        return int(settings.CMO_MAX_BUNDLE_BYTES)
    if path == BUNDLE_PAGE:
        return int(settings.CMO_MAX_BUNDLE_BYTES) + FORM_OVERHEAD
    return int(settings.CMO_MAX_REQUEST_BYTES)


class BodySizeLimit:
    """413 for a declared body over the endpoint's limit (Django's own check uses the larger, bundle limit).

    The API answers in its JSON error shape; pages with a short text.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = body_limit(request.path)
        if length > limit:
            message = f"the request body is {length} bytes; at most {limit} are accepted here"
            if request.path.startswith("/api/"):
                return JsonResponse({"code": "payload_too_large", "message": message, "details": None}, status=413)
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
