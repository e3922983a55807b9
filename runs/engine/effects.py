"""The real effects behind the activities. Only :mod:`runs.engine.context` calls these,
always inside ``activity_region`` and always recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

import httpx

from runs.engine.errors import ActivityError

if TYPE_CHECKING:
    from runs.engine.context import NodeContext

_http_client: httpx.Client | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _client() -> httpx.Client:
    global _http_client
    if _http_client is None:
        _http_client = httpx.Client(follow_redirects=False, trust_env=False)
    return _http_client


def http_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None,
    json: Any,
    params: dict[str, Any] | None,
    timeout: float,
    idempotency_key: str,
) -> dict[str, Any]:
    all_headers = {"Idempotency-Key": idempotency_key, **(headers or {})}
    resp = _client().request(method.upper(), url, headers=all_headers, json=json, params=params, timeout=timeout)
    content_type = resp.headers.get("content-type", "")
    body: Any
    if "json" in content_type:
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
    else:
        body = resp.text
    return {"status": resp.status_code, "headers": dict(resp.headers), "body": body}


def mcp_call(server: str, tool: str, arguments: dict[str, Any]) -> Any:
    from runs.engine.mcp_client import call_tool

    return call_tool(server, tool, arguments)


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
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    path = artifact_path(name)
    saved = default_storage.save(path, ContentFile(data))
    return {"name": name, "path": saved, "sha256": sha256_bytes(data), "size": len(data)}


def artifact_read(name: str) -> str:
    from django.core.files.storage import default_storage

    path = artifact_path(name, activity="read_artifact")
    if not default_storage.exists(path):
        raise ActivityError("read_artifact", f"artifact {name!r} does not exist")
    with default_storage.open(path, "rb") as fh:
        return str(fh.read().decode())


def db_query(sql: str, params: list[Any], database: str) -> dict[str, Any]:
    """Run exactly one statement in a read-only transaction: writes fail in the database itself.

    On PostgreSQL the statement goes through psycopg's extended protocol
    (``binary=True``), which refuses several statements in one string, so
    ``COMMIT; UPDATE ...`` cannot leave the read-only transaction. SQLite
    refuses several statements per call by itself.
    """
    from django.db import connections, transaction

    conn = connections[database]
    with transaction.atomic(using=database):
        if conn.vendor == "postgresql":
            import psycopg

            conn.ensure_connection()
            with psycopg.Cursor(conn.connection) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sql, params or None, binary=True)
                columns = [c.name for c in cur.description or []]
                rows = [list(r) for r in cur.fetchall()] if cur.description else []
        else:
            with conn.cursor() as cur:
                cur.execute("PRAGMA query_only = ON")
                try:
                    cur.execute(sql, params)
                    columns = [c[0] for c in cur.description or []]
                    rows = [list(r) for r in cur.fetchall()] if cur.description else []
                finally:
                    cur.execute("PRAGMA query_only = OFF")
    return {"columns": columns, "rows": json.loads(json.dumps(rows, default=str))}


def a2a_invoke(ctx: NodeContext, specialist: str, task: str, payload: dict[str, Any], seq: int) -> Any:
    from runs.engine.specialists import invoke

    return invoke(ctx, specialist, task, payload, seq)
