"""Each envelope schema with valid and invalid documents; errors name the JSON path; schema_check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.engine import schemas
from runs.engine.schemas import EnvelopeInvalid, envelope_errors, validate_envelope


def example(name: str) -> dict[str, Any]:
    path = next(iter(sorted(schemas.EXAMPLES_DIR.glob(f"{name}.*.json"))))
    return dict(json.loads(path.read_text()))


def changed(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with dotted ``path`` set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


# (envelope, path to change, new value or ... to delete, expected error path, message fragment)
INVALID: list[tuple[str, str, Any, str, str]] = [
    ("AgentId", "name", "", "$.name", "does not match"),
    ("AgentId", "kind", "robot", "$.kind", "is not one of"),
    ("AgentId", "nickname", "x", "$", "Additional properties are not allowed"),
    ("EnvelopeMeta", "trace_id", "not-hex", "$.trace_id", "does not match"),
    ("EnvelopeMeta", "sent_at", "yesterday", "$.sent_at", "is not a 'date-time'"),
    ("EnvelopeMeta", "sent_at", "2026-11-22T04:40:00", "$.sent_at", "is not a 'date-time'"),
    ("EnvelopeMeta", "sender.kind", "robot", "$.sender.kind", "is not one of"),
    ("EnvelopeMeta", "schema_version", "2", "$.schema_version", "'1' was expected"),
    ("EnvelopeMeta", "recipient", ..., "$", "'recipient' is a required property"),
    ("SpecialistInvocationRequest", "meta.sender.name", "bad name!", "$.meta.sender.name", "does not match"),
    ("SpecialistInvocationRequest", "payload", [], "$.payload", "is not of type 'object'"),
    ("SpecialistInvocationRequest", "write_scopes", ["healing/a", "healing/a"], "$.write_scopes", "non-unique"),
    ("SpecialistInvocationRequest", "task", ..., "$", "'task' is a required property"),
    ("SpecialistResult", "status", "maybe", "$.status", "is not one of"),
    ("SpecialistResult", "result", ..., "$", "'result' is a required property"),
    ("SpecialistResult", "meta.step", -1, "$.meta.step", "less than the minimum"),
    ("RetryDirective", "after_ms", ..., "$", "'after_ms' is a required property"),
    ("RetryDirective", "max_attempts", 0, "$.max_attempts", "less than the minimum"),
    ("RetryDirective", "retryable", "yes", "$.retryable", "is not of type 'boolean'"),
    ("DecisionNotice", "decision", "maybe", "$.decision", "is not one of"),
    ("DecisionNotice", "decided_by", ..., "$", "'decided_by' is a required property"),
    ("DecisionNotice", "approval_id", 0, "$.approval_id", "less than the minimum"),
]


@pytest.mark.parametrize("name", schemas.ENVELOPES)
def test_each_envelope_has_a_valid_example(name: str) -> None:
    assert validate_envelope(name, example(name)) == example(name)


@pytest.mark.parametrize(("name", "path", "value", "error_path", "fragment"), INVALID)
def test_an_invalid_envelope_is_refused_with_the_json_path(
    name: str, path: str, value: Any, error_path: str, fragment: str
) -> None:
    doc = changed(example(name), path, value)
    with pytest.raises(EnvelopeInvalid) as info:
        validate_envelope(name, doc)
    assert any(e["path"] == error_path and fragment in e["message"] for e in info.value.errors), info.value.errors
    assert f"{error_path}: " in str(info.value) and str(info.value).startswith(f"{name} is invalid: ")


def test_every_envelope_has_invalid_cases() -> None:
    assert {case[0] for case in INVALID} == set(schemas.ENVELOPES)


def test_a_rejection_needs_a_reason_and_a_decider() -> None:
    rejected = example("DecisionNotice")
    rejected["decision"] = "rejected"
    rejected["reason"] = ""
    assert envelope_errors("DecisionNotice", rejected) == [{"path": "$.reason", "message": "'' should be non-empty"}]
    expired = {k: v for k, v in rejected.items() if k not in ("decided_by", "reason")} | {"decision": "expired"}
    assert envelope_errors("DecisionNotice", expired) == []


def test_several_errors_are_all_reported_in_document_order() -> None:
    doc = changed(changed(example("SpecialistInvocationRequest"), "meta.trace_id", "x"), "specialist", "")
    paths = [e["path"] for e in envelope_errors("SpecialistInvocationRequest", doc)]
    assert paths == ["$.meta.trace_id", "$.specialist"]


def test_validators_are_compiled_once() -> None:
    assert schemas.validator("AgentId") is schemas.validator("AgentId")
    with pytest.raises(KeyError, match="no envelope schema 'Nope'"):
        schemas.validator("Nope")


def test_schema_check_passes_on_the_repo(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("schema_check")
    assert "6 schemas and 8 envelopes are valid" in capsys.readouterr().out


def test_schema_check_fails_on_a_bad_envelope_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "SpecialistResult.bad.json"
    bad.write_text(json.dumps(changed(example("SpecialistResult"), "meta.sender.kind", "robot")))
    with pytest.raises(CommandError, match="1 schema problem"):
        call_command("schema_check", str(bad))
    assert f"{bad}: $.meta.sender.kind: 'robot' is not one of" in capsys.readouterr().err
