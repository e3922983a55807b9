"""Roles, held as Django groups, and the one check every page, form and socket uses.

viewer: read everything. operator: also start and abort runs. approver: also
decide approvals. admin: everything (a superuser counts as admin). A signed-in
user in no group is a viewer: signing in is what it takes to look.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

VIEWER = "viewer"
OPERATOR = "operator"
APPROVER = "approver"
ADMIN = "admin"
ROLES = [VIEWER, OPERATOR, APPROVER, ADMIN]

VIEW = "view"
OPERATE = "operate"
APPROVE = "approve"

# Which roles grant each action.
GRANTS: dict[str, frozenset[str]] = {
    VIEW: frozenset(ROLES),
    OPERATE: frozenset({OPERATOR, ADMIN}),
    APPROVE: frozenset({APPROVER, ADMIN}),
}


def user_roles(user: Any) -> set[str]:
    """The roles of ``user`` (empty for anonymous users); cached on the user object for the request."""
    if user is None or not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_cmo_roles", None)
    if cached is not None:
        return set(cached)
    roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if user.is_superuser:
        roles.add(ADMIN)
    if ADMIN in roles:  # admin is everything: so an admin's operator token is an operator, not a viewer
        roles |= {OPERATOR, APPROVER}
    roles.add(VIEWER)
    user._cmo_roles = frozenset(roles)
    return roles


def can(user: Any, action: str) -> bool:
    return bool(user_roles(user) & GRANTS[action])


def primary_role(user: Any) -> str:
    """The strongest role, recorded on runs a user starts."""
    roles = user_roles(user)
    return next((r for r in (ADMIN, OPERATOR, APPROVER, VIEWER) if r in roles), "")


def require(user: Any, action: str) -> None:
    """Raise PermissionDenied (403) unless ``user`` may do ``action``."""
    if not can(user, action):
        raise PermissionDenied(f"your role does not allow {action}")


def role_required(action: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view decorator: sign-in first (redirect), then the role check (403)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            require(request.user, action)
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorate
