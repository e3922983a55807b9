"""API token services: create (the secret is returned once), authenticate, revoke.

A token is ``cmo_`` followed by 43 URL-safe characters (256 random bits). The
database holds its SHA-256 and its first 12 characters: a stolen database
yields no usable token, and the prefix finds the row without a table scan.
The role stored on a token caps what its user may do through it
(``cmo_site.shared.permissions.token_roles``); a user who loses a role loses it through every token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from cmo_site.shared.models import ApiToken
from cmo_site.shared.permissions import SPECIALIST, TOKEN_ROLES
from runs.engine.errors import CMOError

TOKEN_PREFIX = "cmo_"
PREFIX_LENGTH = 12
# Writing last_used_at on every request would make every API read a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenRoleError(CMOError, ValueError):
    """The role is not a token role (or a binding is not allowed)."""

    status, code = 422, "invalid_token_role"


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


SPECIALIST_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")


def api_token_create(
    *, user: AbstractBaseUser, role: str, name: str = "", specialist: str = ""
) -> tuple[ApiToken, str]:
    """Store a new token for ``user`` capped at ``role``; returns the row and the token (shown once).

    ``specialist`` binds a specialist token to one specialist name: it may register and heartbeat
    that specialist, even over a row someone else registered, and nothing else.
    """
    if role not in TOKEN_ROLES:
        raise TokenRoleError(f"unknown token role {role!r}; roles: {', '.join(TOKEN_ROLES)}")
    if specialist and (role != SPECIALIST or not SPECIALIST_NAME.match(specialist)):
        raise TokenRoleError(f"only a specialist token is bound to a specialist, and {specialist!r} must be a name")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(  # type: ignore[misc]
        user=user, role=role, name=name, specialist=specialist, prefix=raw[:PREFIX_LENGTH], token_hash=_digest(raw)
    )
    token.save()
    return token, raw


def api_token_authenticate(*, raw: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The active token ``raw`` names (its user loaded), or None. Records when it was last used."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = _digest(raw)
    candidates = ApiToken.objects.select_related("user").filter(prefix=raw[:PREFIX_LENGTH], revoked_at__isnull=True)
    token = next((t for t in candidates if hmac.compare_digest(t.token_hash, digest)), None)
    if token is None or not token.user.is_active:
        return None
    now = now or timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def api_token_revoke(*, token: ApiToken, now: dt.datetime | None = None) -> bool:
    """Revoke ``token``; False if it was already revoked. Takes effect on the next request."""
    when = now or timezone.now()
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=when) == 1
    if revoked:
        token.revoked_at = when
    return revoked
