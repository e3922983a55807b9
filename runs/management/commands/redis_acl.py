"""``python manage.py redis_acl [--specialist NAME ...] [--keep FILE] [--hash] [--url URL]``: the Redis ACL file.

Prints on stdout one ``user`` line per process role (web, worker, scheduler) and per specialist name (those
registered on Redis Streams in the database, and ``--specialist`` ones): a file for Redis's ``aclfile``, whose
every line also works as ``ACL SETUSER`` arguments. The rules are in runs/specialists/redis_acl.py.

A role's user name and password are those of its configured URL (``CMO_REDIS_URL_WEB`` and so on, when set
in this environment with a user name), else ``<prefix><role>`` and ``<prefix>specialist-<name>``. A password
is kept from ``--keep FILE`` (an earlier output, or ``ACL LIST``) for a user already in it, else generated:
shown once, in the file (unless ``--hash``, which writes its SHA-256 instead) and in the process URLs printed
on stderr, one variable per process to put in that process's environment only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from runs.specialists.redis_acl import SPECIALIST, AclUser, LayerKeys, acl_users

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class Command(BaseCommand):
    help = "Print the Redis ACL users of the web, workers, schedulers and each specialist (least privilege)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--specialist",
            action="append",
            default=[],
            metavar="NAME",
            help="a specialist to make a user for (repeat); added to those registered on Redis Streams",
        )
        parser.add_argument("--no-registry", action="store_true", help="do not read specialist names from the database")
        parser.add_argument("--user-prefix", default="cmo-", help="user names: <prefix>web, <prefix>specialist-NAME")
        parser.add_argument("--keep", type=Path, default=None, help="keep the passwords of the users in this ACL file")
        parser.add_argument("--hash", action="store_true", help="write passwords' SHA-256 (#...) instead of >password")
        parser.add_argument(
            "--url",
            default="",
            help=f"where the processes reach Redis, for the URLs printed (default: REDIS_URL, else {DEFAULT_URL})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = set(options["specialist"])
        if not options["no_registry"]:
            names |= self._registered()
        configured = self._configured()
        prefix = options["user_prefix"]
        try:
            users = acl_users(user_prefix=prefix, specialists=sorted(names), layer=self._layer())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        users = [_named(user, configured) for user in users]
        kept = _passwords_in(options["keep"]) if options["keep"] else {}
        base = options["url"] or settings.REDIS_URL or DEFAULT_URL
        note = self.stderr
        note.write('# Each process\'s Redis URL, for its own environment only (README "Redis ACL users"):', str)
        for user in users:
            passwords, plain = _passwords(user, configured, kept)
            if plain is None:
                self.stdout.write(user.line(_hashed(passwords) if options["hash"] else passwords))
                note.write(f"# {_variable(user)} of {user.name}: unchanged (password kept from {options['keep']})", str)
                continue
            self.stdout.write(user.line(_hashed(passwords) if options["hash"] else passwords))
            if user.role == SPECIALIST:
                where = f"/etc/cmo/specialist-{user.specialist}.env"
                note.write(f"# run_specialist {user.specialist} (systemd: {where})", str)
            note.write(f"{_variable(user)}={_url(base, user.name, plain)}", str)

    @staticmethod
    def _registered() -> set[str]:
        from runs.models import Specialist

        try:
            rows = Specialist.objects.filter(transport=Specialist.TRANSPORT_REDIS).values_list("name", flat=True)
            return set(rows)
        except DatabaseError as exc:
            raise CommandError(f"could not read the specialist registry ({exc}); use --no-registry") from None

    @staticmethod
    def _layer() -> LayerKeys:
        layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
        config = layer.get("CONFIG", {})
        return LayerKeys(prefix=config.get("prefix", LayerKeys.prefix), worker_channel=settings.CMO_WORKER_CHANNEL)

    @staticmethod
    def _configured() -> dict[str, tuple[str, str]]:
        """role -> (user, password) of each role's URL set in this environment (a specialist's by its user)."""
        found = {}
        for role, variable in settings.CMO_REDIS_URL_VARIABLES.items():
            parts = urlsplit(os.environ.get(variable, ""))
            if parts.username:
                found[role] = (parts.username, parts.password or "")
        return found


def _named(user: AclUser, configured: dict[str, tuple[str, str]]) -> AclUser:
    """The user under its configured URL's name, for web, worker and scheduler (one URL names one user)."""
    if user.role == SPECIALIST or user.role not in configured:
        return user
    return AclUser(user.role, configured[user.role][0], user.rules)


def _passwords(
    user: AclUser, configured: dict[str, tuple[str, str]], kept: dict[str, list[str]]
) -> tuple[list[str], str | None]:
    """The user's password rules and its password in clear (None when only kept hashes are known)."""
    name, password = configured.get(user.role, ("", ""))
    if name == user.name and password:
        return [f">{password}"], password
    if kept.get(user.name):
        rules = kept[user.name]
        plain = next((rule[1:] for rule in rules if rule.startswith(">")), None)
        return rules, plain
    password = secrets.token_hex(32)
    return [f">{password}"], password


def _hashed(rules: list[str]) -> list[str]:
    """Password rules ">password" as "#<its SHA-256>" (what Redis stores: the file then holds no password)."""
    return ["#" + hashlib.sha256(rule[1:].encode()).hexdigest() if rule.startswith(">") else rule for rule in rules]


def _passwords_in(path: Path) -> dict[str, list[str]]:
    """user -> its password rules (">..." or "#...") in an ACL file or ``ACL LIST``'s output."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    found = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "user":
            found[words[1]] = [w for w in words[2:] if w.startswith((">", "#")) and len(w) > 1]
    return found


def _variable(user: AclUser) -> str:
    return str(settings.CMO_REDIS_URL_VARIABLES[user.role])


def _url(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    where = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{where}"))
