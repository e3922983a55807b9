"""Boundary enforcement: I/O inside a node must go through ``ctx.activities``.

A process-wide audit hook (``sys.addaudithook``; it cannot be removed, so it
is installed once and does nothing outside a node) checks a ContextVar that
is set while node code runs and cleared while an activity does its effect.
Sockets, subprocesses and file writes in the marked region raise
BoundaryViolation, and the guard remembers it so the step fails even if the
node swallows the exception. Reads are allowed (imports must keep working).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from runs.engine.errors import BoundaryViolation

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass
class NodeGuard:
    node: str
    violations: list[str] = field(default_factory=list)


_guard: ContextVar[NodeGuard | None] = ContextVar("cmo_node_guard", default=None)
_installed = False
_install_lock = threading.Lock()

_ADVICE = {
    "socket": "use ctx.activities.http(...), call_mcp(...) or send_a2a(...)",
    "subprocess": "run it behind an activity (call_mcp to a tool server, or a specialist)",
    "file": "use ctx.activities.write_artifact(...)",
}


def _violation(guard: NodeGuard, what: str, advice: str) -> None:
    message = f"node {guard.node!r} {what} outside the activity boundary; {advice}"
    guard.violations.append(message)
    raise BoundaryViolation(message)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    guard = _guard.get()
    if guard is None:
        return
    if event == "socket.connect":
        _violation(guard, f"opened a network connection to {args[1]!r}", _ADVICE["socket"])
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn", "os.fork"):
        target = args[0] if args else ""
        _violation(guard, f"started a process ({event} {target!r:.80})", _ADVICE["subprocess"])
    elif event == "open":
        path, mode, flags = [*args, None, None, None][:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes:
            _violation(guard, f"opened {path!r} for writing", _ADVICE["file"])


def install() -> None:
    """Install the audit hook once per process."""
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextmanager
def node_region(guard: NodeGuard) -> Iterator[NodeGuard]:
    install()
    token = _guard.set(guard)
    try:
        yield guard
    finally:
        _guard.reset(token)


@contextmanager
def activity_region() -> Iterator[None]:
    """Lift the guard while an activity performs its recorded effect."""
    token = _guard.set(None)
    try:
        yield
    finally:
        _guard.reset(token)
