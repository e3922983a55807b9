"""Artifacts: ``ctx.activities.write_artifact(name, content)`` and ``read_artifact(name)``, in the default storage
(filesystem or S3, django-storages) under ``artifacts/``, never beside the recorded blobs."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from runs.engine.errors import ActivityError
from runs.engine.plugins import ActivityKind, Call


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ARTIFACTS_DIR = "artifacts"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
ARTIFACT_NAME_RULE = (
    "names are up to 255 characters of path segments separated by '/', each of letters, digits, "
    "'.', '_' and '-' and not starting with '.' (so no '..', no absolute paths)"
)


class ArtifactNameError(ActivityError):
    """An artifact name that could leave the artifacts namespace; refused before any storage call."""


def artifact_name_problem(name: Any) -> str:
    """Why ``name`` is not an artifact name, or "" if it is one."""
    if not isinstance(name, str):
        return f"an artifact name is a string, not {type(name).__name__}"
    if not name or len(name) > 255 or not all(_SEGMENT.match(seg) for seg in name.split("/")):
        return f"artifact name {name[:300]!r} is not allowed: {ARTIFACT_NAME_RULE}"
    return ""


def artifact_path(name: Any, *, activity: str = "write_artifact") -> str:
    """The storage path of artifact ``name`` (under artifacts/, never beside blobs); ArtifactNameError if unsafe."""
    problem = artifact_name_problem(name)
    if problem:
        raise ArtifactNameError(activity, problem, kind="refused")
    return f"{ARTIFACTS_DIR}/{name}"


def artifact_write(name: str, data: bytes) -> dict[str, Any]:
    """Store (or replace) the artifact; the storage overwrites in place, so no moment leaves it missing."""
    path = artifact_path(name)
    saved = default_storage.save(path, ContentFile(data))
    return {"name": name, "path": saved, "sha256": sha256_bytes(data), "size": len(data)}


def artifact_read(name: str) -> str:
    path = artifact_path(name, activity="read_artifact")
    if not default_storage.exists(path):
        raise ActivityError("read_artifact", f"artifact {name!r} does not exist")
    with default_storage.open(path, "rb") as fh:
        return str(fh.read().decode())


def _write(ctx: Any, seq: int, name: str, content: str | bytes) -> Call:
    """Store ``content`` under ``name`` in the artifact storage; the node gets {name, path, sha256, size}."""
    data = content.encode() if isinstance(content, str) else bytes(content)
    request = {"name": name, "sha256": sha256_bytes(data), "size": len(data)}
    return Call(request=request, effect=lambda: artifact_write(name, data), sent_bytes=len(data))


def _read(ctx: Any, seq: int, name: str) -> Call:
    """The artifact's text; large ones are recorded as a blob reference."""
    return Call(request={"name": name}, effect=lambda: artifact_read(name))


KINDS = [
    ActivityKind(name="write_artifact", method="write_artifact", build=_write, answer=dict),
    ActivityKind(name="read_artifact", method="read_artifact", build=_read, answer=str),
]
