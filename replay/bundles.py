"""Trace bundles: a run as one portable JSON file (schema: replay/schemas/trace_bundle.schema.json).

Export gathers the graph version, steps with full states, activities, events
and the artifacts the activities name; the bundle carries the SHA-256 of its
own canonical JSON. Import refuses a malformed bundle (schema errors with
their paths) or a tampered one (hash mismatch) before writing anything, then
writes everything in one transaction. Bundles are also the backup format.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.engine.hashing import canonical_json, json_hash, sha256_hex
from runs.models import Activity, Graph, Run, RunEvent, Step
from runs.selectors import step_states
from runs.services.checkpoint import blob_load, blob_store

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "trace_bundle.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ARTIFACT_ACTIVITIES = ("write_artifact", "read_artifact")


class BundleError(ValueError):
    """A bundle that cannot be imported; the message says why."""


class BundleConflict(BundleError):
    """The bundle's run already exists in this installation."""


def _when(text: str) -> dt.datetime:
    value = parse_datetime(text)
    if value is None:
        raise BundleError(f"malformed bundle: {text!r} is not a date-time")
    return value


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def bundle_export(*, run: Run) -> dict[str, Any]:
    states = step_states(run_id=run.pk)
    activities = list(Activity.objects.filter(run=run).order_by("step", "seq"))
    artifacts: dict[str, str] = {}
    for a in activities:
        name = a.request.get("name") if a.type in ARTIFACT_ACTIVITIES and isinstance(a.request, dict) else None
        path = f"artifacts/{name}"
        if name and name not in artifacts and default_storage.exists(path):
            with default_storage.open(path, "rb") as fh:
                artifacts[name] = base64.b64encode(fh.read()).decode()
    bundle: dict[str, Any] = {
        "format": "cmo-trace-bundle",
        "format_version": 1,
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
            "input": run.input,
            "seed": run.seed,
            "step_index": run.step_index,
            "node": run.node,
            "state": run.state,
            "error": run.error,
            "max_steps": run.max_steps,
            "context": run.context,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "parent_trace_id": run.parent.trace_id if run.parent else None,
            "parent_step": run.parent_step,
        },
        "steps": [
            {
                "index": s.index,
                "node": s.node,
                "attempt": s.attempt,
                "state": states[s.index],
                "state_hash": s.state_hash,
                "input_hash": s.input_hash,
                "output": s.output,
                "output_hash": s.output_hash,
                "edge": s.edge,
                "started_at": _iso(s.started_at),
                "duration_ms": s.duration_ms,
                "error": s.error,
            }
            for s in Step.objects.filter(run=run).order_by("index")
        ],
        "activities": [
            {
                "step": a.step,
                "seq": a.seq,
                "type": a.type,
                "request": a.request,
                "request_hash": a.request_hash,
                "status": a.status,
                "response": blob_load(a.response),
                "error": a.error,
                "duration_ms": a.duration_ms,
                "attempt": a.attempt,
            }
            for a in activities
        ],
        "events": [
            {
                "kind": e.kind,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "step": e.step,
                "message": e.message,
                "detail": e.detail,
                "actor": e.actor,
                "created_at": _iso(e.created_at),
            }
            for e in RunEvent.objects.filter(run=run).order_by("id")
        ],
        "artifacts": artifacts,
    }
    bundle["sha256"] = json_hash(bundle)
    return bundle


def bundle_check(bundle: Any) -> None:
    """Raise BundleError unless ``bundle`` matches the schema, its hash and its own step hashes."""
    errors = sorted(_VALIDATOR.iter_errors(bundle), key=lambda e: list(e.absolute_path))
    if errors:
        raise BundleError("malformed bundle: " + "; ".join(f"at {e.json_path}: {e.message}" for e in errors[:5]))
    body = {k: v for k, v in bundle.items() if k != "sha256"}
    if sha256_hex(canonical_json(body)) != bundle["sha256"]:
        raise BundleError("tampered bundle: its content does not match its sha256")
    for step in bundle["steps"]:
        if json_hash(step["state"]) != step["state_hash"]:
            raise BundleError(f"tampered bundle: step {step['index']}'s state does not match its state_hash")


def bundle_import(*, bundle: Any) -> Run:
    """Create the bundle's run (same trace id) in this installation; BundleError if refused."""
    bundle_check(bundle)
    g, r = bundle["graph"], bundle["run"]
    if r["status"] not in ("COMPLETED", "FAILED", "TIMED_OUT", "ABORTED"):
        raise BundleError(f"run {r['trace_id']} is {r['status']}: only ended runs are imported (nothing re-runs)")
    if Run.objects.filter(trace_id=r["trace_id"]).exists():
        raise BundleConflict(f"run {r['trace_id']} already exists here")
    with transaction.atomic():
        graph = Graph.objects.filter(name=g["name"], definition_hash=g["definition_hash"]).first()
        if graph is None:
            latest = Graph.objects.filter(name=g["name"]).order_by("-version").first()
            graph = Graph.objects.create(
                name=g["name"],
                version=(latest.version + 1) if latest else g["version"],
                description=g["definition"].get("description", ""),
                definition=g["definition"],
                definition_hash=g["definition_hash"],
                node_hashes=g["node_hashes"],
                origin=Graph.ORIGIN_JSON,
            )
        parent = Run.objects.filter(trace_id=r["parent_trace_id"]).first() if r["parent_trace_id"] else None
        run = Run.objects.create(
            trace_id=r["trace_id"],
            graph=graph,
            input=r["input"],
            seed=r["seed"],
            status=r["status"],
            step_index=r["step_index"],
            node=r["node"],
            state=r["state"],
            error=r["error"],
            max_steps=r["max_steps"],
            context={**r["context"], "imported": True},
            parent=parent,
            parent_step=r["parent_step"],
            started_at=_when(r["started_at"]) if r["started_at"] else None,
            finished_at=_when(r["finished_at"]) if r["finished_at"] else None,
        )
        Run.objects.filter(pk=run.pk).update(created_at=_when(r["created_at"]))
        Step.objects.bulk_create(
            [
                Step(
                    run=run,
                    index=s["index"],
                    node=s["node"],
                    attempt=s["attempt"],
                    state=s["state"],
                    state_size=len(canonical_json(s["state"]).encode()),
                    state_hash=s["state_hash"],
                    input_hash=s["input_hash"],
                    output=s["output"],
                    output_hash=s["output_hash"],
                    edge=s["edge"],
                    started_at=_when(s["started_at"]),
                    duration_ms=s["duration_ms"],
                    error=s["error"],
                )
                for s in bundle["steps"]
            ]
        )
        Activity.objects.bulk_create(
            [
                Activity(
                    run=run,
                    step=a["step"],
                    seq=a["seq"],
                    type=a["type"],
                    request=a["request"],
                    request_hash=a["request_hash"],
                    status=a["status"],
                    response=blob_store(a["response"]),
                    error=a["error"],
                    duration_ms=a["duration_ms"],
                    attempt=a["attempt"],
                )
                for a in bundle["activities"]
            ]
        )
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
                for e in bundle["events"]
            ]
        )
        RunEvent.objects.create(
            run=run,
            kind="imported",
            message="imported from a trace bundle",
            detail={"sha256": bundle["sha256"], "exported_at": bundle["exported_at"]},
        )
        for name, content in bundle["artifacts"].items():
            path = f"artifacts/{name}"
            if not default_storage.exists(path):
                default_storage.save(path, ContentFile(base64.b64decode(content)))
    return run
