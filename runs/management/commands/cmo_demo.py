"""Create the demo once: graphs synced, the role groups, one login per role, a few demo runs (one fails), and
one recorded run of a graph that calls a model (imported from a committed trace bundle, labelled as recorded)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared.permissions import ADMIN, ROLES
from runs.demo import DEMO_INPUTS, DEMO_SEEDS
from runs.demo_llm import RECORDED_BUNDLE, RECORDED_NOTE, RECORDED_USER
from runs.demo_research import DEMO_RESEARCH_INPUTS, DEMO_RESEARCH_SEEDS
from runs.models import Run
from runs.services.graphs import graph_sync_all
from runs.services.runs import run_start
from runs.specialists.registry import specialist_sync_inprocess


class Command(BaseCommand):
    help = "Create the demo data and the admin login (idempotent) and print the login."

    def handle(self, *args: Any, **options: Any) -> None:
        graph_sync_all()
        specialist_sync_inprocess()
        groups = {role: Group.objects.get_or_create(name=role)[0] for role in ROLES}
        username, password = self.ensure_admin()
        get_user_model().objects.get(username=username).groups.add(groups[ADMIN])
        logins = [(role, self.ensure_user(role, groups[role])) for role in ROLES if role != ADMIN]
        if not Run.objects.exists():
            for data, seed in zip(DEMO_INPUTS, DEMO_SEEDS, strict=True):
                run = run_start(graph_name="incident-healing", data=data, seed=seed, role="admin")
                self.stdout.write(f"demo run {run.trace_id} ({data['service']}) submitted")
            for data, seed in zip(DEMO_RESEARCH_INPUTS, DEMO_RESEARCH_SEEDS, strict=True):
                run = run_start(graph_name="incident-research", data=data, seed=seed, role="admin")
                self.stdout.write(f"demo run {run.trace_id} (research on {data['service']}) submitted")
        self.import_recorded()  # after the check above: the recorded run must not stop the demo runs' creation
        self.stdout.write(f"Admin login: {username} / {password}")
        for role, secret in logins:
            self.stdout.write(f"{role.title()} login: {role} / {secret}")

    def ensure_admin(self) -> tuple[str, str]:
        """The password is generated once and kept in var/admin-password (mode 600) so it can be printed again."""
        path = settings.VAR_DIR / "admin-password"
        user_model = get_user_model()
        if path.exists() and user_model.objects.filter(username="admin").exists():
            return "admin", path.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password + "\n")
        path.chmod(0o600)
        return "admin", password

    def ensure_user(self, role: str, group: Group) -> str:
        """A login named after ``role`` in its group; the password is kept in var/<role>-password like the admin's."""
        path = settings.VAR_DIR / f"{role}-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=role).first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(12)
            user = user or user_model(username=role)
            user.set_password(password)
            user.save()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(password + "\n")
            path.chmod(0o600)
        user.groups.add(group)
        return path.read_text().strip()

    def import_recorded(self) -> None:
        """The recorded run of incident-summary-llm (runs.demo_llm.RECORDED_BUNDLE), once: imported through
        ``import_run`` (every check of a bundle import) by the recorded-demo system user, pinned (retention
        keeps it, so it is never imported again), its context noting that it was recorded. The bundle's own
        events carry the same note, shown in the run page's events."""
        if not RECORDED_BUNDLE.exists():
            return
        trace_id = json.loads(RECORDED_BUNDLE.read_text())["run"]["trace_id"]
        if Run.objects.filter(trace_id=trace_id).exists():
            return
        user = self.ensure_system_user()
        try:
            call_command("import_run", str(RECORDED_BUNDLE), user=user.get_username(), stdout=self.stdout)
        except CommandError as exc:  # the demo goes on without it
            self.stderr.write(f"the recorded demo run was not imported: {exc}")
            return
        run = Run.objects.get(trace_id=trace_id)
        Run.objects.filter(pk=run.pk).update(pinned=True, context={**run.context, "note": RECORDED_NOTE})
        self.stdout.write(f"demo run {trace_id} ({run.graph.name}) imported: {RECORDED_NOTE}")

    def ensure_system_user(self) -> Any:
        """The user recorded demo runs are imported by: it has no password, so nobody logs in as it."""
        user, created = get_user_model().objects.get_or_create(username=RECORDED_USER)
        if created:
            user.set_unusable_password()
            user.save()
        return user
