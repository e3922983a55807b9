"""Graphs, runs, steps, activities, events and specialists.

Rows that workers and the web server both write are saved with
``update_fields`` or conditional ``update()`` calls in services; no logic lives here
beyond small pure properties.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.engine import statemachine as sm
from runs.engine.graph import DEFAULT_MAX_STEPS
from runs.fields import ReadableJSONField


def new_trace_id() -> str:
    return uuid.uuid4().hex


class Graph(models.Model):
    """One version of a graph definition (validated before it is stored)."""

    ORIGIN_CODE = "code"
    ORIGIN_JSON = "json"
    # A definition that came with an imported run and matched no stored version: history, not published.
    ORIGIN_IMPORT = "import"

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    definition = ReadableJSONField()
    definition_hash = models.CharField(max_length=64)
    node_hashes = ReadableJSONField(default=dict, help_text="node name -> SHA-256 of its source")
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who published this JSON version; the publisher of a name's first JSON version owns the name",
    )
    origin = models.CharField(
        max_length=8, choices=[(ORIGIN_CODE, "code"), (ORIGIN_JSON, "JSON"), (ORIGIN_IMPORT, "imported")]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="graph_name_version_unique")]
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Run(models.Model):
    STATUS_CHOICES = [(s, s.replace("_", " ").title()) for s in sm.STATUSES]

    trace_id = models.CharField(max_length=32, unique=True, default=new_trace_id, editable=False)
    graph = models.ForeignKey(Graph, on_delete=models.PROTECT, related_name="runs")
    input = ReadableJSONField(default=dict)
    seed = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=STATUS_CHOICES, default=sm.PENDING)
    step_index = models.PositiveIntegerField(default=0, help_text="index of the next step to execute")
    node = models.CharField(max_length=100, null=True, blank=True, help_text="the next node to execute")
    attempt = models.PositiveIntegerField(default=1)
    state = ReadableJSONField(
        null=True,
        blank=True,
        help_text="the state at the run's position when no step row holds it: the input, a fork's state, the end",
    )
    error = models.TextField(blank=True)
    wait_reason = models.TextField(blank=True)
    context = ReadableJSONField(default=dict, blank=True, help_text="who started the run and with what role")

    max_steps = models.PositiveIntegerField(default=DEFAULT_MAX_STEPS)
    deadline_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="a retry's backoff: not runnable before")
    abort_requested = models.BooleanField(default=False)
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="when the run last joined the queue: workers claim the oldest first"
    )
    lease_owner = models.CharField(max_length=200, blank=True)
    last_worker = models.CharField(max_length=200, blank=True, help_text="the worker that last executed a step")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    crash_count = models.PositiveIntegerField(
        default=0,
        help_text="times in a row a worker died (or stalled) holding the run without committing a step",
    )

    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks")
    parent_step = models.PositiveIntegerField(null=True, blank=True)

    # Composition: a run another run started (``kind`` child: ctx.activities.start_run) or a branch of its
    # fan-out (``kind`` branch), at its step ``spawn_step`` (and activity ``spawn_seq``, or branch number).
    KIND_RUN = "run"
    KIND_CHILD = "child"
    KIND_BRANCH = "branch"
    kind = models.CharField(
        max_length=8,
        choices=[(KIND_RUN, "run"), (KIND_CHILD, "child run"), (KIND_BRANCH, "branch")],
        default=KIND_RUN,
    )
    spawned_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="spawned",
        help_text="the run that started it (its branches and children go when it goes)",
    )
    spawn_step = models.PositiveIntegerField(null=True, blank=True)
    spawn_seq = models.PositiveIntegerField(null=True, blank=True, help_text="the activity (child) or branch number")
    until_node = models.CharField(
        max_length=100, blank=True, help_text="a branch ends when its next node is this one (its join)"
    )
    held = models.BooleanField(default=False, help_text="a branch over its fan-out's limit: not runnable yet")
    detached = models.BooleanField(default=False, help_text="a child run that outlives an abort of its parent")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    pinned = models.BooleanField(default=False, help_text="kept by the retention policy whatever its age")
    # A concurrency key (runs.engine.concurrency, runs.services.leases): "<graph>:<value>", "" for none.
    concurrency_key = models.CharField(
        max_length=255, blank=True, default="", help_text="runs with one key share its limit and rate"
    )
    concurrency_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="at most this many runs of the key in flight (empty: no limit)"
    )
    concurrency_rate = ReadableJSONField(
        null=True, blank=True, help_text='at most {"starts": N, "per_seconds": S} starts of the key'
    )
    # What the run's model calls spent (runs.llm): added in each call's record transaction; a fork's copied
    # records count for its parent only. The budget: {"tokens": N, "cost_usd": X}, refused before sending.
    tokens = models.PositiveBigIntegerField(default=0, help_text="model tokens spent (input + output)")
    cost_usd = models.FloatField(default=0.0, help_text="model cost in USD, from the price table")
    budget = ReadableJSONField(null=True, blank=True, help_text='{"tokens": N, "cost_usd": X}; empty: no budget')

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="run_created_idx"),
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            models.Index(fields=["graph", "-created_at"], name="run_graph_created_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="run_status_lease_idx"),
            models.Index(fields=["status", "queued_at"], name="run_status_queued_idx"),
            models.Index(fields=["finished_at"], name="run_finished_idx"),  # metrics and retention
            models.Index(fields=["spawned_by", "spawn_step"], name="run_spawned_idx"),
            models.Index(
                fields=["concurrency_key", "status", "queued_at"],
                condition=~models.Q(concurrency_key=""),
                name="run_concurrency_key_idx",
            ),
            models.Index(fields=["-cost_usd", "-id"], name="run_cost_idx"),  # the runs list sorted by cost
        ]
        constraints = [
            # A retried or replayed start never makes a second child (or branch) for one place.
            models.UniqueConstraint(
                fields=["spawned_by", "spawn_step", "spawn_seq"],
                condition=models.Q(spawned_by__isnull=False),
                name="run_spawn_place_unique",
            )
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.trace_id

    @property
    def is_terminal(self) -> bool:
        return self.status in sm.TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or self.updated_at
        return (end - self.started_at).total_seconds()


class Step(models.Model):
    # No index of its own: the unique (run, index) constraint serves every lookup by run (one index less per step).
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    index = models.PositiveIntegerField()
    node = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField(default=1)
    state = ReadableJSONField(null=True, help_text="the full state after the step, when state_delta is null")
    state_delta = ReadableJSONField(null=True, blank=True, help_text="changes from the previous step's state")
    state_size = models.PositiveIntegerField(default=0, help_text="bytes of the full state as canonical JSON")
    state_hash = models.CharField(max_length=64)
    input_hash = models.CharField(max_length=64)
    output = ReadableJSONField(null=True, blank=True)
    output_hash = models.CharField(max_length=64)
    edge = models.CharField(max_length=100, null=True, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    error = models.TextField(blank=True)
    # The start of the SHA-256 of the node's source that executed this step (runs.engine.stores.CODE_HASH_CHARS):
    # after a deploy or a move to another version, verify compares each step with the code it ran with.
    code_hash = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="step_run_index_unique")]
        indexes = [models.Index(fields=["started_at"], name="step_started_idx")]  # metrics by day
        ordering = ["run", "index"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.index} {self.node}"


class Activity(models.Model):
    STATUS_CHOICES = [("completed", "completed"), ("failed", "failed"), ("pending", "pending")]

    # No index of its own: the unique (run, step, seq) constraint serves every lookup by run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="activities", db_index=False)
    step = models.PositiveIntegerField()
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    request = ReadableJSONField()
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="completed")
    response = ReadableJSONField(null=True, blank=True, help_text="large responses are {'$blob': sha256}")
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)
    attempt = models.PositiveIntegerField(default=1)
    tokens = models.PositiveBigIntegerField(default=0, help_text="model tokens this call spent (input + output)")
    cost_usd = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step", "seq"], name="activity_run_step_seq_unique")]
        indexes = [
            models.Index(fields=["created_at"], name="activity_created_idx"),  # metrics by day
            # The waits the scheduler settles (joins, child runs, signals) are found without a scan.
            models.Index(fields=["type"], condition=models.Q(status="pending"), name="activity_pending_idx"),
        ]
        ordering = ["run", "step", "seq"]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        return f"{self.run_id}#{self.step}.{self.seq} {self.type}"

    @property
    def idempotency_key(self) -> str:
        return f"{self.run.trace_id}:{self.step}:{self.seq}"


class RunEvent(models.Model):
    """The audit trail: every status transition, retry, resumption and decision."""

    # No index of its own: runevent_run_idx (run, id) serves every lookup by run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    step = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    detail = ReadableJSONField(default=dict, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["run", "id"], name="runevent_run_idx"),
            models.Index(fields=["created_at"], name="runevent_created_idx"),  # metrics by day
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.run_id} {self.kind} {self.from_status}->{self.to_status}"


class Specialist(models.Model):
    TRANSPORT_INPROCESS = "inprocess"
    TRANSPORT_REDIS = "redis"
    TRANSPORT_CHOICES = [(TRANSPORT_INPROCESS, "in-process"), (TRANSPORT_REDIS, "Redis Streams")]

    name = models.CharField(max_length=100, unique=True)
    version = models.CharField(max_length=40, blank=True)
    capabilities = ReadableJSONField(default=list, blank=True)
    transport = models.CharField(max_length=20, choices=TRANSPORT_CHOICES, default=TRANSPORT_INPROCESS)
    address = models.CharField(max_length=300, blank=True, help_text="stream name or URL")
    registered = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who first registered it over the API; with admins and tokens bound to the name, who may change it",
    )
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="at most this many invocations awaiting a reply at once; later calls queue in submission order",
    )
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GraphLimit(models.Model):
    """At most ``max_running`` runs of a graph (any version) in flight at once; the rest wait PENDING."""

    graph_name = models.CharField(max_length=100, unique=True)
    max_running = models.PositiveIntegerField(help_text="runs of this graph RUNNING (or being started) at once")

    class Meta:
        ordering = ["graph_name"]

    def __str__(self) -> str:
        return f"{self.graph_name} <= {self.max_running}"


class WorkerStatus(models.Model):
    """A worker process's heartbeat: what it holds now (written by its lease keeper every few seconds)."""

    owner = models.CharField(max_length=200, unique=True)
    concurrency = models.PositiveIntegerField()
    in_flight = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The graph versions whose code it runs, as "name vN" (of those with runs in flight, and the latest).
    serves = ReadableJSONField(default=list, blank=True)

    class Meta:
        ordering = ["owner"]
        verbose_name_plural = "worker statuses"

    def __str__(self) -> str:
        return self.owner


