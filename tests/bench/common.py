"""Bench set-up: a fresh PostgreSQL database, Django on it, and figure printing.

Benchmarks print figures (median, p95, ratios against a baseline measured in
the same run); they assert nothing about time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
from collections.abc import Sequence
from urllib.parse import urlparse, urlunparse

import psycopg

BENCH_DB = os.environ.get("CMO_BENCH_DB", "cmo_bench")


def setup_database() -> str:
    """Drop and create the bench database, point Django at it, migrate. Returns its URL."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cmo")
    parsed = urlparse(base)
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    url = urlunparse(parsed._replace(path=f"/{BENCH_DB}"))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmo_site.settings")
    os.environ.setdefault("CMO_GRAPH_MODULES", "runs.demo,tests.graphs")
    os.environ.setdefault("CMO_LOG_LEVEL", "WARNING")
    # Production settings: DEBUG would wrap every cursor to record and time its queries.
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def start_event_loop() -> asyncio.AbstractEventLoop:
    """A loop in a thread for channel-layer sends, as the worker command has."""
    from cmo_site.shared.live import set_main_loop

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    set_main_loop(loop)
    return loop


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def describe(values: Sequence[float], unit: str = "ms") -> str:
    return f"median {statistics.median(values):.3f} {unit}, p95 {pct(values, 95):.3f} {unit} (n={len(values)})"


def header(title: str) -> None:
    print(f"\n== {title}")
