"""Catch non-deterministic calls while a node runs, not only when someone verifies the run.

A node must take time, randomness and ids from ``ctx.activities`` (recorded, so
a replay sees the same values). While node code runs (``boundary.node_region``)
a profile function (``sys.setprofile``, per thread) watches its calls to the
clock (``time.time``, ``time.time_ns``, ``datetime.datetime.now``/``utcnow``/
``today``, ``datetime.date.today``), to the shared ``random`` generator and
``random.Random()`` without a seed, to ``random.SystemRandom``, ``secrets``,
``os.urandom`` and ``uuid.uuid1``/``uuid4``. Only direct calls from node code
count: the first caller outside ``random``, ``secrets`` and ``uuid`` must not
be the standard library, site-packages or the engine, so ``logging`` stamping
a record or a library measuring a timeout is not reported. A generator the
node seeded itself (``random.Random(42)``) is deterministic and is not.

A profile function, not monkeypatching: ``datetime``'s methods are C methods
of an immutable type and cannot be replaced, and ``from time import time``
binds the original before any patch. The profiler sees each call of a C
function (``c_call``, the callee) with the calling frame, in the thread where
it was installed, so it also works in the helper thread that enforces a
node's timeout. It is removed while an activity performs its effect or the
engine does its own work (``boundary.activity_region``), and outside nodes
it costs nothing. Inside, every Python call and C call of node code goes
through it (CPython 3.11 has no cheaper hook: ``sys.monitoring`` is 3.12+), so
CPU-heavy pure-Python node code runs about six times slower: a graph can say
``determinism="off"``. One exception to "not monkeypatching": seeding from the
OS (``random.Random()``) happens inside C where no profiler sees it, so
``random.Random.seed`` is wrapped once per process; the wrapper only looks
when a detector is installed in the calling thread.

Not caught: calls that library code makes on the node's behalf
(``django.utils.timezone.now()``, ``email.utils.formatdate()``), a subclass of
``datetime`` (``MyDate.now()``), ``time.localtime()`` and friends without an
argument, and set iteration order.

Modes (the graph definition's ``determinism``): ``"warn"`` (the default)
reports each distinct call site once per step execution (the executor stores
them as ``nondeterminism`` run events); ``"strict"`` makes the first such call
raise :class:`NondeterministicCall` and the step fails with it, not retried,
even if the node swallows the exception; ``"off"`` watches nothing.
A profiler already installed in the thread (cProfile) wins: detection is off
there while it runs. Threads that node code starts itself are not watched.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import random
import secrets
import site
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from runs.engine.errors import EngineError

WARN = "warn"
STRICT = "strict"
OFF = "off"
MODES = (WARN, STRICT, OFF)

EVENT_KIND = "nondeterminism"

_CLOCK = "use ctx.activities.now(), which is recorded and replays the same"
_CLOCK_SECONDS = (
    "use ctx.activities.now().timestamp(), which is recorded and replays the same "
    "(to time something that never reaches the state, time.monotonic() is not reported)"
)
_DATE = "use ctx.activities.now().date(), which is recorded and replays the same"
_RANDOM = (
    "use ctx.activities.rand() or ctx.activities.randint(a, b), drawn from the run's seed and recorded "
    "(or a random.Random(seed) seeded with one of them)"
)
_UNSEEDED = "give it a seed, e.g. random.Random(ctx.activities.randint(0, 2**32)), or use ctx.activities.rand()"
_ENTROPY = (
    "use ctx.activities.uuid4(), generated once and recorded (for a number, ctx.activities.randint(a, b); "
    "for a credential, ctx.secret(name))"
)
_UUID = "use ctx.activities.uuid4(), which is generated once, recorded and replays the same"


class NondeterministicCall(EngineError):
    """A node of a graph in strict determinism mode called the clock or a random source directly."""


@dataclass(frozen=True)
class Finding:
    """One call site of node code that reads the clock or a random source."""

    node: str
    call: str  # what the node called, e.g. "time.time()"
    advice: str
    module: str
    function: str
    line: int

    @property
    def message(self) -> str:
        return (
            f"node {self.node!r} called {self.call} (in {self.module}.{self.function}, line {self.line}): {self.advice}"
        )

    def as_detail(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "call": self.call,
            "advice": self.advice,
            "module": self.module,
            "function": self.function,
            "line": self.line,
        }


# The C functions that read the clock or the operating system's entropy, or draw from the
# module-level generator that every thread of the worker shares. Builtin methods compare and
# hash by (bound object, C function), so ``datetime.datetime.now`` found at call time equals
# this one, and a node's own ``random.Random(42).random`` does not equal ``random.random``.
_TARGETS: dict[Any, tuple[str, str]] = {
    time.time: ("time.time()", _CLOCK_SECONDS),
    time.time_ns: ("time.time_ns()", _CLOCK_SECONDS),
    _dt.datetime.now: ("datetime.datetime.now()", _CLOCK),
    _dt.datetime.utcnow: ("datetime.datetime.utcnow()", _CLOCK),
    _dt.datetime.today: ("datetime.datetime.today()", _CLOCK),
    _dt.date.today: ("datetime.date.today()", _DATE),
    random._inst.random: ("random.random()", _RANDOM),  # type: ignore[attr-defined]
    random._inst.getrandbits: ("random.getrandbits()", _RANDOM),  # type: ignore[attr-defined]
    # random.seed(...): reseeding the generator that every run of the worker draws from
    super(random.Random, random._inst).seed: ("random.seed()", _RANDOM),  # type: ignore[attr-defined]
    os.urandom: ("os.urandom()", _ENTROPY),
}
if hasattr(os, "getrandom"):
    _TARGETS[os.getrandom] = ("os.getrandom()", _ENTROPY)
_uuid_time = getattr(uuid, "_generate_time_safe", None)  # uuid1's C helper, where libuuid is present
if _uuid_time is not None:
    _TARGETS[_uuid_time] = ("uuid.uuid1()", _UUID)

# Stdlib modules whose functions are what the node called: the report names the outermost of
# their frames (``uuid.uuid4()``, not the ``os.urandom`` it calls), and the caller is above it.
_API_MODULES = {
    random.Random.seed.__code__.co_filename: "random",
    secrets.token_bytes.__code__.co_filename: "secrets",
    uuid.uuid4.__code__.co_filename: "uuid",
}
_SYSRAND = secrets._sysrand  # type: ignore[attr-defined]


def _library_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(paths[key])
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # an old virtualenv's site module
        pass
    if site.ENABLE_USER_SITE:
        roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(os.path.abspath(__file__)))  # runs/engine
    expanded = roots | {os.path.realpath(r) for r in roots}
    return tuple(os.path.join(r, "") for r in expanded)


_ROOTS = _library_roots()
_PROJECT_FILE: dict[str, bool] = {}  # co_filename -> neither the standard library, site-packages nor the engine


def _is_project(filename: str) -> bool:
    known = _PROJECT_FILE.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = not filename.startswith("<frozen")  # frozen importlib and friends are the stdlib
        else:
            known = not (filename.startswith(_ROOTS) or os.path.realpath(filename).startswith(_ROOTS))
        if len(_PROJECT_FILE) > 10_000:
            _PROJECT_FILE.clear()
        _PROJECT_FILE[filename] = known
    return known


def code_file(fn: Callable[..., Any]) -> str:
    """The file of a node function's code: always node code, even in an installed package."""
    code = getattr(fn, "__code__", None)
    return str(code.co_filename) if code is not None else ""


