"""The JSON API under /api/; anything else under /api/ is a JSON 404, not an HTML page."""

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, path, re_path

from cmo_site.api import api


def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return JsonResponse(
        {"code": "not_found", "message": f"no API endpoint at {request.path}", "details": None}, status=404
    )


urlpatterns: list[URLPattern | URLResolver] = [
    path("", api.urls),
    re_path(r"^(?P<rest>.*)$", not_found),
]
