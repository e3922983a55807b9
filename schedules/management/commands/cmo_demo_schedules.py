"""``python manage.py cmo_demo_schedules``: the demo's schedule (idempotent; after ``cmo_demo``, which makes the
admin login it belongs to): incident-research on checkout at the top of every hour, skipping while one runs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runs.demo_research import DEMO_RESEARCH_INPUTS
from schedules import services
from schedules.models import Schedule

NAME = "research-hourly"


class Command(BaseCommand):
    help = "Create the demo schedule (once)."

    def handle(self, *args: Any, **options: Any) -> None:
        if Schedule.objects.filter(name=NAME).exists():
            return
        admin = get_user_model().objects.filter(username="admin").first()
        if admin is None:
            raise CommandError("run `manage.py cmo_demo` first: the demo schedule belongs to its admin login")
        data = {
            "graph": "incident-research",
            "input": DEMO_RESEARCH_INPUTS[0],
            "cron": "0 * * * *",
            "timezone": "UTC",
            "overlap": "skip",
            "description": "The demo: research the checkout incident at the top of every hour.",
        }
        fields = services.schedule_check(data=data, user=admin, role="admin")
        schedule = services.schedule_create(name=NAME, fields=fields, user=admin, role="admin")
        self.stdout.write(f"demo schedule {schedule.name} ({schedule.cron} UTC) created")
