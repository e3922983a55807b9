"""Trace bundles: a run as one portable JSON file (schema and hash recipes: replay/schemas/trace_bundle.schema.json).

Export gathers the graph version, the steps (each state in full or as a delta from the state
before it), activities, events and the artifacts the activities name; a large value is stored
once in ``blobs`` and referenced by its hash, so a run with a 9 MB input does not carry it once per
step. The bundle carries the SHA-256 of its own canonical JSON.

Import trusts nothing but what it can check, and checks it all before writing anything: the
schema, the bundle's hash, every blob against its digest, the graph definition (validated as any
definition is, its hash recomputed), the chain of step hashes (each step's input is the state the
previous one left), every output and request hash, the artifacts' names and base64, every date.
The imported run records who imported it and executes (when forked) with the importer's rights;
the exporter's context is kept as history only. Then everything is written in one transaction,
artifacts included (a refused import leaves no file behind). Bundles are also the backup format.

A run exported with its spawned runs (its branches and child runs) nests their bundles under
``spawned``, each checked the same way; they import with their links only as part of that tree.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.activities.artifacts import artifact_name_problem, artifact_path
from runs.activities.llm import usage_of
from runs.engine import delta
from runs.engine import statemachine as sm
from runs.engine.errors import CMOError, GraphValidationError, NotJSONError
from runs.engine.hashing import canonical_json, json_hash, normalize, sha256_hex
from runs.engine.validation import validate_definition
from runs.llm.providers import KIND as LLM_KIND
from runs.models import Activity, Graph, Run, RunEvent, Step
from runs.services.blobs import BLOB_KEY, blob_load, blob_store, is_blob_ref
from runs.services.run_store import SNAPSHOT_EVERY, step_states
from runs.services.runs import actor_name, run_create

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "trace_bundle.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ARTIFACT_ACTIVITIES = ("write_artifact", "read_artifact")
FORMAT = "cmo-trace-bundle"
FORMAT_VERSION = 3
# A bundle with its spawned runs nests them; deeper than this is refused (a child of a child of ... ).
MAX_SPAWN_DEPTH = 8


class BundleError(CMOError, ValueError):
    """A bundle that cannot be imported; the message says why."""

    status, code = 422, "invalid_bundle"


class BundleConflict(BundleError):
    """The bundle's run already exists in this installation."""

    status, code = 409, "already_exists"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


# -- export ------------------------------------------------------------------------------------


