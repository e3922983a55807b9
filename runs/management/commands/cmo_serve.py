"""The embedded product in one process: daphne (web + WebSockets), a run host and the scheduler.

One process because the embedded channel layer is in-memory and does not
cross processes (Channels' docs); the worker channel listener runs on
daphne's own event loop, so web requests wake the host directly.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from channels.routing import get_default_application
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared import telemetry
from cmo_site.shared.health import DependencyUnavailable, startup_check
from runs.scheduler import SchedulerLoop
from runs.services.graphs import graph_sync_all
from runs.specialists.registry import specialist_sync_inprocess
from runs.worker.channel import listen_forever
from runs.worker.host import WorkerHost, set_current_host


class Command(BaseCommand):
    help = "Serve the web UI and run a worker and the scheduler in this one process (the embedded mode)."
    _listener: asyncio.Task[None] | None = None

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument("--port", type=int, default=8000, help="port to bind")
        parser.add_argument("--concurrency", type=int, default=None, help="runner threads")

    def handle(self, *args: Any, **options: Any) -> None:
        telemetry.configure()
        try:
            self.stdout.write(startup_check())
        except DependencyUnavailable as exc:
            raise CommandError(str(exc)) from None
        graph_sync_all()
        specialist_sync_inprocess()
        host = WorkerHost(concurrency=options["concurrency"])
        set_current_host(host)
        stop = threading.Event()

        def on_ready() -> None:
            loop = asyncio.get_event_loop()
            host.start()
            self._listener = loop.create_task(listen_forever(asyncio.Event()))
            threading.Thread(target=self._scheduler, args=(stop,), name="cmo-scheduler", daemon=True).start()
            self.stdout.write(
                f"CMO is serving on http://{options['host']}:{options['port']}/ "
                f"(worker {host.owner}, {host.concurrency} runner threads)"
            )
            password_file = settings.VAR_DIR / "admin-password"
            if password_file.exists():
                self.stdout.write(f"Log in as admin / {password_file.read_text().strip()}")

        server = Server(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(host=options["host"], port=options["port"]),
            ready_callable=on_ready,
            signal_handlers=True,
        )
        try:
            server.run()
        finally:
            stop.set()
            host.stop()
            set_current_host(None)

    @staticmethod
    def _scheduler(stop: threading.Event) -> None:
        """The same loop as ``cmo_scheduler``'s, so it too outlives a lost database connection."""
        if not stop.wait(settings.CMO_SWEEP_SECONDS):
            SchedulerLoop(interval=settings.CMO_SWEEP_SECONDS).run(stop)
