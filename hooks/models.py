"""Webhook triggers: a hook (a signed URL that starts a graph), each delivery it accepted (unique per idempotency
key: the guarantee that a retried delivery starts one run), and the audit of every delivery, refused ones
included (a refusal stores nothing else)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from cmo_site.shared.permissions import TOKEN_ROLE_CHOICES


class Hook(models.Model):
    """What ``POST /api/hooks/<name>`` starts, and how a delivery is checked and turned into the run's input.

    Runs execute as ``owner`` with the owner's roles at delivery time, capped by ``owner_role`` (the role the
    owner acted with when they last changed what the hook runs: an operator token of an admin makes an
    operator's hook). Whoever changes what the hook runs, enables it or rotates its secret becomes its owner.
    ``secret`` is the HMAC key: stored as it is (it must be, to check signatures), shown once when it is made.
    """

    BODY = "body"
    FIELDS = "fields"
    INPUT_CHOICES = [(BODY, "the whole JSON body"), (FIELDS, "selected fields by JSON path")]
    KEY_SIGNATURE = "signature"
    KEY_HEADER = "header"
    KEY_PATH = "path"
    KEY_CHOICES = [
        (KEY_SIGNATURE, "the signature (a replay of the same signed delivery)"),
        (KEY_HEADER, "a request header"),
        (KEY_PATH, "a field of the payload by JSON path"),
    ]

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    graph_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="empty: the latest version at delivery")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner_role = models.CharField(
        max_length=20, choices=TOKEN_ROLE_CHOICES, default="admin", help_text="caps the owner's roles"
    )
    secret = models.CharField(max_length=100, help_text="the HMAC-SHA256 key; shown once")
    input_mode = models.CharField(max_length=10, choices=INPUT_CHOICES, default=BODY)
    input_mapping = models.JSONField(
        default=dict, blank=True, help_text='input field -> JSON path, e.g. {"service": "$.alert.labels.service"}'
    )
    key_source = models.CharField(max_length=10, choices=KEY_CHOICES, default=KEY_SIGNATURE)
    key_name = models.CharField(
        max_length=200, blank=True, help_text="the header (Idempotency-Key, X-GitHub-Delivery) or the JSON path"
    )
    tolerance_seconds = models.PositiveIntegerField(default=300)
    concurrency = models.JSONField(
        null=True, blank=True, help_text='its runs\' key and limits, e.g. {"key": "input.service", "limit": 1}'
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class HookDelivery(models.Model):
    """An accepted delivery: its idempotency key and the run it started (null once retention deleted the run)."""

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    idempotency_key = models.CharField(max_length=200)
    payload_sha256 = models.CharField(max_length=64, help_text="of the raw body: a reused key with another body")
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["hook", "idempotency_key"], name="hook_delivery_once")]

    def __str__(self) -> str:
        return f"{self.hook_id}:{self.idempotency_key}"


class HookAudit(models.Model):
    """One delivery attempt and what was answered; a refused one leaves only this row."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    OUTCOME_CHOICES = [(o, o) for o in (ACCEPTED, DUPLICATE, REFUSED)]

    hook = models.ForeignKey(Hook, null=True, blank=True, on_delete=models.SET_NULL, related_name="audits")
    hook_name = models.CharField(max_length=200, help_text="as requested (an unknown hook has no row)")
    outcome = models.CharField(max_length=10, choices=OUTCOME_CHOICES)
    status_code = models.PositiveSmallIntegerField()
    code = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["hook", "outcome", "-received_at"], name="hook_audit_recent")]

    def __str__(self) -> str:
        return f"{self.hook_name} {self.outcome} {self.status_code}"
