"""Forms of the replay pages: they parse and check shape; the services decide the rest."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from runs.engine.json_input import MAX_INT, JSONInputError, parse_json


def _json(text: str | bytes, what: str) -> Any:
    """Parse JSON that can be stored and read back (runs.engine.json_input), or a form error saying why."""
    try:
        return parse_json(text, what=what)
    except JSONInputError as exc:
        raise forms.ValidationError(exc.message) from None


class ForkForm(forms.Form):
    step = forms.IntegerField(min_value=0, max_value=MAX_INT, label="Fork after step")
    state = forms.CharField(
        label="State to continue with (JSON)",
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "mono"}),
        strip=False,
    )
    version = forms.TypedChoiceField(label="Graph version", coerce=int)

    def __init__(self, *args: Any, versions: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        version = self.fields["version"]
        assert isinstance(version, forms.TypedChoiceField)
        version.choices = [(v, f"v{v}") for v in versions]

    def clean_state(self) -> Any:
        return _json(self.cleaned_data["state"], "The state")


class ImportForm(forms.Form):
    bundle = forms.FileField(label="Trace bundle (JSON file)", allow_empty_file=False)

    def clean_bundle(self) -> Any:
        upload = self.cleaned_data["bundle"]
        # The API's bundle limit (CMO_MAX_BUNDLE_BYTES) holds here too, checked before the file is read into memory.
        limit = settings.CMO_MAX_BUNDLE_BYTES
        if upload.size is not None and upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size} bytes; bundles of at most {limit} bytes (CMO_MAX_BUNDLE_BYTES) "
                "are accepted."
            )
        return _json(upload.read(), "The file")
