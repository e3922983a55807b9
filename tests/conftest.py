"""Shared fixtures. Services are real: under CI=true a missing one fails the run instead of skipping."""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings

import tests.graphs  # registers the test nodes and graphs
import tests.graphs_composition
import tests.graphs_concurrency
import tests.graphs_holes  # registers the graphs of the review's regression tests
import tests.graphs_llm
import tests.graphs_replay  # noqa: F401 - registers the replay test graphs

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str) -> None:
    """Fail under CI, skip on a developer machine without the service."""
    message = f"{what} is not available"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_db(transactional_db: None) -> None:
    """A committed-data PostgreSQL database that other processes can see."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        service_missing("PostgreSQL (set DATABASE_URL=postgres://...)")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url or not _reachable(url, 6379):
        service_missing("Redis (set REDIS_URL=redis://...)")
    return url


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Node registrations made inside a test are removed after it."""
    from runs.engine.graph import GRAPHS, NODES

    nodes = dict(NODES._nodes)
    graphs = dict(GRAPHS._graphs)
    yield
    NODES._nodes.clear()
    NODES._nodes.update(nodes)
    GRAPHS._graphs.clear()
    GRAPHS._graphs.update(graphs)


IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _fresh_channel_layer(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test gets its own channel layer instance; tests that are not integration tests get the
    in-memory layer even when REDIS_URL is set.

    A channels-redis layer binds its receive lock to the event loop of its first receive, and a
    cancelled blocking receive (BZPOPMIN) can swallow its cancellation: the background thread
    that async_to_sync ran the loop in then never finishes closing it, and the test process
    hangs at exit after every test passed. Consumers are unit-tested on the in-memory layer;
    the Redis layer is exercised by the integration tests, across real processes.
    """
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
    from django.test import override_settings

    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    if request.node.get_closest_marker("integration") is None:
        with override_settings(CHANNEL_LAYERS=IN_MEMORY_LAYER):
            yield
    else:
        yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture(scope="session", autouse=True)
def _end_stray_database_sessions(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Worker processes killed by tests may leave sessions behind; end them so the test database can be dropped."""
    yield
    from django.db import OperationalError, connection

    from tests.integration.processes import SPAWNED

    with django_db_blocker.unblock():
        if SPAWNED and connection.vendor == "postgresql":
            try:
                with connection.cursor() as cur:
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            except OperationalError:
                pass  # best effort: a run of only e2e tests (their server uses SQLite) may never create it


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING, with its filters) writes, as JSON lines."""
    from cmo_site.shared.log_format import JsonFormatter, RedactionFilter

    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactionFilter) for f in h.filters))
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    old_stream, old_formatter = handler.setStream(buffer), handler.formatter
    handler.setFormatter(JsonFormatter())
    yield buffer
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)
