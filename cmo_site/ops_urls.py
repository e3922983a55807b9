"""Operations endpoints: readiness and Prometheus metrics."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
