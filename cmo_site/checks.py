"""CMO's own deployment checks, run by ``manage.py check --deploy``.

Registered on import; ``CmoSiteConfig.ready()`` imports this module.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security, deploy=True)
def metrics_token_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.CMO_METRICS_TOKEN:
        return []
    return [
        Warning(
            "CMO_METRICS_TOKEN is not set: /metrics answers any client whose address is loopback, "
            "which behind a reverse proxy on the same host is every client.",
            hint="Set CMO_METRICS_TOKEN and give the scraper 'Authorization: Bearer <token>'.",
            id="cmo.W001",
        )
    ]


@register(deploy=True)
def telemetry_exporter_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from cmo_site.shared.telemetry import exporter_names

    try:
        exporter_names()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="cmo.E001")]
    return []