class Detector:
    """The watch over one execution of one node; ``findings`` in order, one per call site."""

    def __init__(self, node: str, *, mode: str = WARN, node_file: str = ""):
        self.node = node
        self.mode = mode if mode in MODES else WARN
        self.node_file = node_file
        self.findings: list[Finding] = []
        self.failure: NondeterministicCall | None = None
        self._sites: set[tuple[Any, int, str]] = set()
        self.profile = self._make_profile()

    def _make_profile(self) -> Callable[[FrameType, str, Any], None]:
        targets, saw = _TARGETS, self._saw

        # Called for every call and return while node code runs: one compare and one dict lookup.
        # Never read frame.f_code here: it raises an audit event, and the boundary's audit hook
        # would then run for every call.
        def profile(frame: FrameType, event: str, arg: Any) -> None:
            if event == "c_call":
                target = targets.get(arg)
                if target is not None:
                    saw(frame, target)

        profile.cmo_detector = self  # type: ignore[attr-defined]
        return profile

    def _saw(self, frame: FrameType, target: tuple[str, str]) -> None:
        finding = self._finding(frame, target)
        if finding is None:
            return
        self.findings.append(finding)
        if self.mode == STRICT:
            # Remembered, so the step fails even if the node swallows it; CPython removes a
            # profiler that raises, which is fine: the step is lost anyway.
            error = NondeterministicCall(finding.message)
            self.failure = self.failure or error
            raise error

    def _finding(self, frame: FrameType, target: tuple[str, str]) -> Finding | None:
        try:
            caller: FrameType | None = frame
            api: FrameType | None = None
            api_module = ""
            while caller is not None and caller.f_code.co_filename in _API_MODULES:
                api, api_module = caller, _API_MODULES[caller.f_code.co_filename]
                caller = caller.f_back
            if caller is None:
                return None
            filename = caller.f_code.co_filename
            if filename != self.node_file and not _is_project(filename):
                return None
            call, advice = target
            if api is not None:
                call, advice = _api_call(api, api_module, call, advice)
            site_key = (caller.f_code, caller.f_lineno, call)
            if site_key in self._sites:
                return None
            self._sites.add(site_key)
            return Finding(
                node=self.node,
                call=call,
                advice=advice,
                module=str(caller.f_globals.get("__name__", "?")),
                function=caller.f_code.co_name,
                line=caller.f_lineno or 0,
            )
        except Exception:  # noqa: BLE001 - the watch must never break the node it watches
            return None


