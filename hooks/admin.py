"""Hooks in admin: the secret is never shown (rotate it from the hook's page or the API); audits are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hooks.models import Hook, HookAudit, HookDelivery


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = ("name", "graph_name", "version", "input_mode", "key_source", "enabled", "owner", "owner_role")
    list_filter = ("enabled", "input_mode", "key_source")
    search_fields = ("name", "graph_name", "description")
    exclude = ("secret",)
    readonly_fields = ("owner", "owner_role", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a hook is made on its page or over the API, which generate and show the secret once


@admin.register(HookDelivery)
class HookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("hook", "idempotency_key", "run", "received_at")
    search_fields = ("hook__name", "idempotency_key", "run__trace_id")
    readonly_fields = ("hook", "idempotency_key", "payload_sha256", "run", "received_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(HookAudit)
class HookAuditAdmin(admin.ModelAdmin):
    list_display = ("received_at", "hook_name", "outcome", "status_code", "code", "reason", "remote_addr")
    list_filter = ("outcome", "status_code")
    search_fields = ("hook_name", "reason", "trace_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
