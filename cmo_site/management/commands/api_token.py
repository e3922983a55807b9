"""``python manage.py api_token create --user NAME [--role ROLE] [--name LABEL]`` (also ``list`` and ``revoke``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared.models import ApiToken
from cmo_site.shared.permissions import primary_role
from cmo_site.shared.tokens import TOKEN_ROLES, TokenRoleError, api_token_create, api_token_revoke


class Command(BaseCommand):
    help = "Create, list and revoke API tokens. A new token is printed once; only its hash is stored."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, help="create, list or revoke")
        create = actions.add_parser("create", help="create a token and print it once")
        create.add_argument("--user", required=True, help="the username the token acts as")
        create.add_argument(
            "--role",
            choices=TOKEN_ROLES,
            default=None,
            help="the most the token may do (default: the user's strongest role)",
        )
        create.add_argument("--name", default="", help="a label: what uses this token")
        create.add_argument(
            "--specialist",
            default="",
            help="with --role specialist: the one specialist the token may register and heartbeat",
        )
        listing = actions.add_parser("list", help="list tokens (prefixes only)")
        listing.add_argument("--user", default="", help="only this user's tokens")
        revoke = actions.add_parser("revoke", help="revoke a token by its prefix")
        revoke.add_argument("prefix", help="the token's first 12 characters, as `list` shows them")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"handle_{options['action']}")(options)

    def handle_create(self, options: dict[str, Any]) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: options["user"]})
        except user_model.DoesNotExist:
            raise CommandError(f"no user named {options['user']!r}") from None
        role = options["role"] or primary_role(user)
        try:
            token, raw = api_token_create(
                user=user, role=role, name=options["name"], specialist=options["specialist"]
            )
        except TokenRoleError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Token {token.prefix}… for {user.get_username()} (role {token.role}); shown once:")
        self.stdout.write(raw)

    def handle_list(self, options: dict[str, Any]) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
        if options["user"]:
            tokens = tokens.filter(user__username=options["user"])
        for t in tokens:
            state = "revoked" if t.is_revoked else "active"
            used = t.last_used_at.isoformat() if t.last_used_at else "never"
            bound = f" ({t.specialist})" if t.specialist else ""
            self.stdout.write(
                f"{t.prefix}  {t.user.get_username()}  {t.role}{bound}  {state}  last used {used}  {t.name}"
            )

    def handle_revoke(self, options: dict[str, Any]) -> None:
        tokens = list(ApiToken.objects.filter(prefix=options["prefix"]))
        if not tokens:
            raise CommandError(f"no token with prefix {options['prefix']!r}")
        revoked = sum(api_token_revoke(token=t) for t in tokens)
        self.stdout.write(f"revoked {revoked} token(s) with prefix {options['prefix']}")
