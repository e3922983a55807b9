"""Create, change and deliver to hooks.

A delivery is checked in this order, each refusal a 4xx that names its reason and stores one HookAudit row
and nothing else: the hook exists (404), the content type is JSON (415), the body is within
MAX_BODY_BYTES (413), the timestamp is within the tolerance and the signature matches (401), the hook is
enabled (409: said only to a sender that holds the secret), the body is JSON (400/422), its owner may still
start runs (403), it has an idempotency key (400), its input is valid for the graph (422). Then, in one
transaction, the HookDelivery row (unique per hook and key) and the run: a retried delivery, or a
concurrent duplicate that loses the race on the unique constraint, answers with the existing run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from cmo_site.shared.permissions import OPERATE, TOKEN_ROLES, roles_allow, strongest, token_roles, user_roles
from hooks import mapping, signing
from hooks.models import Hook, HookAudit, HookDelivery
from runs.engine.concurrency import declaration_problems
from runs.engine.errors import CMOError
from runs.engine.json_input import JSONInputError, parse_json
from runs.models import Graph, Run
from runs.services.audit import audit_record
from runs.services.graphs import GraphNotRunnable, graph_resolve, graph_run_refusal
from runs.services.runs import InvalidInput, run_start

log = logging.getLogger("cmo.hooks")

MAX_BODY_BYTES = 1024 * 1024
MAX_KEY_LENGTH = 200
DEFAULT_TOLERANCE = 300
MAX_TOLERANCE = 24 * 3600
RESERVED_NAMES = frozenset({"new"})  # /hooks/new/ is the create form


class HookError(CMOError):
    """A refused delivery or hook change: ``status``, ``code`` and a message that names the reason."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]
        self.details = details
        super().__init__(message)


# -- managing hooks ----------------------------------------------------------------------


@dataclass(frozen=True)
class HookConfig:
    """What a hook runs and how a delivery becomes its input (the fields a person edits)."""

    graph_name: str
    version: int | None = None
    input_mode: str = Hook.BODY
    input_mapping: dict[str, str] | None = None
    key_source: str = Hook.KEY_SIGNATURE
    key_name: str = ""
    tolerance_seconds: int = DEFAULT_TOLERANCE
    concurrency: dict[str, Any] | None = None  # its runs' concurrency key and limits, as a graph declares them


# Changing these changes what a delivery starts or who may start it: the editor becomes the owner.
OWNING_FIELDS = (
    "graph_name", "version", "input_mode", "input_mapping", "key_source", "key_name", "concurrency", "enabled",
)  # fmt: skip


def _checked(config: HookConfig, *, user: AbstractBaseUser, role: str) -> dict[str, Any]:
    """The model fields of ``config``, which ``user`` acting as ``role`` must be allowed to run; HookError (422,
    403) naming what is wrong."""
    try:
        graph = graph_resolve(name=config.graph_name, version=config.version)
    except Graph.DoesNotExist as exc:
        raise HookError(422, "invalid_hook", str(exc) or f"no graph named {config.graph_name!r}") from None
    refusal = graph_run_refusal(graph=graph, user=user, role=role)
    if refusal:
        raise HookError(403, "graph_not_runnable", refusal)
    if config.input_mode not in (Hook.BODY, Hook.FIELDS):
        raise HookError(422, "invalid_hook", "input_mode is body (the whole JSON body) or fields (by JSON path)")
    fields_map: dict[str, str] = {}
    if config.input_mode == Hook.FIELDS:
        try:
            fields_map = mapping.check_mapping(config.input_mapping)
        except mapping.MappingError as exc:
            raise HookError(422, "invalid_hook", f"input_mapping: {exc}") from None
    key_name = config.key_name.strip()
    if config.key_source == Hook.KEY_HEADER:
        if not key_name or not all(c.isalnum() or c == "-" for c in key_name) or len(key_name) > 100:
            raise HookError(422, "invalid_hook", "key_name: a header name such as Idempotency-Key or X-GitHub-Delivery")
    elif config.key_source == Hook.KEY_PATH:
        try:
            mapping.compile_path(key_name)
        except mapping.MappingError as exc:
            raise HookError(422, "invalid_hook", f"key_name: {exc}") from None
    elif config.key_source == Hook.KEY_SIGNATURE:
        key_name = ""
    else:
        raise HookError(422, "invalid_hook", "key_source is signature, header or path")
    if not 1 <= config.tolerance_seconds <= MAX_TOLERANCE:
        raise HookError(422, "invalid_hook", f"tolerance_seconds is between 1 and {MAX_TOLERANCE}")
    problems = declaration_problems(config.concurrency)
    if problems:
        raise HookError(422, "invalid_hook", "concurrency: " + "; ".join(problems))
    return {
        "concurrency": config.concurrency,
        "graph_name": config.graph_name,
        "version": config.version,
        "input_mode": config.input_mode,
        "input_mapping": fields_map,
        "key_source": config.key_source,
        "key_name": key_name,
        "tolerance_seconds": config.tolerance_seconds,
    }