class SchedulerStatus(models.Model):
    """A scheduler process's heartbeat: when it last finished a sweep (runs.scheduler.SchedulerLoop writes it
    after each successful round; /metrics exports the latest as cmo_scheduler_last_sweep_timestamp_seconds)."""

    owner = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField()
    last_sweep_at = models.DateTimeField()

    class Meta:
        ordering = ["owner"]
        verbose_name_plural = "scheduler statuses"

    def __str__(self) -> str:
        return self.owner


class AuditEvent(models.Model):
    """Who changed something runs depend on, when, and how: published a graph version, (re)registered a
    specialist. Run-level events stay RunEvents; these have no run."""

    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=200, blank=True, help_text="user name, or blank for the command line")
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200, help_text="what changed, e.g. graph:check-url or specialist:healer")
    detail = ReadableJSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target", "-at"], name="audit_target_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor or '-'} {self.action} {self.target}"


class Timer(models.Model):
    """A durable timer: the pending activity (run, step, seq) of ``ctx.activities.sleep`` is answered at ``due_at``
    by the scheduler's timer loop (runs.scheduler)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="timers")
    step = models.PositiveIntegerField()
    seq = models.PositiveIntegerField()
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step", "seq"], name="timer_run_step_seq_unique")]
        indexes = [models.Index(fields=["due_at"], condition=models.Q(fired_at__isnull=True), name="timer_due_idx")]
        ordering = ["due_at", "id"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.step}.{self.seq} at {self.due_at:%Y-%m-%d %H:%M:%S}"


class Signal(models.Model):
    """A signal sent to a run from outside (API, page, command): delivered to its ``wait_for_signal(name)`` now or,
    if the run is not waiting for it yet, kept until it is."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="signals")
    name = models.CharField(max_length=100)
    payload = ReadableJSONField(null=True, blank=True)
    sent_by = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["run", "name", "delivered_at"], name="signal_run_name_idx")]
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}"


