from __future__ import annotations

import importlib

from django.apps import AppConfig
from django.conf import settings


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        """Plug the runs app's activities into the engine, its sweeps and ticks into the scheduler (settling
        spawned runs, releasing dead workers' leases), then import the configured graph modules so their nodes
        and specialists register."""
        from runs import activities
        from runs.scheduler import register_sweep_task, register_tick_task
        from runs.services import events, leases, spawn
        from runs.specialists import routing

        activities.register()
        events.on_run_ended(spawn.run_ended)
        events.on_run_ended(leases.slot_freed)
        register_sweep_task("spawned_settled", spawn.sweep)
        register_tick_task("dead_workers", leases.leases_release_dead)
        register_tick_task("a2a_failover", routing.routes_failover)
        for module in settings.CMO_GRAPH_MODULES:
            importlib.import_module(module)