def _api_call(api: FrameType, module: str, call: str, advice: str) -> tuple[str, str]:
    """What the node called when the target ran inside ``random``, ``secrets`` or ``uuid``."""
    name = api.f_code.co_name
    if module == "uuid":
        return f"uuid.{name}()", _UUID
    if module == "secrets":
        return f"secrets.{name}()", _ENTROPY
    owner = api.f_locals.get("self")
    if owner is _SYSRAND:
        return f"secrets.{name}()", _ENTROPY
    if isinstance(owner, random.SystemRandom):
        return f"random.SystemRandom().{name}()", _ENTROPY
    if name == "__init__":  # random.Random() without a seed
        cls = type(owner)
        return (f"random.{cls.__qualname__}()" if cls.__module__ == "random" else f"{cls.__qualname__}()"), advice
    return f"random.{name}()", (_RANDOM if name == "seed" else advice)  # random.seed(): the shared generator


def _current() -> Detector | None:
    """The detector installed in this thread, if any (None inside an activity)."""
    return getattr(sys.getprofile(), "cmo_detector", None)


_original_seed = random.Random.seed


def _seed(self: random.Random, a: Any = None, version: int = 2) -> None:
    # Seeding from the OS happens inside C, where no profiler sees it; a node's random.Random()
    # or random.seed() passes here. Process-wide, but it only looks when a detector is installed.
    if a is None:
        detector = _current()
        if detector is not None:
            detector._saw(sys._getframe(1), ("random.Random.seed()", _UNSEEDED))
    _original_seed(self, a, version)


functools.update_wrapper(_seed, _original_seed)
_installed = False


def install() -> None:
    """Watch ``random.Random.seed`` (once per process; the boundary calls it under its lock)."""
    global _installed
    if not _installed:
        random.Random.seed = _seed  # type: ignore[method-assign]
        _installed = True


UNTOUCHED = object()


def previous_profile(detector: Detector) -> Any:
    """This thread's profile function, to restore after ``sys.setprofile(detector.profile)``;
    UNTOUCHED when the detector must not be installed (mode off, or someone else's profiler,
    such as cProfile, is running: theirs wins)."""
    if detector.mode == OFF:
        return UNTOUCHED
    previous = sys.getprofile()
    if previous is not None and getattr(previous, "cmo_detector", None) is None:
        return UNTOUCHED
    return previous


def pause() -> Any:
    """Remove this thread's detector, if one is installed; pass the result to :func:`resume`."""
    current = sys.getprofile()
    if current is None or getattr(current, "cmo_detector", None) is None:
        return None
    sys.setprofile(None)
    return current


def resume(paused: Any) -> None:
    if paused is not None:
        sys.setprofile(paused)


def mode_of(definition: dict[str, Any]) -> str:
    """A graph definition's determinism mode (absent: warn)."""
    mode = definition.get("determinism", WARN)
    return mode if mode in MODES else WARN
