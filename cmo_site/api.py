"""The API root: /api/ (routers from runs, replay, approvals, schedules and hooks), /api/openapi.json and /api/docs.

The docs page is ninja's Swagger UI, served from ninja's static files (the
"ninja" app is installed for that), so it works offline. The committed
cmo_site/openapi.json is the contract: ``python manage.py api_schema --check``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.openapi.docs import Swagger
from ninja.responses import NinjaJSONEncoder

from approvals.api import router as approvals_router
from cmo_site.shared.api import StorableJSONParser, caller, errors, install_error_handlers, requires
from cmo_site.shared.permissions import VIEW
from hooks.api import router as hooks_router
from replay.api import router as replay_router
from runs.api import router as runs_router
from schedules.api import router as schedules_router

API_VERSION = "1.0.0"

api = NinjaAPI(
    title="CMO API",
    version=API_VERSION,
    description=(
        "Durable, replayable agent workflows. Authenticate with `Authorization: Bearer <token>` "
        "(`python manage.py api_token create --user NAME`) or a browser session (send X-CSRFToken on writes). "
        'Errors are `{"code", "message", "details"}`.'
    ),
    auth=requires(VIEW),
    urls_namespace="api",
    parser=StorableJSONParser(),
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": True}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_error_handlers(api)


class MeOut(Schema):
    username: str
    roles: list[str]
    token: str | None = None
    token_role: str | None = None


@api.get("/me", response={200: MeOut, **errors(403)}, tags=["auth"], auth=requires(VIEW))
def me(request: HttpRequest) -> dict[str, Any]:
    """Who the credentials belong to and which roles apply to them."""
    principal = caller(request)
    token = principal.token
    return {
        "username": principal.username,
        "roles": sorted(principal.roles),
        "token": token.prefix if token else None,
        "token_role": token.role if token else None,
    }


# replay first: its POST /runs/import must not be matched as /runs/{trace_id}.
api.add_router("/", replay_router)
api.add_router("/", runs_router)
api.add_router("/", approvals_router)
api.add_router("/", schedules_router)
api.add_router("/", hooks_router)


SCHEMA_FILE = Path(__file__).with_name("openapi.json")


def openapi_document() -> dict[str, Any]:
    """The live OpenAPI document as plain JSON (what /api/openapi.json serves)."""
    return dict(json.loads(json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder)))


def openapi_text(document: dict[str, Any]) -> str:
    """The committed form: sorted keys and two-space indents, so diffs are readable."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
