"""Schedules in Django admin: edit one as its owner would (the services check and save it), its fires read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from cmo_site.shared.permissions import primary_role
from schedules import services
from schedules.models import Schedule, ScheduleFire


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = (
            "name", "description", "graph_name", "version", "input", "cron", "interval_seconds", "timezone",
            "jitter_seconds", "overlap", "catchup", "catchup_window_seconds", "concurrency", "budget", "paused", "note",
        )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        request: HttpRequest = self.request  # type: ignore[attr-defined]
        fields = {**data, "graph": data.get("graph_name")}
        try:
            self.checked = services.schedule_check(data=fields, user=request.user, role=primary_role(request.user))
        except services.ScheduleInvalid as exc:
            raise forms.ValidationError([f"{e['field']}: {e['message']}" for e in exc.details]) from None
        return data


class FireInline(admin.TabularInline):
    model = ScheduleFire
    extra = 0
    can_delete = False
    fields = ("slot", "kind", "outcome", "run", "actor", "reason")
    readonly_fields = fields
    ordering = ("-slot",)
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("run")


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "graph_name", "cron", "interval_seconds", "timezone", "overlap", "paused", "owner")
    list_filter = ("paused", "overlap")
    search_fields = ("name", "graph_name")
    readonly_fields = ("owner", "owner_role", "next_slot_at", "created_at", "updated_at")
    inlines = [FireInline]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # type: ignore[attr-defined]
        return form

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        """Saved by the services, so whoever saves it owns it and its next slot is computed."""
        role = primary_role(request.user)
        if not change:
            saved = services.schedule_create(
                name=obj.name, fields=form.checked, user=request.user, role=role, paused=obj.paused
            )
            obj.pk = saved.pk
            return
        saved = services.schedule_update(schedule=obj, fields=form.checked, user=request.user, role=role)
        if obj.paused and not saved.paused:
            services.schedule_pause(schedule=saved, user=request.user, note=obj.note)
        elif saved.paused and not obj.paused:
            services.schedule_resume(schedule=saved, user=request.user)
