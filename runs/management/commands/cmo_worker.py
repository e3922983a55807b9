"""A Channels worker for ``cmo.runs`` with the run host: ``python manage.py cmo_worker``."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared import telemetry
from cmo_site.shared.health import DependencyUnavailable, startup_check
from runs.services.graphs import graph_sync_all
from runs.specialists.registry import specialist_sync_inprocess
from runs.worker.channel import listen_forever
from runs.worker.host import WorkerHost, set_current_host

log = logging.getLogger(__name__)


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
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            _close_loop(loop)
            host.stop()
            set_current_host(None)
            self.stdout.write(f"worker {host.owner} stopped")

    async def _main(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await listen_forever(stop)


SHUTDOWN_GRACE_SECONDS = 5.0


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the listener's loop, waiting at most SHUTDOWN_GRACE_SECONDS.

    ``asyncio.run`` waits for every cancelled task without a limit; a channel-layer receive
    that ignores its cancellation then kept a worker alive after SIGTERM (seen in the a2a bench).
    """
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, stuck = loop.run_until_complete(asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS))
        for task in stuck:
            log.warning(
                "listener task %s did not stop within %.0fs; leaving it", task.get_coro(), SHUTDOWN_GRACE_SECONDS
            )
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
