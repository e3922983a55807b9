"""API tokens in admin: create one (its value is shown once), revoke, see when each was last used."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from cmo_site.shared.models import ApiToken
from cmo_site.shared.tokens import SPECIALIST, SPECIALIST_NAME, api_token_create, api_token_revoke


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "role", "specialist", "name"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("specialist") and (data.get("role") != SPECIALIST or not SPECIALIST_NAME.match(data["specialist"])):
            raise forms.ValidationError("Only a specialist token is bound to a specialist, by its name.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["prefix", "user", "role", "specialist", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["user", "role", "specialist", "name"]
        return ["user", "role", "specialist", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A token's user and role are fixed once issued: issue a new token instead.
        return [*self.readonly_fields, "user", "role", "specialist"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw = api_token_create(user=obj.user, role=obj.role, name=obj.name, specialist=obj.specialist)
        obj.pk, obj.prefix, obj.token_hash, obj.created_at = token.pk, token.prefix, token.token_hash, token.created_at
        messages.warning(request, f"The new token is {raw} — copy it now; it is not shown again.")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(api_token_revoke(token=t) for t in queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
