"""Blobs: recorded payloads too large for a row, kept once in storage (``blobs/<sha256>.json``), content-addressed.

A row holds ``{"$blob": sha256, "size": bytes}`` instead of the value; only a SHA-256 ever names a
blob, so a reference can never reach another path in storage.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from runs.engine.errors import EngineError
from runs.engine.hashing import sha256_hex

BLOB_KEY = "$blob"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobUnavailable(EngineError):
    """A recorded payload's blob is missing from storage (deleted, or the storage was not restored)."""

    status, code = 409, "blob_missing"


def is_blob_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {BLOB_KEY, "size"}


def is_blob_digest(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGEST.match(value))


def blob_store(value: Any, *, written: list[str] | None = None) -> Any:
    """Keep payloads over CMO_BLOB_THRESHOLD in storage; the row holds a reference.

    A small value that merely looks like a reference (an HTTP server can answer anything) is
    stored as a blob too, so every reference in a row is one this function made. The path of a
    blob it creates is appended to ``written`` (a caller that may roll back removes them).
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) <= settings.CMO_BLOB_THRESHOLD and not is_blob_ref(value):
        return value
    digest = sha256_hex(text)
    path = f"blobs/{digest}.json"
    if not default_storage.exists(path):
        saved = default_storage.save(path, ContentFile(text.encode()))
        if written is not None:
            written.append(saved)
    return {BLOB_KEY: digest, "size": len(text)}


def blob_load(value: Any) -> Any:
    """The value a row's reference stands for (a non-reference is returned as it is).

    Only a SHA-256 names a blob, so a reference can never reach another path in storage;
    BlobUnavailable when the blob is gone.
    """
    if not is_blob_ref(value):
        return value
    digest = value[BLOB_KEY]
    if not is_blob_digest(digest):
        raise BlobUnavailable(f"a recorded payload refers to {str(digest)[:80]!r}, which is not a blob digest")
    try:
        with default_storage.open(f"blobs/{digest}.json", "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        raise BlobUnavailable(f"the recorded payload's blob {digest} is missing from storage") from None
