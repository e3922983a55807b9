"""Reads the hook pages and the API share."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from hooks.models import Hook, HookAudit, HookDelivery

RECENT = 20


def hook_list() -> QuerySet[Hook]:
    """Every hook with its owner, its number of deliveries and refusals, and when it was last called."""
    return Hook.objects.select_related("owner").annotate(
        delivered=Count("deliveries", distinct=True),
        refused=Count("audits", filter=Q(audits__outcome=HookAudit.REFUSED), distinct=True),
        last_called_at=Max("audits__received_at"),
    )


def hook_get(*, name: str) -> Hook:
    """The hook named ``name`` (Hook.DoesNotExist: a 404)."""
    return Hook.objects.select_related("owner").get(name=name)


def hook_deliveries(*, hook: Hook, limit: int = RECENT) -> list[HookDelivery]:
    return list(HookDelivery.objects.filter(hook=hook).select_related("run")[:limit])


def hook_refusals(*, hook: Hook, limit: int = RECENT) -> list[HookAudit]:
    return list(HookAudit.objects.filter(hook=hook, outcome=HookAudit.REFUSED)[:limit])


def hook_out(hook: Hook) -> dict[str, Any]:
    """The fields a hook is shown with (the API's HookOut): never its secret."""
    return {
        "name": hook.name,
        "description": hook.description,
        "graph": hook.graph_name,
        "version": hook.version,
        "input_mode": hook.input_mode,
        "input_mapping": hook.input_mapping,
        "key_source": hook.key_source,
        "key_name": hook.key_name,
        "tolerance_seconds": hook.tolerance_seconds,
        "concurrency": hook.concurrency,
        "enabled": hook.enabled,
        "owner": hook.owner.get_username() if hook.owner else "",
        "owner_role": hook.owner_role,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
    }
