"""Schedules: a graph started by the clock (a cron expression in a time zone, or a fixed interval), and the
record of every slot a schedule fired, skipped, buffered or missed (one row per slot, unique: the guarantee
that a slot starts at most one run whatever the number of schedulers)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Schedule(models.Model):
    """When to start which graph with which input, and what to do when runs overlap or slots were missed.

    ``next_slot_at`` is the first slot not yet handled: the scheduler's tick fires every schedule whose
    next slot (plus its jitter) is due. Runs of its slots execute as ``owner`` with ``owner_role``, the role
    the owner acted with when saving it (a token's cap included), while the owner still holds it; whoever
    edits a schedule becomes its owner.
    """

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW_ALL = "allow_all"
    CANCEL_OTHER = "cancel_other"
    OVERLAP_CHOICES = [
        (SKIP, "skip the slot while a run of the schedule is active"),
        (BUFFER_ONE, "start one buffered run when the active one ends"),
        (ALLOW_ALL, "start every slot's run"),
        (CANCEL_OTHER, "abort the active run and start the new one"),
    ]
    CATCHUP_ALL = "all"
    CATCHUP_LATEST = "latest"
    CATCHUP_CHOICES = [
        (CATCHUP_ALL, "fire every missed slot within the window, once each"),
        (CATCHUP_LATEST, "fire only the latest missed slot within the window"),
    ]

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    graph_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="empty: the latest version at each slot")
    input = models.JSONField(default=dict, blank=True)
    cron = models.CharField(max_length=200, blank=True, help_text='e.g. "*/15 * * * *"; or an interval')
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    jitter_seconds = models.PositiveIntegerField(default=0)
    overlap = models.CharField(max_length=20, choices=OVERLAP_CHOICES, default=SKIP)
    catchup = models.CharField(max_length=10, choices=CATCHUP_CHOICES, default=CATCHUP_ALL)
    catchup_window_seconds = models.PositiveIntegerField(default=60)
    concurrency = models.JSONField(
        null=True, blank=True, help_text="its runs' key and limits, e.g. {\"key\": \"input.service\", \"limit\": 1}"
    )
    budget = models.JSONField(
        null=True, blank=True, help_text='its runs\' model budget, e.g. {"tokens": 200000, "cost_usd": 2}'
    )
    paused = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True, help_text="why it was paused, by whom")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner_role = models.CharField(max_length=20, blank=True, help_text="the role its runs execute with")
    next_slot_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["paused", "next_slot_at"], name="schedule_due")]

    def __str__(self) -> str:
        return self.name


class ScheduleFire(models.Model):
    """One slot of a schedule and what became of it (a run started, skipped, buffered, failed, missed)."""

    SLOT = "slot"
    TRIGGER = "trigger"
    BACKFILL = "backfill"
    KIND_CHOICES = [(SLOT, "slot"), (TRIGGER, "triggered now"), (BACKFILL, "backfill")]
    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"
    FAILED = "failed"
    MISSED = "missed"
    OUTCOME_CHOICES = [(o, o) for o in (STARTED, SKIPPED, BUFFERED, FAILED, MISSED)]

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    slot = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=KIND_CHOICES, default=SLOT)
    outcome = models.CharField(max_length=10, choices=OUTCOME_CHOICES)
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=150, blank=True, help_text="who the run runs as")
    # True from the start of its run until a look finds the run ended: what "a run of the schedule is active"
    # reads, so the overlap check scans a schedule's few open fires, not its whole history.
    open = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [models.UniqueConstraint(fields=["schedule", "slot"], name="one_fire_per_slot")]
        indexes = [
            models.Index(fields=["outcome", "schedule"], name="schedulefire_outcome"),
            models.Index(fields=["schedule"], condition=models.Q(open=True), name="schedulefire_open"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.slot:%Y-%m-%d %H:%M:%S}: {self.outcome}"
