"""``ctx.activities.db_query(sql, params)``: one read-only SQL statement, recorded."""

from __future__ import annotations

import json
from typing import Any

from django.db import connections, transaction

from runs.engine.plugins import ActivityKind, Call


def db_query(sql: str, params: list[Any], database: str) -> dict[str, Any]:
    """Run exactly one statement in a read-only transaction: writes fail in the database itself.

    On PostgreSQL the statement goes through psycopg's extended protocol
    (``binary=True``), which refuses several statements in one string, so
    ``COMMIT; UPDATE ...`` cannot leave the read-only transaction. SQLite
    refuses several statements per call by itself.
    """
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


def _build(ctx: Any, seq: int, sql: str, params: list[Any] | None = None, *, database: str = "default") -> Call:
    request = {"sql": sql, "params": params or [], "database": database}
    return Call(request=request, effect=lambda: db_query(sql, params or [], database))


KINDS = [ActivityKind(name="db_query", method="db_query", build=_build, answer=dict)]
