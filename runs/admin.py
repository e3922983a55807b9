"""Django admin: specialists are editable; graphs, runs, steps, activities and events are read-only records."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from runs.models import Activity, Graph, GraphLimit, Run, RunEvent, Specialist, Step, WorkerStatus
from runs.services.run_store import step_state
from runs.specialists.registry import (
    specialist_dead_letters,
    specialist_redrive,
    specialist_set_registered,
    specialist_status,
    specialist_stream_stats,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Execution records are written by the engine only; admins may look, not touch."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def pretty(value: Any) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(Graph)
class GraphAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "origin", "definition_hash_short", "created_at"]
    list_filter = ["name", "origin"]
    search_fields = ["name"]
    readonly_fields = [
        "name",
        "version",
        "origin",
        "description",
        "definition_pretty",
        "node_hashes_pretty",
        "definition_hash",
        "created_at",
    ]
    exclude = ["definition", "node_hashes"]

    @admin.display(description="hash")
    def definition_hash_short(self, obj: Graph) -> str:
        return obj.definition_hash[:12]

    @admin.display(description="definition")
    def definition_pretty(self, obj: Graph) -> str:
        return pretty(obj.definition)

    @admin.display(description="node source hashes")
    def node_hashes_pretty(self, obj: Graph) -> str:
        return pretty(obj.node_hashes)


class StepInline(admin.TabularInline):
    model = Step
    fields = readonly_fields = ("index", "node", "attempt", "edge", "duration_ms", "state_hash", "error")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = readonly_fields = ("created_at", "kind", "from_status", "to_status", "step", "message", "actor")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["trace_id", "graph", "status", "step_index", "node", "created_at", "finished_at"]
    list_filter = ["status", "graph__name", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=trace_id", "trace_id"]
    list_select_related = ["graph"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "trace_id",
        "graph",
        "status",
        "step_index",
        "node",
        "attempt",
        "seed",
        "input_pretty",
        "state_pretty",
        "error",
        "wait_reason",
        "max_steps",
        "deadline_at",
        "lease_owner",
        "lease_expires_at",
        "parent",
        "parent_step",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["input", "state", "context", "not_before", "abort_requested"]
    inlines = [StepInline, RunEventInline]

    @admin.display(description="input")
    def input_pretty(self, obj: Run) -> str:
        return pretty(obj.input)

    @admin.display(description="state")
    def state_pretty(self, obj: Run) -> str:
        return pretty(obj.state)


@admin.register(Step)
class StepAdmin(ReadOnlyAdmin):
    list_display = ["run", "index", "node", "attempt", "edge", "duration_ms", "error"]
    list_filter = ["node", "run__status", "run__graph__name", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["=run__trace_id"]
    list_select_related = ["run"]
    readonly_fields = [
        "run",
        "index",
        "node",
        "attempt",
        "edge",
        "state_pretty",
        "output_pretty",
        "state_hash",
        "input_hash",
        "output_hash",
        "started_at",
        "duration_ms",
        "error",
    ]
    exclude = ["state", "state_delta", "output"]

    @admin.display(description="state")
    def state_pretty(self, obj: Step) -> str:
        return pretty(step_state(run_id=obj.run_id, index=obj.index))

    @admin.display(description="output")
    def output_pretty(self, obj: Step) -> str:
        return pretty(obj.output)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ["run", "step", "seq", "type", "status", "duration_ms", "created_at"]
    list_filter = ["type", "status", "run__graph__name", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=run__trace_id"]
    list_select_related = ["run"]
    readonly_fields = [
        "run",
        "step",
        "seq",
        "type",
        "status",
        "request_pretty",
        "request_hash",
        "response_pretty",
        "error",
        "duration_ms",
        "attempt",
        "created_at",
    ]
    exclude = ["request", "response"]

    @admin.display(description="request")
    def request_pretty(self, obj: Activity) -> str:
        return pretty(obj.request)

    @admin.display(description="response")
    def response_pretty(self, obj: Activity) -> str:
        return pretty(obj.response)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "run", "kind", "from_status", "to_status", "step", "message", "actor"]
    list_filter = ["kind", "to_status", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=run__trace_id"]
    list_select_related = ["run"]


@admin.register(Specialist)
class SpecialistAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "version",
        "transport",
        "status",
        "registered",
        "enabled",
        "max_in_flight",
        "stream_depth",
        "stream_pending",
        "in_flight",
        "held",
        "dead_letters",
        "last_heartbeat_at",
    ]
    list_filter = ["registered", "enabled", "transport"]
    list_editable = ["registered", "enabled", "max_in_flight"]
    search_fields = ["name"]
    fields = [
        "name",
        "version",
        "capabilities",
        "transport",
        "address",
        "registered",
        "enabled",
        "max_in_flight",
        "last_heartbeat_at",
        "stream_summary",
    ]
    readonly_fields = ["last_heartbeat_at", "stream_summary"]
    actions = ["register", "unregister", "redrive_all"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # One Redis round of stats for the page, read by the column methods below.
        self._stats = specialist_stream_stats(names=list(self.get_queryset(request).values_list("name", flat=True)))
        return super().changelist_view(request, extra_context)

    def _stat(self, obj: Specialist, key: str) -> Any:
        stats = getattr(self, "_stats", {}).get(obj.name)
        return "—" if stats is None else stats[key]

    @admin.display(description="status")
    def status(self, obj: Specialist) -> str:
        return specialist_status(obj.last_heartbeat_at) if obj.transport == Specialist.TRANSPORT_REDIS else "in-process"

    @admin.display(description="stream depth")
    def stream_depth(self, obj: Specialist) -> Any:
        return self._stat(obj, "depth")

    @admin.display(description="pending (unacked)")
    def stream_pending(self, obj: Specialist) -> Any:
        return self._stat(obj, "pending")

    @admin.display(description="in flight")
    def in_flight(self, obj: Specialist) -> Any:
        return self._stat(obj, "in_flight")

    @admin.display(description="held over cap")
    def held(self, obj: Specialist) -> Any:
        return self._stat(obj, "held")

    @admin.display(description="DLQ")
    def dead_letters(self, obj: Specialist) -> Any:
        value = self._stat(obj, "dlq")
        if value in ("—", 0):
            return value
        url = reverse("admin:runs_specialist_dead_letters", args=[obj.pk])
        return format_html('<a href="{}">{} dead letters</a>', url, value)

    @admin.display(description="stream")
    def stream_summary(self, obj: Specialist) -> str:
        stats = specialist_stream_stats(names=[obj.name]).get(obj.name)
        if stats is None:
            return (
                "in-process (no stream)" if obj.transport != Specialist.TRANSPORT_REDIS else "Redis is not configured"
            )
        url = reverse("admin:runs_specialist_dead_letters", args=[obj.pk])
        return format_html(
            "{} messages in the stream, {} unacknowledged, {} in flight, {} held over the cap, "
            '<a href="{}">{} dead letters</a>',
            stats["depth"],
            stats["pending"],
            stats["in_flight"],
            stats["held"],
            url,
            stats["dlq"],
        )

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:pk>/dead-letters/",
                self.admin_site.admin_view(self.dead_letters_view),
                name="runs_specialist_dead_letters",
            )
        ]
        return extra + super().get_urls()

    def dead_letters_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The specialist's dead-letter stream, with a re-drive button per message (POST)."""
        obj = self.get_object(request, str(pk))
        if obj is None or not self.has_view_permission(request, obj):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request, obj):
                raise PermissionDenied
            ids = request.POST.getlist("id")
            moved = specialist_redrive(name=obj.name, ids=ids)
            self.message_user(request, f"{moved} of {len(ids)} message(s) re-driven to {obj.name}", messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": f"Dead letters of {obj.name}",
            "letters": specialist_dead_letters(name=obj.name),
            "can_redrive": self.has_change_permission(request, obj),
        }
        return TemplateResponse(request, "admin/runs/specialist/dead_letters.html", context)

    @admin.action(description="Re-drive every dead letter of the selected specialists")
    def redrive_all(self, request: HttpRequest, queryset: QuerySet[Specialist]) -> None:
        total = 0
        for name in queryset.values_list("name", flat=True):
            letters = specialist_dead_letters(name=name)
            total += specialist_redrive(name=name, ids=[letter["id"] for letter in letters])
        self.message_user(request, f"{total} dead letter(s) re-driven", messages.SUCCESS)

    @admin.action(description="Register the selected specialists")
    def register(self, request: HttpRequest, queryset: QuerySet[Specialist]) -> None:
        n = specialist_set_registered(names=list(queryset.values_list("name", flat=True)), registered=True)
        self.message_user(request, f"{n} specialist(s) registered", messages.SUCCESS)

    @admin.action(description="Unregister the selected specialists")
    def unregister(self, request: HttpRequest, queryset: QuerySet[Specialist]) -> None:
        n = specialist_set_registered(names=list(queryset.values_list("name", flat=True)), registered=False)
        self.message_user(request, f"{n} specialist(s) unregistered", messages.SUCCESS)


@admin.register(GraphLimit)
class GraphLimitAdmin(admin.ModelAdmin):
    list_display = ["graph_name", "max_running"]
    list_editable = ["max_running"]
    search_fields = ["graph_name"]


@admin.register(WorkerStatus)
class WorkerStatusAdmin(ReadOnlyAdmin):
    list_display = ["owner", "concurrency", "in_flight", "started_at", "last_seen_at"]