class _Packer:
    """Values over the blob threshold go to ``blobs`` once, keyed by their hash; the bundle holds references."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.blobs: dict[str, Any] = {}

    def pack(self, value: Any) -> Any:
        data = canonical_json(value).encode()
        if len(data) <= self.threshold and not is_blob_ref(value):
            return value
        digest = sha256_hex(data)
        self.blobs[digest] = value
        return {BLOB_KEY: digest, "size": len(data)}

    def pack_ops(self, ops: list[delta.Op]) -> list[delta.Op]:
        return [[op[0], op[1], self.pack(op[2])] if len(op) > 2 else list(op) for op in ops]


def bundle_export(*, run: Run, spawned: bool = False) -> dict[str, Any]:
    """The run as a bundle (format_version 3). BlobUnavailable if a recorded payload is missing from storage.

    With ``spawned``, the bundles of the runs it started (its branches and children, and theirs) are
    nested under ``spawned``, so the whole tree imports as one.
    """
    packer = _Packer(settings.CMO_BLOB_THRESHOLD)
    activities = list(Activity.objects.filter(run=run).order_by("step", "seq"))
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "graph": {
            "name": run.graph.name,
            "version": run.graph.version,
            "definition": run.graph.definition,
            "definition_hash": run.graph.definition_hash,
            "node_hashes": run.graph.node_hashes,
        },
        "run": {
            "trace_id": run.trace_id,
            "status": run.status,
            "input": packer.pack(run.input),
            "seed": run.seed,
            "step_index": run.step_index,
            "node": run.node,
            "state": packer.pack(run.state),
            "error": run.error,
            "max_steps": run.max_steps,
            "context": run.context,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "parent_trace_id": run.parent.trace_id if run.parent else None,
            "parent_step": run.parent_step,
            "kind": run.kind,
            "spawned_by_trace_id": run.spawned_by.trace_id if run.spawned_by else None,
            "spawn_step": run.spawn_step,
            "spawn_seq": run.spawn_seq,
            "until_node": run.until_node,
        },
        "steps": _export_steps(run, packer),
        "activities": [_export_activity(a, packer) for a in activities],
        "events": [_export_event(e) for e in RunEvent.objects.filter(run=run).order_by("id")],
        "artifacts": _artifacts(activities),
        "blobs": packer.blobs,
    }
    if spawned:
        rows = Run.objects.filter(spawned_by=run).select_related("graph", "parent", "spawned_by")
        bundle["spawned"] = [bundle_export(run=r, spawned=True) for r in rows.order_by("spawn_step", "spawn_seq")]
    bundle["sha256"] = json_hash(bundle)
    return bundle


def _export_steps(run: Run, packer: _Packer) -> list[dict[str, Any]]:
    """Each step with its state in full or, when much smaller, as a delta from the state before it."""
    states = step_states(run_id=run.pk)
    steps = []
    before = run.input
    for s in Step.objects.filter(run=run).order_by("index"):
        state = states[s.index]
        entry: dict[str, Any] = {
            "index": s.index,
            "node": s.node,
            "attempt": s.attempt,
            "state_hash": s.state_hash,
            "input_hash": s.input_hash,
            "output": packer.pack(s.output),
            "output_hash": s.output_hash,
            "edge": s.edge,
            "started_at": _iso(s.started_at),
            "duration_ms": s.duration_ms,
            "error": s.error,
        }
        ops = delta.encode(before, state, state_size=s.state_size or len(canonical_json(state).encode()))
        if ops is None:
            entry["state"] = packer.pack(state)
        else:
            entry["state_delta"] = packer.pack_ops(ops)
        steps.append(entry)
        before = state
    return steps


def _export_activity(a: Activity, packer: _Packer) -> dict[str, Any]:
    return {
        "step": a.step,
        "seq": a.seq,
        "type": a.type,
        "request": packer.pack(a.request),
        "request_hash": a.request_hash,
        "status": a.status,
        "response": packer.pack(blob_load(a.response)),
        "error": a.error,
        "duration_ms": a.duration_ms,
        "attempt": a.attempt,
    }


def _export_event(e: RunEvent) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "step": e.step,
        "message": e.message,
        "detail": e.detail,
        "actor": e.actor,
        "created_at": _iso(e.created_at),
    }


def _artifacts(activities: list[Activity]) -> dict[str, str]:
    """The artifacts the run's activities name (and that storage still has), as base64."""
    artifacts: dict[str, str] = {}
    for a in activities:
        name = a.request.get("name") if a.type in ARTIFACT_ACTIVITIES and isinstance(a.request, dict) else None
        if not name or name in artifacts or artifact_name_problem(name):
            continue
        path = artifact_path(name)
        if default_storage.exists(path):
            with default_storage.open(path, "rb") as fh:
                artifacts[name] = base64.b64encode(fh.read()).decode()
    return artifacts


# -- checking ------------------------------------------------------------------------------------


class _Checked:
    """What import writes, each part already checked: states reconstructed, references resolved, dates parsed."""

    def __init__(self) -> None:
        self.definition: dict[str, Any] = {}
        self.definition_hash = ""
        self.input: Any = None
        self.state: Any = None
        self.states: list[Any] = []
        self.outputs: list[Any] = []
        self.requests: list[Any] = []
        self.responses: list[Any] = []
        self.dates: dict[str, dt.datetime | None] = {}
        self.artifacts: dict[str, bytes] = {}


