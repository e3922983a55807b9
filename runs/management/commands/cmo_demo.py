"""Create the demo once: graphs synced, the role groups, one login per role, and a few demo runs (one fails)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from cmo_site.shared.permissions import ADMIN, ROLES
from runs.demo import DEMO_INPUTS, DEMO_SEEDS
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
