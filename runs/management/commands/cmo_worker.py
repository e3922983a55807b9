"""A Channels worker for ``cmo.runs`` with the run host: ``python manage.py cmo_worker``."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cmo_site import telemetry
from cmo_site.health import DependencyUnavailable, startup_check
from runs.services.graphs import graph_sync_all
from runs.services.specialists import specialist_sync_inprocess
from runs.worker.channel import listen_forever
from runs.worker.host import WorkerHost, set_current_host


class Command(BaseCommand):
    help = "Run a CMO worker: listens on the cmo.runs channel and executes runs it claims."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="runner threads (runs in flight)")
        parser.add_argument("--poll", type=float, default=None, help="seconds between database polls")
        parser.add_argument("--lease", type=float, default=None, help="lease length in seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        telemetry.configure()
        try:
            self.stdout.write(startup_check())
        except DependencyUnavailable as exc:
            raise CommandError(str(exc)) from None
        graph_sync_all()
        specialist_sync_inprocess()
        host = WorkerHost(
            concurrency=options["concurrency"], poll_seconds=options["poll"], lease_seconds=options["lease"]
        )
        set_current_host(host)
        host.start()
        self.stdout.write(f"worker {host.owner} running {host.concurrency} runner threads")
        try:
            asyncio.run(self._main())
        finally:
            host.stop()
            set_current_host(None)
            self.stdout.write(f"worker {host.owner} stopped")

    async def _main(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await listen_forever(stop)
