"""The scheduler: wakes workers for runnable runs, enforces run timeouts and applies retention (hourly).

Safe to run several: wake-ups are idempotent and timeouts lock the run row. It
keeps going across database outages (runs.scheduler.SchedulerLoop).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared import telemetry
from cmo_site.shared.health import DependencyUnavailable, startup_check
from runs.scheduler import SchedulerLoop


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
        if options["once"]:
            self.report({**self.sweep_once(), "retention": SchedulerLoop.retention()})
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        verbose = options["verbosity"] > 1
        SchedulerLoop(interval=interval, report=self.report if verbose else self.report_retention).run(stop)

    def sweep_once(self) -> dict[str, Any]:
        """One sweep and worker-row cleanup; a database error is raised (``--once`` exits non-zero)."""
        return SchedulerLoop.sweep_round()

    def report(self, result: dict[str, Any]) -> None:
        self.stdout.write(f"woke {result['woken']} runs, timed out {result['timed_out']}")
        self.report_retention(result)

    def report_retention(self, result: dict[str, Any]) -> None:
        counts = result.get("retention")
        if counts and counts["runs"]:
            self.stdout.write(f"retention deleted {counts['runs']} runs and {counts['blobs']} blobs")
