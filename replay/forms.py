"""Forms of the replay pages: they parse and check shape; the services decide the rest."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings

from cmo_site.api_support import MAX_INT, ApiError, check_storable


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str, what: str) -> Any:
    """Parse JSON that the database can store: no NaN or Infinity, no NUL characters, no lone surrogates."""
    try:
        return check_storable(json.loads(text, parse_constant=_refuse_constant), what=what)
    except ValueError as exc:  # json.JSONDecodeError included
        raise forms.ValidationError(f"{what} is not valid JSON: {exc}") from None
    except ApiError as exc:
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
        # The API's limit (CMO_MAX_REQUEST_BYTES) holds here too, checked before the file is read into memory.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if upload.size is not None and upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size} bytes; bundles of at most {limit} bytes (CMO_MAX_REQUEST_BYTES) "
                "are accepted."
            )
        raw = upload.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text: a bundle is a JSON file.") from None
        return _json(text, "The file")
