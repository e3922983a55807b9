"""What every API router shares: authentication, the role check, the error shape and its handlers.

Authentication (either):
- ``Authorization: Bearer <token>`` (an ApiToken; the token's role caps its user's roles).
  A bearer header with an unknown or revoked token is a 401, never a fall-through to the session.
- the browser's session cookie, with Django's CSRF check on unsafe methods (``X-CSRFToken``).

Every error is JSON ``{"code", "message", "details"}``. An error of CMO's own hierarchy
(``runs.engine.errors.CMOError``) carries its status and code; the framework's (a schema
mismatch, Django's 403/404, a body over the limit, a value the database refuses) are mapped here.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Annotated, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf
from pydantic import AfterValidator, BeforeValidator, ConfigDict, StringConstraints

from cmo_site.shared.models import ApiToken
from cmo_site.shared.permissions import GRANTS, VIEW, roles_allow, strongest, token_roles, user_roles
from cmo_site.shared.tokens import api_token_authenticate
from runs.engine import json_input
from runs.engine.errors import CMOError

logger = logging.getLogger("cmo.api")


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")]
TraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


def _to_utc(value: dt.datetime) -> dt.datetime:
    """Aware and in UTC (naive means UTC): PostgreSQL refuses offsets past +-15:59, Python allows +-23:59."""
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the date is out of range once converted to UTC") from None


_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)


def _iso_only(value: Any) -> Any:
    """A date or date-time written in ISO 8601; pydantic would also read 0.5 or 9999999999999 as Unix times."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("expected an ISO 8601 date-time such as 2026-12-01T08:30:00Z (or a date, 2026-12-01)")
    return value


UtcDatetime = Annotated[dt.datetime, BeforeValidator(_iso_only), AfterValidator(_to_utc)]
# PositiveIntegerField and friends are 32-bit in PostgreSQL; larger numbers are a 422, not a database error.
MAX_INT = json_input.MAX_INT


def check_storable(value: Any, *, what: str) -> Any:
    """``value`` unchanged if it can be stored and read back (see runs.engine.json_input); otherwise an ApiError."""
    try:
        return json_input.check_storable(value, what=what)
    except json_input.JSONInputError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


JSON_MEDIA_TYPES = ("application/json",)


class StorableJSONParser(Parser):
    """Parse request bodies strictly, before any endpoint sees them.

    The body must be sent as ``application/json`` (415 otherwise) and be JSON that can be stored
    and read back: UTF-8 without a byte order mark, no NaN/Infinity, no NUL characters, no lone
    surrogates, no deeper nesting than the engine stores (runs.engine.json_input).
    """

    def parse_body(self, request: HttpRequest) -> Any:
        if request.content_type not in JSON_MEDIA_TYPES:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"the body must be JSON sent with Content-Type: application/json, not {request.content_type or 'none'}",
            )
        try:
            return json_input.parse_json(request.body, what="the request body")
        except json_input.JSONInputError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None


class StrictIn(Schema):
    """A request body: exact JSON types (5, not "5"; false is not 0) and no unknown fields (a typo is a 422)."""

    model_config = ConfigDict(from_attributes=True, strict=True, extra="forbid")


class ErrorOut(Schema):
    code: str
    message: str
    details: Any = None


class ApiError(CMOError):
    """An error answer raised by the API layer itself: ``status`` with ``{"code", "message", "details"}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]
        self.message = message
        self.details = details
        super().__init__(message)


def errors(*codes: int) -> dict[frozenset[int], type[ErrorOut]]:
    """The ``response=`` entry documenting an endpoint's error statuses (401 always applies)."""
    return {frozenset({401, *codes}): ErrorOut}


# -- who is asking --------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The caller: a user, the roles that apply to this request, and the token if one was used."""

    user: AbstractBaseUser
    roles: frozenset[str]
    token: ApiToken | None = None

    @property
    def username(self) -> str:
        return self.user.get_username()

    @property
    def primary_role(self) -> str:
        """The strongest role in effect, recorded on runs this caller starts."""
        return strongest(self.roles)

    def can(self, action: str) -> bool:
        return roles_allow(self.roles, action)


