"""Risk rules (data, edited in admin) and approval requests (one per request_approval activity)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from approvals import risk
from runs.fields import ReadableJSONField

LEVEL_CHOICES = [(level, level.title()) for level in risk.LEVELS]


class RiskRule(models.Model):
    """One rule of the risk engine: a pattern over one category of an action, or an amount threshold."""

    CATEGORY_CHOICES = [
        ("files", "files touched"),
        ("commands", "commands"),
        ("code", "code"),
        ("api_calls", "API calls"),
        ("amount", "amount"),
    ]

    name = models.SlugField(max_length=80, unique=True)
    category = models.CharField(max_length=12, choices=CATEGORY_CHOICES)
    pattern = models.CharField(
        max_length=500, blank=True, help_text="a case-insensitive regular expression (not for amount rules)"
    )
    threshold = models.FloatField(null=True, blank=True, help_text="amount rules: matches when amount >= threshold")
    level = models.CharField(max_length=8, choices=LEVEL_CHOICES, help_text="the least level a match implies")
    weight = models.PositiveSmallIntegerField(default=30, help_text="added to the score (capped at 100) per match")
    why = models.CharField(max_length=300, help_text="shown to the approver next to the match")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.category == "amount":
            if self.threshold is None:
                raise ValidationError({"threshold": "an amount rule needs a threshold"})
        else:
            if not self.pattern:
                raise ValidationError({"pattern": "a pattern is required"})
            problem = risk.pattern_error(self.pattern)
            if problem:
                raise ValidationError({"pattern": f"not a valid regular expression: {problem}"})

    def as_rule(self) -> risk.Rule:
        return risk.Rule(
            name=self.name,
            category=self.category,
            level=self.level,
            weight=self.weight,
            why=self.why,
            pattern=self.pattern,
            threshold=self.threshold,
        )


class ApprovalRequest(models.Model):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    AUTO_APPROVED = "auto-approved"
    STATUS_CHOICES = [
        (PENDING, "pending"),
        (APPROVED, "approved"),
        (REJECTED, "rejected"),
        (EXPIRED, "expired"),
        (AUTO_APPROVED, "auto-approved"),
    ]

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="approval_requests")
    step = models.PositiveIntegerField()
    seq = models.PositiveIntegerField(help_text="the request_approval activity's seq within the step")
    activity = models.ForeignKey(
        "runs.Activity",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the request_approval activity (linked once it is recorded)",
    )
    node = models.CharField(max_length=100, blank=True)
    action = ReadableJSONField(default=dict)
    preview = models.TextField(blank=True)
    level = models.CharField(max_length=8, choices=LEVEL_CHOICES)
    score = models.PositiveSmallIntegerField(default=0)
    findings = ReadableJSONField(default=list, blank=True)
    status = models.CharField(max_length=14, choices=STATUS_CHOICES, default=PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    decided_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "step", "seq"], name="approval_run_step_seq_unique"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_status_expiry_idx")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"approval #{self.pk} ({self.level}, {self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.PENDING
