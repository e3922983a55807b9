"""The webhook trigger endpoint, POST /api/hooks/<name>, and the API that manages hooks.

The trigger is not authenticated by a session or token (``auth=None``) but by its signature (hooks.signing);
its refusals are the site's JSON errors, each with a code that names the reason. Managing hooks takes the
operator role; viewers may read them. A hook's secret is in the answer that creates or rotates it, never
in a read.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import StringConstraints

from cmo_site.shared.api import MAX_INT, StrictIn, caller, errors, requires
from cmo_site.shared.permissions import OPERATE, VIEW
from hooks import selectors
from hooks.models import Hook
from hooks.services import (
    DEFAULT_TOLERANCE,
    MAX_TOLERANCE,
    Delivery,
    HookConfig,
    HookError,
    hook_create,
    hook_delete,
    hook_deliver,
    hook_rotate_secret,
    hook_update,
)

router = Router(tags=["hooks"])

HookName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")]
Version = Annotated[int, Field(ge=1, le=MAX_INT)]
InputMode = Literal["body", "fields"]
KeySource = Literal["signature", "header", "path"]
Tolerance = Annotated[int, Field(ge=1, le=MAX_TOLERANCE)]


class DeliveryOut(Schema):
    trace_id: str | None = Field(description="the run the delivery started (a duplicate: the earlier run)")
    hook: str
    duplicate: bool = Field(description="true when a delivery with this idempotency key was accepted before")


@router.post(
    "/hooks/{name}",
    response={202: DeliveryOut, 200: DeliveryOut, **errors(400, 403, 404, 409, 413, 415, 422)},
    auth=None,
    summary="Deliver a webhook: start the hook's graph",
    description=(
        "Sign with the hook's secret: `X-CMO-Timestamp: <unix seconds>` and `X-CMO-Signature: sha256=<hex "
        "HMAC-SHA256 of '<timestamp>.<raw body>'>`, Content-Type application/json, at most 1 MiB. 202 with the "
        "new run's trace id; 200 with the earlier run's for a delivery whose idempotency key was seen before."
    ),
)
def hook_trigger(request: HttpRequest, name: str) -> Status[dict[str, Any]]:
    delivery = Delivery(
        name=name,
        body=request.body,
        content_type=request.content_type or "",
        content_length=int(request.META.get("CONTENT_LENGTH") or 0),
        headers=request.headers,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    result = hook_deliver(delivery=delivery)
    body = {"trace_id": result.trace_id, "hook": result.hook.name, "duplicate": result.duplicate}
    return Status(200 if result.duplicate else 202, body)


# -- managing hooks ----------------------------------------------------------------------


CONCURRENCY_HELP = 'its runs\' concurrency key and limits, as a graph declares them: {"key": "input.x", "limit": 1}'


class HookOut(Schema):
    name: str
    description: str
    graph: str
    version: int | None = Field(description="null: the latest version at each delivery")
    input_mode: InputMode
    input_mapping: dict[str, str] = Field(description="input field -> JSON path (input_mode fields)")
    key_source: KeySource
    key_name: str = Field(description="the header or JSON path of the idempotency key")
    tolerance_seconds: int
    concurrency: dict[str, Any] | None = Field(description=CONCURRENCY_HELP)
    enabled: bool
    owner: str = Field(description="runs execute as this user, with their roles at delivery time")
    owner_role: str = Field(description="caps the owner's roles: the role they acted with")
    created_at: dt.datetime
    updated_at: dt.datetime


class HookListOut(Schema):
    hooks: list[HookOut]


class HookSecretOut(Schema):
    hook: HookOut
    secret: str = Field(description="the signing secret: shown in this answer only")


class HookCreateIn(StrictIn):
    name: HookName
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    graph: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    version: Version | None = Field(None, description="default: the latest version at each delivery")
    input_mode: InputMode = "body"
    input_mapping: dict[str, str] | None = Field(None, description='e.g. {"service": "$.alert.labels.service"}')
    key_source: KeySource = Field("signature", description="signature (default), header or path")
    key_name: Annotated[str, StringConstraints(max_length=200)] = ""
    tolerance_seconds: Tolerance = DEFAULT_TOLERANCE
    concurrency: dict[str, Any] | None = Field(None, description=CONCURRENCY_HELP)
    enabled: bool = True


class HookUpdateIn(StrictIn):
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    graph: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    version: Version | None = None
    latest: bool | None = Field(None, description="true: follow the latest version (clears version)")
    input_mode: InputMode | None = None
    input_mapping: dict[str, str] | None = None
    key_source: KeySource | None = None
    key_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    tolerance_seconds: Tolerance | None = None
    concurrency: dict[str, Any] | None = Field(None, description=CONCURRENCY_HELP)
    enabled: bool | None = None


def _config(hook: Hook, body: HookUpdateIn) -> HookConfig | None:
    given = body.model_dump(exclude_unset=True)
    if not given.keys() - {"description", "enabled"}:
        return None
    version = None if body.latest else given.get("version", hook.version)
    return HookConfig(
        graph_name=given.get("graph") or hook.graph_name,
        version=version,
        input_mode=given.get("input_mode") or hook.input_mode,
        input_mapping=given["input_mapping"] if "input_mapping" in given else hook.input_mapping,
        key_source=given.get("key_source") or hook.key_source,
        key_name=given["key_name"] if "key_name" in given else hook.key_name,
        tolerance_seconds=given.get("tolerance_seconds") or hook.tolerance_seconds,
        concurrency=given["concurrency"] if "concurrency" in given else hook.concurrency,
    )


def _hook_or_404(name: str) -> Hook:
    try:
        return selectors.hook_get(name=name)
    except Hook.DoesNotExist:
        raise HookError(404, "not_found", f"no hook named {name!r}") from None


@router.get("/hooks", response={200: HookListOut, **errors(403)}, auth=requires(VIEW))
def hook_list(request: HttpRequest) -> dict[str, Any]:
    return {"hooks": [selectors.hook_out(h) for h in selectors.hook_list()]}


@router.post("/hooks", response={201: HookSecretOut, **errors(400, 403, 409, 413, 415, 422)}, auth=requires(OPERATE))
def hook_create_endpoint(request: HttpRequest, body: HookCreateIn) -> Status[dict[str, Any]]:
    principal = caller(request)
    config = HookConfig(
        graph_name=body.graph,
        version=body.version,
        input_mode=body.input_mode,
        input_mapping=body.input_mapping,
        key_source=body.key_source,
        key_name=body.key_name,
        tolerance_seconds=body.tolerance_seconds,
        concurrency=body.concurrency,
    )
    hook, secret = hook_create(
        name=body.name,
        description=body.description,
        config=config,
        enabled=body.enabled,
        user=principal.user,
        role=principal.primary_role,
    )
    return Status(201, {"hook": selectors.hook_out(hook), "secret": secret})


@router.get("/hooks/{name}", response={200: HookOut, **errors(403, 404, 422)}, auth=requires(VIEW))
def hook_get(request: HttpRequest, name: HookName) -> dict[str, Any]:
    return selectors.hook_out(_hook_or_404(name))


@router.patch("/hooks/{name}", response={200: HookOut, **errors(400, 403, 404, 413, 415, 422)}, auth=requires(OPERATE))
def hook_update_endpoint(request: HttpRequest, name: HookName, body: HookUpdateIn) -> dict[str, Any]:
    """Whoever changes what the hook runs (graph, version, input, key) or enables it becomes its owner."""
    principal = caller(request)
    hook = _hook_or_404(name)
    updated = hook_update(
        hook=hook,
        user=principal.user,
        role=principal.primary_role,
        description=body.description,
        config=_config(hook, body),
        enabled=body.enabled,
    )
    return selectors.hook_out(selectors.hook_get(name=updated.name))


class HookDeletedOut(Schema):
    name: str
    deleted: bool


@router.delete("/hooks/{name}", response={200: HookDeletedOut, **errors(403, 404, 422)}, auth=requires(OPERATE))
def hook_delete_endpoint(request: HttpRequest, name: HookName) -> dict[str, Any]:
    """Delete the hook and its deliveries (their runs and the audit of every delivery stay)."""
    hook_delete(hook=_hook_or_404(name), user=caller(request).user)
    return {"name": name, "deleted": True}


@router.post(
    "/hooks/{name}/rotate-secret", response={200: HookSecretOut, **errors(403, 404, 422)}, auth=requires(OPERATE)
)
def hook_rotate_endpoint(request: HttpRequest, name: HookName) -> dict[str, Any]:
    """A new secret at once (the old one stops working); the caller becomes the hook's owner."""
    principal = caller(request)
    hook, secret = hook_rotate_secret(hook=_hook_or_404(name), user=principal.user, role=principal.primary_role)
    return {"hook": selectors.hook_out(hook), "secret": secret}