def _check(principal: Principal, action: str) -> Principal:
    if not principal.can(action):
        via = f"token role {principal.token.role!r}" if principal.token else "your roles"
        raise ApiError(
            403,
            "forbidden",
            f"{via} do not allow {action}",
            {"action": action, "roles": sorted(principal.roles), "needs_one_of": sorted(GRANTS[action])},
        )
    return principal


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``; then the role check for ``action``."""

    def __init__(self, action: str = VIEW) -> None:
        self.action = action
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> Principal:
        found = api_token_authenticate(raw=token.strip())
        if found is None:
            raise ApiError(401, "invalid_token", "the API token is unknown, revoked or its user is inactive")
        roles = token_roles(user_roles=user_roles(found.user), token_role=found.role)
        return _check(Principal(user=found.user, roles=frozenset(roles), token=found), self.action)


class Session(APIKeyCookie):
    """The signed-in browser; then CSRF on unsafe methods and the role check for ``action``.

    No session means "not this method", so an anonymous write is a 401, not a CSRF 403.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, action: str = VIEW) -> None:
        self.action = action
        super().__init__(csrf=True)

    def __call__(self, request: HttpRequest) -> Principal | None:
        return self.authenticate(request, None)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        user = request.user
        if not user.is_authenticated:
            return None
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and check_csrf(request) is not None:
            raise ApiError(403, "csrf_failed", "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken")
        return _check(Principal(user=user, roles=frozenset(user_roles(user))), self.action)  # type: ignore[arg-type]


def requires(action: str) -> list[BearerToken | Session]:
    """The ``auth=`` of an endpoint: a token or a session whose roles allow ``action`` (401, then 403).

    Checked before the request's parameters are parsed, so a caller without the
    role learns nothing about what a valid request looks like.
    """
    return [BearerToken(action), Session(action)]


def caller(request: HttpRequest) -> Principal:
    """The authenticated caller of an endpoint declared with ``auth=requires(...)``."""
    principal = getattr(request, "auth", None)
    assert isinstance(principal, Principal), "the endpoint is missing auth=requires(...)"
    return principal


# -- errors -------------------------------------------------------------------------------


def _field_errors(raw: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in raw
    ]


# The framework's own errors; CMO's carry their status and code (CMOError).
_FRAMEWORK_ERRORS: list[tuple[type[Exception], int, str]] = [
    (RequestDataTooBig, 413, "payload_too_large"),
    (PermissionDenied, 403, "forbidden"),
    (Http404, 404, "not_found"),
    (ObjectDoesNotExist, 404, "not_found"),
    # The database refused a value the schema let through.
    (DataError, 422, "unstorable_value"),
]
_UNAUTHENTICATED = "sign in or send Authorization: Bearer <token>"


def error_body(exc: Exception) -> tuple[int, str, str, Any]:
    """(status, code, message, details) for an exception an endpoint raised."""
    if isinstance(exc, CMOError):
        return exc.status, exc.code, str(exc) or exc.code, exc.details
    if isinstance(exc, ValidationError):
        return 422, "validation_error", "the request does not match the schema", _field_errors(exc.errors)
    if isinstance(exc, AuthenticationError):
        return 401, "unauthenticated", _UNAUTHENTICATED, None
    if isinstance(exc, HttpError):
        if isinstance(exc.__cause__, RequestDataTooBig):
            return 413, "payload_too_large", str(exc.__cause__), None
        if isinstance(exc.__cause__, CMOError):
            return error_body(exc.__cause__)
        if exc.status_code == 400:
            return 400, "malformed_request", "the request body is not valid JSON", None
        return exc.status_code, "error", exc.message, None
    for exc_class, status, code in _FRAMEWORK_ERRORS:
        if isinstance(exc, exc_class):
            return status, code, str(exc) or code, None
    raise exc


def install_error_handlers(api: NinjaAPI) -> None:
    """Answer every error the routers and services raise with its status and a JSON body; others propagate (500)."""

    def handler(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
        assert isinstance(exc, Exception)
        status, code, message, details = error_body(exc)
        if status >= 500:  # an error no request should cause: a bug, answered like one
            return server_error(request, exc)
        return api.create_response(request, {"code": code, "message": message, "details": details}, status=status)

    def server_error(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
        assert isinstance(exc, Exception)
        logger.error("API error on %s %s", request.method, request.path, exc_info=exc)
        body = {"code": "server_error", "message": "the server failed; the error is logged", "details": None}
        return api.create_response(request, body, status=500)

    for exc_class in [CMOError, ValidationError, HttpError, *(e for e, _, _ in _FRAMEWORK_ERRORS)]:
        api.add_exception_handler(exc_class, handler)
    # A bug is still a bug (500), but JSON like every other answer.
    api.add_exception_handler(Exception, server_error)


def json_method_not_allowed(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a ninja path view so a 405 (a method the path does not have) is JSON like every other error."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = JsonResponse(
                {"code": "method_not_allowed", "message": f"{request.method} is not allowed here", "details": None},
                status=405,
            )
            response["Allow"] = allowed
        return response

    return wrapped
