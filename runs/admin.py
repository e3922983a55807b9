"""Django admin: specialists are editable; graphs, runs, steps, activities and events are read-only records."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from runs.models import Activity, Graph, GraphLimit, Run, RunEvent, Specialist, Step, WorkerStatus
from runs.selectors import step_state
from runs.services.specialists import specialist_set_registered


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
    list_display = ["name", "version", "transport", "address", "registered", "enabled", "last_heartbeat_at"]
    list_filter = ["registered", "enabled", "transport"]
    list_editable = ["registered", "enabled"]
    search_fields = ["name"]
    fields = ["name", "version", "capabilities", "transport", "address", "registered", "enabled", "last_heartbeat_at"]
    readonly_fields = ["last_heartbeat_at"]
    actions = ["register", "unregister"]

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
