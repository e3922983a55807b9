"""The scheduler: wakes workers for runnable runs, enforces run timeouts and applies retention (hourly).

Safe to run several: wake-ups are idempotent and timeouts lock the run row.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cmo_site import telemetry
from cmo_site.health import DependencyUnavailable, startup_check
from runs.services.scheduling import retention_tick, sweep

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Dispatch new, resumed and orphaned runs to workers; time out runs past their deadline."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, default=None, help="seconds between sweeps")
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] or settings.CMO_SWEEP_SECONDS
        telemetry.configure()
        try:
            self.stdout.write(startup_check())
        except DependencyUnavailable as exc:
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while True:
            result = self.sweep_once()
            if options["verbosity"] > 1 or options["once"]:
                self.stdout.write(f"woke {result['woken']} runs, timed out {result['timed_out']}")
            self.retention_once()
            if options["once"] or stop.wait(interval):
                break

    def sweep_once(self) -> dict[str, int]:
        return sweep()

    def retention_once(self) -> None:
        """The retention policy, at most once per CMO_RETENTION_INTERVAL_SECONDS; a failure is logged."""
        try:
            counts = retention_tick()
        except Exception:
            log.exception("retention failed; it is tried again at the next interval")
            return
        if counts and counts["runs"]:
            self.stdout.write(f"retention deleted {counts['runs']} runs and {counts['blobs']} blobs")
