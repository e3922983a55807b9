"""Every role and grant, and the one check that pages, the API, tokens, WebSockets, approvals and the
specialist registry use.

Roles are Django groups. viewer: read everything. operator: also start, abort, fork and import runs,
publish graphs, register specialists. approver: also decide approvals. admin: everything (a superuser
counts as admin; admin implies operator and approver). A signed-in user in no group is a viewer:
signing in is what it takes to look. An API token's role caps its user's roles (``token_roles``); a
``specialist`` token holds only the specialist role, which manages specialists and nothing else.
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
# A token role, never a group: a run_specialist process's credentials.
SPECIALIST = "specialist"
TOKEN_ROLES = [*ROLES, SPECIALIST]
TOKEN_ROLE_CHOICES = [  # for the ApiToken model
    ("viewer", "viewer: read"),
    ("operator", "operator: read, start, abort, fork, import"),
    ("approver", "approver: read, decide approvals"),
    ("admin", "admin: everything the user may do"),
    ("specialist", "specialist: register and heartbeat specialists only"),
]

# The strongest first: the role recorded on runs a caller starts.
STRENGTH = (ADMIN, OPERATOR, APPROVER, VIEWER, SPECIALIST)

VIEW = "view"
OPERATE = "operate"
APPROVE = "approve"
MANAGE_SPECIALISTS = "manage_specialists"

# Which roles grant each action.
GRANTS: dict[str, frozenset[str]] = {
    VIEW: frozenset(ROLES),
    OPERATE: frozenset({OPERATOR, ADMIN}),
    APPROVE: frozenset({APPROVER, ADMIN}),
    MANAGE_SPECIALISTS: frozenset({OPERATOR, ADMIN, SPECIALIST}),
}

# The user roles each token role lets through (a specialist token: see token_roles).
TOKEN_CAPS: dict[str, frozenset[str]] = {
    VIEWER: frozenset({VIEWER}),
    OPERATOR: frozenset({VIEWER, OPERATOR}),
    APPROVER: frozenset({VIEWER, APPROVER}),
    ADMIN: frozenset({VIEWER, OPERATOR, APPROVER, ADMIN}),
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


def roles_allow(roles: set[str] | frozenset[str], action: str) -> bool:
    return bool(roles & GRANTS[action])


def can(user: Any, action: str) -> bool:
    """Whether a signed-in, active ``user`` may do ``action`` (an inactive user may do nothing)."""
    if user is not None and not getattr(user, "is_active", True):
        return False
    return roles_allow(user_roles(user), action)


def strongest(roles: set[str] | frozenset[str]) -> str:
    return next((r for r in STRENGTH if r in roles), "")


def primary_role(user: Any) -> str:
    """The strongest role, recorded on runs a user starts."""
    return strongest(user_roles(user))


def token_roles(*, user_roles: set[str], token_role: str) -> set[str]:
    """What a token may do: the user's roles within the token's cap.

    A "specialist" token holds only the specialist role, and only while its
    user is an operator or admin (who may manage specialists).
    """
    if token_role == SPECIALIST:
        return {SPECIALIST} if user_roles & {OPERATOR, ADMIN} else set()
    return user_roles & TOKEN_CAPS.get(token_role, frozenset())


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
