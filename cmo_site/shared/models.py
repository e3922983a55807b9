"""API tokens: what programs use instead of a session (``Authorization: Bearer <token>``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from cmo_site.shared.permissions import TOKEN_ROLE_CHOICES


class ApiToken(models.Model):
    """A bearer token of one user, capped at one role.

    Only the SHA-256 of the token is stored; ``prefix`` (its first characters)
    finds the row and names the token in lists. The token itself is shown once,
    when it is created.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="a label: what uses this token")
    role = models.CharField(
        max_length=12,
        choices=TOKEN_ROLE_CHOICES,
        help_text="the most this token may do; it never exceeds the user's own roles",
    )
    specialist = models.CharField(
        max_length=100,
        blank=True,
        help_text="for a specialist token: the one specialist it may register and heartbeat (blank: new names only)",
    )
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        app_label = "cmo_site"
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user}, {self.role})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

