"""The audit log of changes every run depends on: graph versions published, specialists (re)registered."""

from __future__ import annotations

from typing import Any

from runs.models import AuditEvent


def audit_record(*, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> AuditEvent:
    """One entry; call it in the transaction that makes the change, so the two commit together."""
    return AuditEvent.objects.create(actor=actor, action=action, target=target, detail=detail or {})
