"""A JSONField whose rows can always be read back, whatever an older version stored."""

from __future__ import annotations

from typing import Any

from django.db import models

from runs.engine.hashing import MAX_JSON_DEPTH, depth_over_limit, sha256_hex

UNREADABLE_KEY = "$unreadable"


class ReadableJSONField(models.JSONField):
    """Values nested deeper than the engine accepts (``MAX_JSON_DEPTH``) come back as a marker.

    Writes are limited at every door, but rows from before the limit (or written by hand) would
    make every recursive reader (deepcopy, diffs, redaction, the API's serializer) fail. The check
    runs on the text the database returns, at C speed, so the usual read pays two counts.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, str):
            data = value.encode()
            depth = depth_over_limit(data)
            if depth:
                return {
                    UNREADABLE_KEY: (
                        f"this value is nested {depth} levels deep and was stored before CMO refused more than "
                        f"{MAX_JSON_DEPTH}; it is not shown"
                    ),
                    "sha256": sha256_hex(data),
                }
        return super().from_db_value(value, expression, connection)
