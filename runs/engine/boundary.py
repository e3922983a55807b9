"""Boundary enforcement: I/O inside a node must go through ``ctx.activities``.

A process-wide audit hook (``sys.addaudithook``; it cannot be removed, so it
is installed once and does nothing outside a node) checks a ContextVar that
is set while node code runs and cleared while an activity does its effect.
Sockets, subprocesses and file writes in the marked region raise
BoundaryViolation, and the guard remembers it so the step fails even if the
node swallows the exception. Reads are allowed (imports must keep working).

The same two regions drive the determinism detector (:mod:`runs.engine.determinism`):
it watches node code inside ``node_region`` and is paused inside
``activity_region``, where the effect and the engine's own work run.
"""

from __future__ import annotations

import os
import sys
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from runs.engine import determinism
from runs.engine.determinism import WARN, Detector
from runs.engine.errors import BoundaryViolation

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass
class NodeGuard:
    """The watch over one execution of one node: its boundary violations and determinism findings.

    ``determinism`` is the graph's mode (:data:`determinism.MODES`); ``node_file`` the node
    function's file, which always counts as node code (see :func:`determinism.code_file`).
    """

    node: str
    determinism: str = WARN
    node_file: str = ""
    violations: list[str] = field(default_factory=list)
    detector: Detector = field(init=False)

    def __post_init__(self) -> None:
        self.detector = Detector(self.node, mode=self.determinism, node_file=self.node_file)

    def failure(self) -> BaseException | None:
        """What the step must fail with even if the node swallowed it: a violation, then a strict finding."""
        if self.violations:
            return BoundaryViolation(self.violations[0])
        return self.detector.failure


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
    if _installed:
        return
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            determinism.install()
            _installed = True


class _NodeRegion:
    """``with node_region(guard):`` around node code.

    A class rather than a generator, and the detector installed last on the way in and
    removed first on the way out: the detector sees every call in between, so the region's
    own plumbing costs it three events instead of nine.
    """

    __slots__ = ("_node_guard", "_previous", "_token")

    def __init__(self, guard: NodeGuard):
        self._node_guard = guard

    def __enter__(self) -> NodeGuard:
        install()
        guard = self._node_guard
        self._token = _guard.set(guard)
        self._previous = determinism.previous_profile(guard.detector)
        if self._previous is not determinism.UNTOUCHED:
            sys.setprofile(guard.detector.profile)
        return guard

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not determinism.UNTOUCHED:
            sys.setprofile(self._previous)
        _guard.reset(self._token)


def node_region(guard: NodeGuard) -> _NodeRegion:
    return _NodeRegion(guard)


class _ActivityRegion:
    __slots__ = ("_paused", "_token")

    def __enter__(self) -> None:
        self._paused = determinism.pause()
        self._token = _guard.set(None)

    def __exit__(self, *exc_info: object) -> None:
        _guard.reset(self._token)
        determinism.resume(self._paused)


def activity_region() -> _ActivityRegion:
    """Lift the guard and pause the determinism detector while an activity performs its
    recorded effect or the engine does its own work."""
    return _ActivityRegion()