def _owner_fields(user: AbstractBaseUser, role: str) -> dict[str, Any]:
    if role not in TOKEN_ROLES:
        raise HookError(422, "invalid_hook", f"unknown role {role!r}")
    return {"owner": user, "owner_role": role}


def hook_create(
    *, name: str, description: str = "", config: HookConfig, enabled: bool = True, user: AbstractBaseUser, role: str
) -> tuple[Hook, str]:
    """A new hook owned by ``user`` acting as ``role``, and its secret (the only time it is returned)."""
    if name in RESERVED_NAMES:
        raise HookError(422, "invalid_hook", f"{name!r} is reserved for the hooks' pages; choose another name")
    if Hook.objects.filter(name=name).exists():
        raise HookError(409, "hook_exists", f"a hook named {name!r} exists")
    secret = signing.new_secret()
    fields = {**_checked(config, user=user, role=role), **_owner_fields(user, role)}
    try:
        with transaction.atomic():
            hook = Hook.objects.create(name=name, description=description, secret=secret, enabled=enabled, **fields)
            audit_record(actor=user.get_username(), action="hook_created", target=f"hook:{name}", detail=_summary(hook))
    except IntegrityError:
        raise HookError(409, "hook_exists", f"a hook named {name!r} exists") from None
    return hook, secret


def hook_update(
    *,
    hook: Hook,
    user: AbstractBaseUser,
    role: str,
    description: str | None = None,
    config: HookConfig | None = None,
    enabled: bool | None = None,
) -> Hook:
    """Change ``hook``; whoever changes what it runs (config, or enables it) becomes its owner with ``role``.

    So nobody can make a hook someone stronger configured start runs they could not start themselves.
    """
    with transaction.atomic():
        locked = Hook.objects.select_for_update().get(pk=hook.pk)
        before = _summary(locked)
        changed: list[str] = []
        if config is not None:
            for field, value in _checked(config, user=user, role=role).items():
                if getattr(locked, field) != value:
                    setattr(locked, field, value)
                    changed.append(field)
        if enabled is not None and enabled != locked.enabled:
            locked.enabled = enabled
            changed.append("enabled")
        if description is not None and description != locked.description:
            locked.description = description
            changed.append("description")
        # Disabling a hook starts nothing, so it leaves the owner; every other such change takes it over.
        if any(f in OWNING_FIELDS and (f != "enabled" or locked.enabled) for f in changed):
            for field, value in _owner_fields(user, role).items():
                setattr(locked, field, value)
            changed += ["owner", "owner_role"]
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
            audit_record(
                actor=user.get_username(),
                action="hook_changed",
                target=f"hook:{locked.name}",
                detail={"changed": changed, "before": before, "after": _summary(locked)},
            )
    return locked


def hook_rotate_secret(*, hook: Hook, user: AbstractBaseUser, role: str) -> tuple[Hook, str]:
    """A new secret (the old one stops working at once), returned this once; the rotator becomes the owner,
    since whoever knows the secret decides what the hook's runs get."""
    secret = signing.new_secret()
    with transaction.atomic():
        locked = Hook.objects.select_for_update().get(pk=hook.pk)
        locked.secret = secret
        for field, value in _owner_fields(user, role).items():
            setattr(locked, field, value)
        locked.save(update_fields=["secret", "owner", "owner_role", "updated_at"])
        audit_record(actor=user.get_username(), action="hook_secret_rotated", target=f"hook:{locked.name}")
    return locked, secret


