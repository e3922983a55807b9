"""The embedded product in one process: daphne (web + WebSockets), a run host and the scheduler.

One process because the embedded channel layer is in-memory and does not
cross processes (Channels' docs); the worker channel listener runs on
daphne's own event loop, so web requests wake the host directly.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
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


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host``:``port``, or None: found by binding it the way Twisted will
    (with SO_REUSEADDR, so a port a stopped CMO left in TIME_WAIT counts as free), then letting it go."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, OverflowError, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {exc}"
    with socket.socket(family, kind, proto) as probe:
        if os.name == "posix":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            other = port + 1 if port < 65535 else 8001
            return (
                f"port {port} is in use (another CMO or program is listening): run `make run PORT={other}` "
                f"(or cmo_serve --port {other})"
            )
    return None


class Command(BaseCommand):
    help = "Serve the web UI and run a worker and the scheduler in this one process (the embedded mode)."
    _listener: asyncio.Task[None] | None = None

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument("--port", type=int, default=8000, help="port to bind")
        parser.add_argument("--concurrency", type=int, default=None, help="runner threads")
        parser.add_argument(
            "--check-port",
            action="store_true",
            help="only check that the port is free (exit 1 with a message if not) and start nothing: `make run` "
            "does this before it migrates",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Before anything starts (with --check-port from `make run`: before it migrates). A busy port used to be
        # a "Listen failure" log line after the start-up check and the graph sync, and an exit status of 0.
        problem = port_problem(options["host"], options["port"])
        if problem:
            raise CommandError(problem, returncode=1)
        if options["check_port"]:
            return
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
        if not server.listening_addresses:  # taken between the check and daphne's bind: daphne logged why
            raise CommandError(f"could not listen on {options['host']}:{options['port']}", returncode=1)

    @staticmethod
    def _scheduler(stop: threading.Event) -> None:
        """The same loop as ``cmo_scheduler``'s, so it too outlives a lost database connection."""
        if not stop.wait(settings.CMO_SWEEP_SECONDS):
            SchedulerLoop(interval=settings.CMO_SWEEP_SECONDS).run(stop)
