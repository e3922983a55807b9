"""ASGI entry: HTTP, WebSockets and the worker channel (``cmo.runs``)."""

from __future__ import annotations

import os

import django
from django.core.asgi import get_asgi_application

from cmo_site.shared import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmo_site.settings")
django.setup(set_prefix=False)
# Tracing is installed before the app is built: its Django middleware joins settings.MIDDLEWARE.
telemetry.configure()
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - after Django is set up
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from cmo_site.routing import websocket_urlpatterns  # noqa: E402
from runs.consumers import RunDispatchConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "channel": ChannelNameRouter({settings.CMO_WORKER_CHANNEL: RunDispatchConsumer.as_asgi()}),
    }
)