def _when(text: str | None, where: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = parse_datetime(text)
    except ValueError as exc:  # well formed but impossible: 2026-02-30
        raise BundleError(f"malformed bundle: {where} {text!r} is not a valid date-time ({exc})") from None
    if value is None:
        raise BundleError(f"malformed bundle: {where} {text!r} is not an ISO 8601 date-time")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class _Unpacker:
    def __init__(self, blobs: dict[str, Any]):
        self.blobs = blobs

    def unpack(self, value: Any, where: str) -> Any:
        if not is_blob_ref(value):
            return value
        digest = value[BLOB_KEY]
        if digest not in self.blobs:
            raise BundleError(f"malformed bundle: {where} refers to blob {str(digest)[:64]!r}, which the bundle lacks")
        return self.blobs[digest]

    def unpack_ops(self, ops: list[Any], where: str) -> list[Any]:
        return [[op[0], op[1], self.unpack(op[2], where)] if len(op) > 2 else op for op in ops]


def _storable(value: Any, where: str) -> tuple[Any, str]:
    """(the value as stored, its hash), or BundleError: a value the engine would not store is not imported."""
    try:
        normal, digest, _ = normalize(value, what=where)
    except NotJSONError as exc:
        raise BundleError(f"malformed bundle: {exc}") from None
    return normal, digest


def bundle_check(bundle: Any) -> _Checked:
    """Everything import needs, checked (see the module docstring); BundleError saying what is wrong."""
    errors = sorted(_VALIDATOR.iter_errors(bundle), key=lambda e: list(e.absolute_path))
    if errors:
        raise BundleError("malformed bundle: " + "; ".join(f"at {e.json_path}: {e.message}" for e in errors[:5]))
    body = {k: v for k, v in bundle.items() if k != "sha256"}
    if json_hash(body) != bundle["sha256"]:
        raise BundleError("tampered bundle: its content does not match its sha256")
    checked = _Checked()
    blobs = bundle.get("blobs", {})
    for digest, value in blobs.items():
        if _storable(value, f"blob {digest[:12]}")[1] != digest:
            raise BundleError(f"tampered bundle: blob {digest} does not hold the value that hashes to it")
    unpacker = _Unpacker(blobs)
    _check_graph(bundle["graph"], checked)
    r = bundle["run"]
    checked.input = _storable(unpacker.unpack(r["input"], "run.input"), "run.input")[0]
    checked.state = _storable(unpacker.unpack(r["state"], "run.state"), "run.state")[0]
    _check_steps(bundle["steps"], r, unpacker, checked)
    _check_activities(bundle["activities"], unpacker, checked)
    checked.dates = {
        "created_at": _when(r["created_at"], "run.created_at"),
        "started_at": _when(r["started_at"], "run.started_at"),
        "finished_at": _when(r["finished_at"], "run.finished_at"),
    }
    _when(bundle["exported_at"], "exported_at")
    for i, s in enumerate(bundle["steps"]):
        checked.dates[f"step {i}"] = _when(s["started_at"], f"steps[{i}].started_at")
    for i, e in enumerate(bundle["events"]):
        _when(e["created_at"], f"events[{i}].created_at")
    for name, content in bundle["artifacts"].items():
        problem = artifact_name_problem(name)
        if problem:
            raise BundleError(f"malformed bundle: artifacts: {problem}")
        try:
            checked.artifacts[name] = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BundleError(f"malformed bundle: artifact {name!r} is not valid base64") from None
    return checked


def _check_graph(g: dict[str, Any], checked: _Checked) -> None:
    try:
        definition = validate_definition(_storable(g["definition"], "graph.definition")[0])
    except GraphValidationError as exc:
        raise BundleError(f"the bundle's graph cannot be stored here: {exc}") from None
    if definition["name"] != g["name"]:
        raise BundleError(f"malformed bundle: graph.name {g['name']!r} is not its definition's {definition['name']!r}")
    unknown = sorted(set(g["node_hashes"]) - {n["name"] for n in definition["nodes"]})
    if unknown:
        raise BundleError(f"malformed bundle: graph.node_hashes names nodes the definition lacks: {unknown}")
    digest = json_hash({"definition": definition, "node_hashes": g["node_hashes"]})
    if digest != g["definition_hash"]:
        raise BundleError(
            "tampered bundle: graph.definition_hash is not the hash of "
            '{"definition": definition, "node_hashes": node_hashes} (recomputed: ' + digest + ")"
        )
    checked.definition, checked.definition_hash = definition, digest


def _check_steps(steps: list[dict[str, Any]], r: dict[str, Any], unpacker: _Unpacker, checked: _Checked) -> None:
    """The chain: each step starts from the state the one before it left (the first from the run's input)."""
    before, before_hash = checked.input, json_hash(checked.input)
    expected_first = (r["parent_step"] + 1) if r["parent_step"] is not None else 0
    for i, s in enumerate(steps):
        where = f"steps[{i}] (index {s['index']})"
        if i == 0 and s["index"] != expected_first:
            raise BundleError(f"malformed bundle: the first step has index {s['index']}, not {expected_first}")
        if i > 0 and s["index"] != steps[i - 1]["index"] + 1:
            raise BundleError(f"malformed bundle: {where} does not follow index {steps[i - 1]['index']}")
        if "state" in s:
            state = unpacker.unpack(s["state"], f"{where}.state")
        elif not all(_is_op(op) for op in s["state_delta"]):
            raise BundleError(f"malformed bundle: {where}'s state_delta has an operation that is not [op, path, value]")
        else:
            try:
                state = delta.apply(before, unpacker.unpack_ops(s["state_delta"], f"{where}.state_delta"))
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                raise BundleError(f"malformed bundle: {where}'s state_delta does not apply: {exc!r}") from None
        state, state_hash = _storable(state, f"{where}.state")
        if s["input_hash"] != before_hash:
            raise BundleError(f"tampered bundle: {where}'s input_hash is not the hash of the state before it")
        if state_hash != s["state_hash"]:
            raise BundleError(f"tampered bundle: {where}'s state does not match its state_hash")
        output, output_hash = _storable(unpacker.unpack(s["output"], f"{where}.output"), f"{where}.output")
        if output_hash != s["output_hash"]:
            raise BundleError(f"tampered bundle: {where}'s output does not match its output_hash")
        checked.states.append(state)
        checked.outputs.append(output)
        before, before_hash = state, state_hash


def _is_op(op: Any) -> bool:
    """["set", path, value], ["append", path, items] or ["del", path], with path a list of object keys."""
    if not isinstance(op, list) or len(op) not in (2, 3) or not isinstance(op[1], list):
        return False
    if not all(isinstance(key, str) for key in op[1]):
        return False
    return (op[0] in ("set", "append") and len(op) == 3) or (op[0] == "del" and len(op) == 2)


def _check_activities(activities: list[dict[str, Any]], unpacker: _Unpacker, checked: _Checked) -> None:
    seen: set[tuple[int, int]] = set()
    for i, a in enumerate(activities):
        where = f"activities[{i}] (step {a['step']}, seq {a['seq']})"
        if (a["step"], a["seq"]) in seen:
            raise BundleError(f"malformed bundle: {where} appears twice")
        seen.add((a["step"], a["seq"]))
        request, request_hash = _storable(unpacker.unpack(a["request"], f"{where}.request"), f"{where}.request")
        if request_hash != a["request_hash"]:
            raise BundleError(f"tampered bundle: {where}'s request does not match its request_hash")
        response, _ = _storable(unpacker.unpack(a["response"], f"{where}.response"), f"{where}.response")
        checked.requests.append(request)
        checked.responses.append(response)


# -- import ------------------------------------------------------------------------------------


def bundle_import(*, bundle: Any, user: AbstractBaseUser | AnonymousUser | None = None, role: str = "") -> Run:
    """Create the bundle's run (same trace id) in this installation, imported by ``user``; BundleError if refused.

    The run's creator is the importer and its role ``role`` (the importer's): the bundle's own
    context is history (``context.original_context``), never authority.
    """
    tree = _check_tree(bundle, parent=None, depth=0)
    traces = [b["run"]["trace_id"] for b, _, _ in tree]
    if len(set(traces)) != len(traces):
        raise BundleError("malformed bundle: a run appears twice in it")
    existing = Run.objects.filter(trace_id__in=traces).values_list("trace_id", flat=True).first()
    if existing is not None:
        raise BundleConflict(f"run {existing} already exists here")
    importer = actor_name(user)
    written: list[str] = []
    try:
        with transaction.atomic():
            imported: dict[str, Run] = {}
            for b, checked, parent_trace in tree:  # parents before what they spawned
                imported[b["run"]["trace_id"]] = _write_rows(
                    b,
                    checked,
                    user=user if importer else None,
                    importer=importer,
                    role=role,
                    written=written,
                    spawned_by=imported.get(parent_trace or ""),
                )
                for name, content in checked.artifacts.items():
                    path = artifact_path(name)
                    if not default_storage.exists(path):
                        written.append(default_storage.save(path, ContentFile(content)))
            run = imported[traces[0]]
    except BaseException:
        for path in written:  # the rows rolled back; so do the files (artifacts and blobs) it added
            default_storage.delete(path)
        raise
    return run


def _check_tree(bundle: Any, *, parent: str | None, depth: int) -> list[tuple[dict[str, Any], _Checked, str | None]]:
    """The bundle and the bundles nested in its ``spawned``, each checked, parents first; BundleError if one fails.

    A nested run must name this run as the one that spawned it, and every run must have ended.
    """
    if depth > MAX_SPAWN_DEPTH:
        raise BundleError(f"malformed bundle: spawned runs nest deeper than {MAX_SPAWN_DEPTH}")
    checked = bundle_check(bundle)
    r = bundle["run"]
    if r["status"] not in sm.TERMINAL:
        raise BundleError(f"run {r['trace_id']} is {r['status']}: only ended runs are imported (nothing re-runs)")
    if parent is not None and r.get("spawned_by_trace_id") != parent:
        raise BundleError(
            f"malformed bundle: run {r['trace_id']} is listed under {parent} but names "
            f"{r.get('spawned_by_trace_id')} as the run that spawned it"
        )
    places = [(n["run"].get("spawn_step"), n["run"].get("spawn_seq")) for n in bundle.get("spawned", [])]
    if len(set(places)) != len(places):
        raise BundleError(f"malformed bundle: two runs spawned by {r['trace_id']} claim the same place")
    if parent is not None and r.get("kind") not in (Run.KIND_CHILD, Run.KIND_BRANCH):
        raise BundleError(f"malformed bundle: run {r['trace_id']} is listed as spawned but is not a child or branch")
    tree = [(bundle, checked, parent)]
    for nested in bundle.get("spawned", []):
        tree.extend(_check_tree(nested, parent=r["trace_id"], depth=depth + 1))
    return tree


def _graph_for(g: dict[str, Any], checked: _Checked) -> Graph:
    """The stored version with this definition, or a new version marked as imported (see runs.services.graphs)."""
    found = Graph.objects.filter(name=g["name"], definition_hash=checked.definition_hash).first()
    if found is not None:
        return found
    latest = Graph.objects.filter(name=g["name"]).order_by("-version").first()
    return Graph.objects.create(
        name=g["name"],
        version=(latest.version + 1) if latest else 1,
        description=checked.definition.get("description", ""),
        definition=checked.definition,
        definition_hash=checked.definition_hash,
        node_hashes=g["node_hashes"],
        origin=Graph.ORIGIN_IMPORT,
    )


def _write_rows(
    bundle: dict[str, Any],
    checked: _Checked,
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    importer: str,
    role: str,
    written: list[str],
    spawned_by: Run | None = None,
) -> Run:
    """One run's rows. Linked to the run that spawned it only when imported with it (``spawned_by``): a bundle
    cannot attach a run to one that already lives here."""
    g, r = bundle["graph"], bundle["run"]
    graph = _graph_for(g, checked)
    parent = Run.objects.filter(trace_id=r["parent_trace_id"]).first() if r["parent_trace_id"] else None
    spawn: dict[str, Any] = {"until_node": r.get("until_node", "")}
    if spawned_by is not None:
        spawn.update(
            kind=r.get("kind", Run.KIND_RUN),
            spawned_by=spawned_by,
            spawn_step=r.get("spawn_step"),
            spawn_seq=r.get("spawn_seq"),
        )
    run = run_create(
        graph=graph,
        data=checked.input,
        state=checked.state,
        seed=r["seed"],
        user=user,
        role=role,
        node=r["node"],
        step_index=r["step_index"],
        parent=parent,
        parent_step=r["parent_step"],
        history={"imported": True, "original_context": r["context"]},
        restore={
            "trace_id": r["trace_id"],
            "status": r["status"],
            "error": r["error"],
            "max_steps": r["max_steps"],
            "started_at": checked.dates["started_at"],
            "finished_at": checked.dates["finished_at"],
            **spawn,
        },
    )
    Run.objects.filter(pk=run.pk).update(created_at=checked.dates["created_at"])
    _write_steps(run, bundle["steps"], checked)
    _write_activities(run, bundle["activities"], checked, written=written)
    _write_events(run, bundle["events"])
    RunEvent.objects.create(
        run=run,
        kind="imported",
        actor=importer,
        message=f"imported from a trace bundle by {importer or 'a command-line user'}",
        detail={
            "sha256": bundle["sha256"],
            "exported_at": bundle["exported_at"],
            "format_version": bundle["format_version"],
            "role": role,
            "graph_version": graph.version,
        },
    )
    return run


def _write_steps(run: Run, steps: list[dict[str, Any]], checked: _Checked) -> None:
    """The steps as the checkpointer stores them: snapshots (the first, every SNAPSHOT_EVERY) and deltas."""
    rows = []
    before = checked.input
    for i, (s, state, output) in enumerate(zip(steps, checked.states, checked.outputs, strict=True)):
        size = len(canonical_json(state).encode())
        ops = None if s["index"] % SNAPSHOT_EVERY == 0 or i == 0 else delta.encode(before, state, state_size=size)
        rows.append(
            Step(
                run=run,
                index=s["index"],
                node=s["node"],
                attempt=s["attempt"],
                state=state if ops is None else None,
                state_delta=ops,
                state_size=size,
                state_hash=s["state_hash"],
                input_hash=s["input_hash"],
                output=output,
                output_hash=s["output_hash"],
                edge=s["edge"],
                started_at=checked.dates[f"step {i}"],  # type: ignore[misc]  # never None: the schema requires it
                duration_ms=s["duration_ms"],
                error=s["error"],
            )
        )
        before = state
    Step.objects.bulk_create(rows)


def _write_activities(run: Run, activities: list[dict[str, Any]], checked: _Checked, *, written: list[str]) -> None:
    rows = []
    for a, request, response in zip(activities, checked.requests, checked.responses, strict=True):
        # A model call's tokens and cost, read from its recorded answer: the imported run shows what the
        # original spent (the daily totals are for calls made here, so they are left alone).
        usage = usage_of(response) if a["type"] == LLM_KIND and a["status"] == "completed" else None
        rows.append(
            Activity(
                run=run,
                step=a["step"],
                seq=a["seq"],
                type=a["type"],
                request=request,
                request_hash=a["request_hash"],
                status=a["status"],
                response=blob_store(response, written=written),
                error=a["error"],
                duration_ms=a["duration_ms"],
                attempt=a["attempt"],
                tokens=usage["tokens"] if usage else 0,
                cost_usd=usage["cost_usd"] if usage else 0.0,
            )
        )
    Activity.objects.bulk_create(rows)
    tokens, cost = sum(r.tokens for r in rows), sum(r.cost_usd for r in rows)
    if tokens or cost:
        Run.objects.filter(pk=run.pk).update(tokens=tokens, cost_usd=cost)


def _write_events(run: Run, events: list[dict[str, Any]]) -> None:
    RunEvent.objects.bulk_create(
        [
            RunEvent(
                run=run,
                kind=e["kind"],
                from_status=e["from_status"],
                to_status=e["to_status"],
                step=e["step"],
                message=e["message"],
                detail=e["detail"],
                actor=e["actor"],
            )
            for e in events
        ]
    )
