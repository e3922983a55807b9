"""Envelope JSON Schemas (``runs/schemas/*.json``), compiled once, and their validation.

Each schema file is named for its envelope (``SpecialistInvocationRequest.json``)
and refers to the others by file name (``{"$ref": "EnvelopeMeta.json"}``),
resolved through one in-memory registry: nothing is fetched. Validators are
built once per process (Draft 2020-12, with a ``date-time`` format check
that requires an RFC 3339 offset) and reused; :func:`validate_envelope` is
what a boundary calls, and its error names the JSON path of every problem.

Examples live in ``runs/schemas/examples/<Envelope>.<label>.json``;
``python manage.py schema_check`` validates the schemas and the examples.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource

from runs.engine.errors import CMOError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
EXAMPLES_DIR = SCHEMA_DIR / "examples"
ENVELOPES = (
    "EnvelopeMeta",
    "AgentId",
    "SpecialistInvocationRequest",
    "SpecialistResult",
    "RetryDirective",
    "DecisionNotice",
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


class EnvelopeInvalid(CMOError, ValueError):
    """An envelope does not match its schema; ``errors`` lists {path, message}."""

    status, code = 422, "invalid_envelope"

    def __init__(self, name: str, errors: list[dict[str, str]]):
        self.name = name
        self.errors = errors
        super().__init__(f"{name} is invalid: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors))


@functools.cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema file by envelope name (read once)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.json"))}


@functools.cache
def _registry() -> Registry:
    resources = []
    for name, schema in schemas().items():
        resource = Resource.from_contents(schema)
        resources.append((f"{name}.json", resource))
        resources.append((schema["$id"], resource))
    return Registry().with_resources(resources)  # type: ignore[no-any-return]


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The compiled validator of envelope ``name`` (KeyError naming the known ones)."""
    known = schemas()
    if name not in known:
        raise KeyError(f"no envelope schema {name!r}; known: {', '.join(sorted(known))}")
    return Draft202012Validator(known[name], registry=_registry(), format_checker=FORMATS)


def envelope_errors(name: str, document: Any) -> list[dict[str, str]]:
    """Every problem of ``document`` as {path, message}, in document order (empty: valid)."""
    errors = sorted(validator(name).iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [{"path": e.json_path, "message": e.message} for e in errors]


def validate_envelope(name: str, document: Any) -> Any:
    """Return ``document`` if it is a valid ``name`` envelope; otherwise raise EnvelopeInvalid."""
    errors = envelope_errors(name, document)
    if errors:
        raise EnvelopeInvalid(name, errors)
    return document


def check_all() -> list[str]:
    """Problems with the schema files and the examples, one line each (empty: all good)."""
    problems: list[str] = []
    found = schemas()
    for name in ENVELOPES:
        if name not in found:
            problems.append(f"schema {name}.json is missing")
    for name, schema in found.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append(f"{name}.json is not a valid JSON Schema: {exc.json_path}: {exc.message}")
            continue
        if schema.get("$id", "").rsplit("/", 1)[-1] != f"{name}.json":
            problems.append(f"{name}.json: $id must end with /{name}.json")
        if schema.get("title") != name:
            problems.append(f"{name}.json: title must be {name!r}")
    if problems:
        return problems
    covered: set[str] = set()
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        name = path.name.split(".", 1)[0]
        if name not in found:
            problems.append(f"examples/{path.name}: no schema named {name}")
            continue
        covered.add(name)
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"examples/{path.name}: not JSON: {exc}")
            continue
        for error in envelope_errors(name, document):
            problems.append(f"examples/{path.name}: {error['path']}: {error['message']}")
    for name in sorted(set(ENVELOPES) - covered):
        problems.append(f"no example for {name} in runs/schemas/examples/")
    return problems
