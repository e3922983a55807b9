"""The create form of the hooks page: it parses and checks shape; hooks.services decides the rest."""

from __future__ import annotations

from typing import Any

from django import forms

from hooks.models import Hook
from hooks.services import DEFAULT_TOLERANCE, MAX_TOLERANCE, HookConfig
from runs.engine.json_input import MAX_INT, JSONInputError, parse_json


class HookForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="the URL's last part: /api/hooks/<name>")
    description = forms.CharField(max_length=500, required=False)
    graph = forms.ChoiceField(label="Graph")
    version = forms.IntegerField(
        min_value=1, max_value=MAX_INT, required=False, help_text="empty: the latest version at each delivery"
    )
    input_mode = forms.ChoiceField(label="Run input", choices=Hook.INPUT_CHOICES, initial=Hook.BODY)
    input_mapping = forms.CharField(
        label="Fields by JSON path (JSON: input field -> path)",
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 4, "spellcheck": "false", "class": "mono", "placeholder": '{"service": "$.alert.service"}'}
        ),
    )
    key_source = forms.ChoiceField(label="Idempotency key", choices=Hook.KEY_CHOICES, initial=Hook.KEY_SIGNATURE)
    key_name = forms.CharField(
        label="Key header or JSON path", max_length=200, required=False, help_text="e.g. Idempotency-Key or $.id"
    )
    tolerance_seconds = forms.IntegerField(
        label="Timestamp tolerance (seconds)", min_value=1, max_value=MAX_TOLERANCE, initial=DEFAULT_TOLERANCE
    )

    def __init__(self, *args: Any, graphs: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graph = self.fields["graph"]
        assert isinstance(graph, forms.ChoiceField)
        graph.choices = [(g, g) for g in graphs]

    def clean_input_mapping(self) -> Any:
        text = self.cleaned_data["input_mapping"]
        if not text.strip():
            return {}
        try:
            return parse_json(text, what="The mapping")
        except JSONInputError as exc:
            raise forms.ValidationError(exc.message) from None

    def config(self) -> HookConfig:
        data = self.cleaned_data
        return HookConfig(
            graph_name=data["graph"],
            version=data["version"],
            input_mode=data["input_mode"],
            input_mapping=data["input_mapping"],
            key_source=data["key_source"],
            key_name=data["key_name"],
            tolerance_seconds=data["tolerance_seconds"],
        )
