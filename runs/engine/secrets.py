"""Secrets a node may use but no checkpoint, record, log line or page may hold.

A node reads a secret with ``ctx.secret("openai")``. Values come from the
worker's environment, never from the database: ``CMO_SECRET_OPENAI`` or a file
``openai`` in ``CMO_SECRETS_DIR`` (the Docker/Kubernetes secrets layout). The
read is not an activity: recording it would store the value, and a replay on
another machine uses that machine's value.

Because the engine knows every configured value, it can enforce "never in a
checkpoint" by value rather than by key name: a step whose state or output
contains one fails with :class:`SecretInState` naming the path, a run input
holding one is refused, and the redaction of records and logs masks the
values wherever they appear. Values shorter than :data:`MIN_SCANNED_LENGTH`
are served but not scanned (a 3-character value would match ordinary text).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runs.engine.errors import EngineError

ENV_PREFIX = "CMO_SECRET_"
MIN_SCANNED_LENGTH = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SecretMissing(EngineError):
    """A node asked for a secret the worker has not been given (or for a name that cannot be one)."""

    def __init__(self, message: str, *, name: str = "", hint: str = ""):
        self.name = name
        self.hint = hint
        super().__init__(message)


class SecretInState(EngineError):
    """A secret's value reached a state, output or run input, which would store it."""


def canonical_name(name: str) -> str:
    """``OpenAI-Key`` / ``openai_key`` / ``OPENAI.KEY`` are one secret: ``openai_key``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SecretMissing(f"{name!r} is not a secret name (letters, digits, '_', '.', '-'; up to 128)")
    return re.sub(r"[.-]", "_", name).lower()


@dataclass(frozen=True)
class _Loaded:
    values: dict[str, str]
    # (name, value as it appears inside a JSON string) for the values long enough to scan for.
    scanned: tuple[tuple[str, str], ...]
    raw: tuple[str, ...]  # the same values as they are, longest first (so redaction masks a whole value)
    unreadable: dict[str, str]  # name -> why its file could not be read (said when a node asks for it)


_lock = threading.Lock()
_loaded: _Loaded | None = None


def _load() -> _Loaded:
    """Never raises and never logs: redaction (so every log line) reads this under the lock."""
    values: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    directory = os.environ.get("CMO_SECRETS_DIR", "")
    if directory and Path(directory).is_dir():
        for path in sorted(Path(directory).iterdir()):
            if path.is_file() and _NAME.match(path.name):
                try:
                    values[canonical_name(path.name)] = path.read_text(encoding="utf-8").rstrip("\r\n")
                except (OSError, UnicodeDecodeError) as exc:
                    unreadable[canonical_name(path.name)] = f"{type(exc).__name__}: {exc}"
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX) and _NAME.match(key[len(ENV_PREFIX) :]):
            values[canonical_name(key[len(ENV_PREFIX) :])] = value  # the environment wins over the directory
    scanned = tuple(
        (name, json.dumps(value, ensure_ascii=False)[1:-1])
        for name, value in sorted(values.items())
        if len(value) >= MIN_SCANNED_LENGTH
    )
    raw = tuple(sorted((v for v in values.values() if len(v) >= MIN_SCANNED_LENGTH), key=len, reverse=True))
    return _Loaded(values=values, scanned=scanned, raw=raw, unreadable=unreadable)


def _current() -> _Loaded:
    global _loaded
    loaded = _loaded
    if loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
            loaded = _loaded
    return loaded


def reload() -> None:
    """Read the environment and the secrets directory again (tests; a worker reads them once, at first use)."""
    global _loaded
    with _lock:
        _loaded = _load()


def secret_get(name: str) -> str:
    """The value of secret ``name``; SecretMissing says how to provide it."""
    key = canonical_name(name)
    loaded = _current()
    value = loaded.values.get(key)
    if value is None and key in loaded.unreadable:
        hint = f"its file in CMO_SECRETS_DIR could not be read ({loaded.unreadable[key]})"
        raise SecretMissing(f"secret {name!r} is not set on this worker: {hint}", name=name, hint=hint)
    if value is None:
        hint = f"set {ENV_PREFIX}{key.upper()} or put a file {key!r} in CMO_SECRETS_DIR"
        raise SecretMissing(f"secret {name!r} is not set on this worker: {hint}", name=name, hint=hint)
    return value


def secret_names() -> list[str]:
    """The configured secret names (never their values), for health pages and tests."""
    return sorted(_current().values)


def scanned_values() -> tuple[str, ...]:
    """The raw values redaction masks in text (long enough to scan for)."""
    return _current().raw


def secret_in_json(text: str) -> str | None:
    """The name of a configured secret whose value occurs in canonical JSON ``text``, if any."""
    for name, needle in _current().scanned:
        if needle in text:
            return name
    return None


def secret_path(value: Any, name: str, path: str = "$") -> str | None:
    """Where in ``value`` (keys included) secret ``name``'s value occurs, as a JSON path."""
    needle = _current().values[name]
    if isinstance(value, str):
        return path if needle in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if needle in key:
                return f"{path} (a key)"
            found = secret_path(item, name, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = secret_path(item, name, f"{path}[{i}]")
            if found:
                return found
    return None


def refuse_secrets(value: Any, text: str, *, what: str) -> None:
    """Raise SecretInState if canonical JSON ``text`` (of ``value``) holds a configured secret."""
    name = secret_in_json(text)
    if name is None:
        return
    where = secret_path(value, name) or "$"
    raise SecretInState(
        f"{what} holds the value of secret {name!r} at {where}; secrets are never stored in checkpoints: "
        f"call ctx.secret({name!r}) where the value is needed instead of keeping it"
    )
