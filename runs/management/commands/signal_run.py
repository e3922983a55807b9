"""``python manage.py signal_run TRACE_ID NAME [--payload JSON] [--user NAME]``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared.permissions import OPERATE, can
from runs.engine.errors import CMOError
from runs.engine.json_input import JSONInputError, parse_json
from runs.models import Run
from runs.services.signals import signal_send


class Command(BaseCommand):
    help = (
        "Send signal NAME to a run's wait_for_signal(NAME): delivered now if it waits, else kept until it does. "
        "The run's events record who sent it (--user, or 'cli')."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("trace_id", help="the run's trace id")
        parser.add_argument("name", help="the signal's name")
        parser.add_argument("--payload", default="null", help="the signal's payload as JSON (default: null)")
        parser.add_argument("--user", default="", help="send as this user (recorded as the sender)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            payload = parse_json(options["payload"], what="--payload")
        except JSONInputError as exc:
            raise CommandError(exc.message) from None
        actor = "cli"
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
            if user is None:
                raise CommandError(f"no active user {options['user']!r}")
            if not can(user, OPERATE):
                raise CommandError(f"user {options['user']!r} may not signal runs (the operator role can)")
            actor = user.get_username()
        try:
            run = Run.objects.get(trace_id=options["trace_id"])
        except Run.DoesNotExist:
            raise CommandError(f"no run with trace id {options['trace_id']!r}") from None
        try:
            signal = signal_send(run=run, name=options["name"], payload=payload, actor=actor)
        except CMOError as exc:
            raise CommandError(str(exc)) from None
        state = "delivered" if signal.delivered_at else "kept until the run waits for it"
        self.stdout.write(f"{run.trace_id} signal {options['name']!r} {state}")
