"""Risk rules are edited here; approval requests are read-only (decisions go through the inbox)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from approvals.models import ApprovalRequest, RiskRule


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "category", "level", "weight", "pattern", "threshold", "enabled")
    list_filter = ("category", "level", "enabled")
    list_editable = ("enabled",)
    search_fields = ("name", "pattern", "why")


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "run_link", "step", "node", "level", "score", "status", "expires_at", "decided_by")
    list_filter = ("status", "level", "created_at")
    search_fields = ("run__trace_id", "node", "preview", "reason")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields] + ["run_link"]

    @admin.display(description="run")
    def run_link(self, obj: ApprovalRequest) -> str:
        url = reverse("admin:runs_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, obj.run.trace_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
