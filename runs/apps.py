from __future__ import annotations

import importlib

from django.apps import AppConfig
from django.conf import settings


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        """Import the configured graph modules so their nodes and specialists register."""
        from runs.engine import specialists
        from runs.services.a2a import remote_publish
        from runs.services.specialists import specialist_refusal

        specialists.registry_check = specialist_refusal
        specialists.remote_publish = remote_publish
        for module in settings.CMO_GRAPH_MODULES:
            importlib.import_module(module)
