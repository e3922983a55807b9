"""Operations endpoints: readiness and Prometheus metrics (/health, liveness, is in cmo_site.urls)."""

from django.urls import URLPattern, URLResolver, path

from cmo_site.prometheus import metrics
from cmo_site.shared.health import health_ready

urlpatterns: list[URLPattern | URLResolver] = [
    path("health/ready", health_ready, name="health-ready"),
    path("metrics", metrics, name="metrics"),
]
