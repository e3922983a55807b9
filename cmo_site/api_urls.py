"""The JSON API under /api/; anything else under /api/ is a JSON 404 (and a wrong method a JSON 405), never HTML."""

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from cmo_site.api import api
from cmo_site.shared.api import json_method_not_allowed


@csrf_exempt  # a JSON 404 for any method, not Django's HTML CSRF page
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return JsonResponse(
        {"code": "not_found", "message": f"no API endpoint at {request.path}", "details": None}, status=404
    )


_patterns, _app_name, _namespace = api.urls
for _pattern in _patterns:
    if isinstance(_pattern, URLPattern):
        _pattern.callback = json_method_not_allowed(_pattern.callback)

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include((_patterns, _app_name), namespace=_namespace)),
    re_path(r"^(?P<rest>.*)$", not_found),
]