def hook_delete(*, hook: Hook, user: AbstractBaseUser) -> None:
    """Delete ``hook`` and its deliveries; its audit rows stay (with the name), and so do its runs."""
    with transaction.atomic():
        audit_record(
            actor=user.get_username(), action="hook_deleted", target=f"hook:{hook.name}", detail=_summary(hook)
        )
        hook.delete()


def _summary(hook: Hook) -> dict[str, Any]:
    """The audited form of a hook: never its secret."""
    return {
        "graph": hook.graph_name,
        "version": hook.version,
        "input_mode": hook.input_mode,
        "input_mapping": hook.input_mapping,
        "key_source": hook.key_source,
        "key_name": hook.key_name,
        "enabled": hook.enabled,
        "owner": hook.owner.get_username() if hook.owner else "",
        "owner_role": hook.owner_role,
    }


def hook_run_role(hook: Hook) -> tuple[str, str]:
    """(role, "") the hook's runs execute with now, or ("", why its owner may not start runs)."""
    owner = hook.owner
    if owner is None:
        return "", "the hook has no owner (the user was deleted): an operator must edit it to own it"
    if not owner.is_active:
        return "", f"the hook's owner {owner.get_username()!r} is inactive"
    roles = token_roles(user_roles=user_roles(owner), token_role=hook.owner_role)
    if not roles_allow(roles, OPERATE):
        return "", f"the hook's owner {owner.get_username()!r} (as {hook.owner_role}) may no longer start runs"
    return strongest(roles), ""


# -- deliveries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A request to ``POST /api/hooks/<name>`` as the view read it (headers: case-insensitive)."""

    name: str
    body: bytes
    content_type: str
    content_length: int
    headers: Mapping[str, str]
    remote_addr: str | None = None


@dataclass(frozen=True)
class Accepted:
    hook: Hook
    trace_id: str | None
    duplicate: bool
    idempotency_key: str


def hook_deliver(*, delivery: Delivery, now: float | None = None) -> Accepted:
    """Check ``delivery`` and start its run once; HookError (4xx) otherwise. Every outcome is audited."""
    hook = Hook.objects.select_related("owner").filter(name=delivery.name).first()
    try:
        if hook is None:
            raise HookError(404, "unknown_hook", f"no hook named {delivery.name!r}")
        result = _deliver(hook, delivery, time.time() if now is None else now)
    except HookError as exc:
        _audit(delivery, hook, HookAudit.REFUSED, exc.status, exc.code, str(exc))
        raise
    if result.duplicate:
        _audit(
            delivery,
            hook,
            HookAudit.DUPLICATE,
            200,
            "duplicate",
            "a delivery with this key was accepted before",
            trace_id=result.trace_id,
        )
    else:
        _audit(delivery, hook, HookAudit.ACCEPTED, 202, "accepted", "", trace_id=result.trace_id)
    return result


def _deliver(hook: Hook, delivery: Delivery, now: float) -> Accepted:
    if delivery.content_type != "application/json":
        raise HookError(
            415,
            "unsupported_media_type",
            f"send the payload as Content-Type: application/json, not {delivery.content_type or 'none'}",
        )
    size = max(delivery.content_length, len(delivery.body))
    if size > MAX_BODY_BYTES:
        raise HookError(413, "payload_too_large", f"the body is {size} bytes; a hook takes at most {MAX_BODY_BYTES}")
    try:
        signed = signing.verify(
            secret=hook.secret,
            timestamp=delivery.headers.get(signing.TIMESTAMP_HEADER),
            signature_header=delivery.headers.get(signing.SIGNATURE_HEADER),
            body=delivery.body,
            now=now,
            tolerance=hook.tolerance_seconds,
        )
    except signing.SignatureError as exc:
        raise HookError(401, exc.code, str(exc)) from None
    if not hook.enabled:
        raise HookError(409, "hook_disabled", f"hook {hook.name!r} is disabled")
    try:
        payload = parse_json(delivery.body, what="the payload")
    except JSONInputError as exc:
        raise HookError(exc.status, exc.code, exc.message) from None
    role, why = hook_run_role(hook)
    if why:
        raise HookError(403, "owner_cannot_start_runs", why)
    key = _idempotency_key(hook, delivery, payload, signed)
    digest = hashlib.sha256(delivery.body).hexdigest()
    earlier = _earlier(hook, key, digest)
    if earlier is not None:
        return earlier
    data = mapping.map_input(hook.input_mapping, payload) if hook.input_mode == Hook.FIELDS else payload
    try:
        with transaction.atomic():
            row = HookDelivery.objects.create(hook=hook, idempotency_key=key, payload_sha256=digest)
            run = _start(hook, data, role, key)
            row.run = run
            row.save(update_fields=["run"])
    except IntegrityError:
        # Another request with this key committed first (PostgreSQL made this insert wait for it).
        earlier = _earlier(hook, key, digest)
        if earlier is None:
            raise
        return earlier
    return Accepted(hook=hook, trace_id=run.trace_id, duplicate=False, idempotency_key=key)