class LlmUsageDaily(models.Model):
    """Model calls, tokens and cost per UTC day, graph, provider and model (runs.llm.usage).

    Added to in each call's record transaction and never deleted with runs, so totals survive retention:
    /metrics exposes them as counters, the dashboard and /api/metrics/llm read them with one GROUP BY.
    """

    day = models.DateField()
    graph_name = models.CharField(max_length=100)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    calls = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "graph_name", "provider", "model"], name="llm_usage_day_unique")
        ]
        ordering = ["-day", "graph_name", "provider", "model"]
        verbose_name_plural = "LLM usage by day"

    def __str__(self) -> str:
        return f"{self.day} {self.graph_name} {self.provider}/{self.model}"


class A2ARoute(models.Model):
    """Where a ``send_a2a`` by capability stands (runs.specialists.routing): the specialist invoked now, the
    ones that may be tried next (registered, enabled and allowed by the policies when the call was made), who
    was skipped and why, and when the current one is given up on."""

    activity = models.OneToOneField(Activity, on_delete=models.CASCADE, related_name="route")
    capability = models.CharField(max_length=100)
    specialist = models.CharField(max_length=100, help_text="the specialist invoked now")
    candidates = ReadableJSONField(default=list, blank=True, help_text="the ones to try next, in order")
    skipped = ReadableJSONField(default=list, blank=True, help_text='[{"specialist", "reason"}]')
    tries = models.PositiveIntegerField(default=1)
    max_tries = models.PositiveIntegerField(default=2)
    timeout_seconds = models.FloatField(default=60.0)
    deadline_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.capability} -> {self.specialist}"