def _start(hook: Hook, data: Any, role: str, key: str) -> Run:
    try:
        return run_start(
            graph_name=hook.graph_name,
            version=hook.version,
            data=data,
            user=hook.owner,
            role=role,
            history={"hook": hook.name, "delivery": key},
            concurrency=hook.concurrency,
        )
    except InvalidInput as exc:
        raise HookError(
            422, "invalid_input", f"the run input is not valid for {hook.graph_name!r}: {exc}", exc.errors
        ) from None
    except GraphNotRunnable as exc:
        raise HookError(403, "graph_not_runnable", str(exc)) from None
    except Graph.DoesNotExist:
        version = f" version {hook.version}" if hook.version else ""
        raise HookError(409, "graph_missing", f"the hook's graph {hook.graph_name!r}{version} does not exist") from None


def _earlier(hook: Hook, key: str, digest: str) -> Accepted | None:
    found = HookDelivery.objects.select_related("run").filter(hook=hook, idempotency_key=key).first()
    if found is None:
        return None
    if found.payload_sha256 != digest:
        raise HookError(
            409,
            "idempotency_key_reused",
            f"idempotency key {key!r} was delivered before with a different payload; nothing was started",
        )
    return Accepted(hook=hook, trace_id=found.run.trace_id if found.run else None, duplicate=True, idempotency_key=key)


def _idempotency_key(hook: Hook, delivery: Delivery, payload: Any, signed: str) -> str:
    if hook.key_source == Hook.KEY_HEADER:
        value: Any = delivery.headers.get(hook.key_name)
        where = f"the {hook.key_name} header"
    elif hook.key_source == Hook.KEY_PATH:
        values = mapping.find(hook.key_name, payload)
        value = values[0] if len(values) == 1 else None
        where = f"the payload's {hook.key_name}"
    else:
        return f"sig:{signed}"
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise HookError(400, "missing_idempotency_key", f"{where} must hold the delivery's idempotency key")
    text = str(value).strip()
    if len(text) > MAX_KEY_LENGTH:
        raise HookError(400, "bad_idempotency_key", f"{where} is over {MAX_KEY_LENGTH} characters")
    return text


def _audit(
    delivery: Delivery,
    hook: Hook | None,
    outcome: str,
    status: int,
    code: str,
    reason: str,
    *,
    trace_id: str | None = "",
) -> None:
    HookAudit.objects.create(
        hook=hook,
        hook_name=delivery.name[:200],
        outcome=outcome,
        status_code=status,
        code=code,
        reason=reason[:500],
        remote_addr=delivery.remote_addr or None,
        trace_id=trace_id or "",
    )
    log.info("hook delivery %r: %s %s %s", delivery.name[:100], outcome, status, code)


_pruned_at = [-3600.0]  # monotonic time of this process's last prune
PRUNE_EVERY_SECONDS = 3600
PRUNE_BATCH = 10_000


def audit_prune(*, now: dt.datetime | None = None) -> int:
    """Delete hook audit rows older than CMO_TRIGGER_HISTORY_DAYS, at most hourly and PRUNE_BATCH a time (a
    scheduler sweep task; unsigned requests to unknown names would otherwise grow the table for ever)."""
    if time.monotonic() - _pruned_at[0] < PRUNE_EVERY_SECONDS:
        return 0
    _pruned_at[0] = time.monotonic()
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.CMO_TRIGGER_HISTORY_DAYS)
    old = HookAudit.objects.filter(received_at__lt=cutoff).values_list("pk", flat=True)[:PRUNE_BATCH]
    deleted, _ = HookAudit.objects.filter(pk__in=list(old)).delete()
    return deleted
