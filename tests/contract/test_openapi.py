"""The OpenAPI document is a contract: the committed cmo_site/openapi.json must equal what the API serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from cmo_site.api import SCHEMA_FILE, openapi_document, openapi_text

FIX = "the API and cmo_site/openapi.json differ: run `python manage.py api_schema` and commit the result"


def test_the_committed_openapi_document_matches_the_live_api() -> None:
    live = Client().get("/api/openapi.json")
    assert live.status_code == 200
    committed = json.loads(SCHEMA_FILE.read_text())
    assert live.json() == committed, FIX


def test_every_endpoint_has_one_input_and_one_output_schema() -> None:
    for path, methods in openapi_document()["paths"].items():
        for method, op in methods.items():
            success = {
                json.dumps(r["content"]["application/json"]["schema"], sort_keys=True)
                for status, r in op["responses"].items()
                if status.startswith("2")
            }
            assert len(success) == 1, f"{method.upper()} {path} has {len(success)} success schemas"
            body = op.get("requestBody", {}).get("content", {})
            assert len(body) <= 1, f"{method.upper()} {path} accepts {len(body)} body types"
            errors = {
                r["content"]["application/json"]["schema"]["$ref"] for s, r in op["responses"].items() if s >= "4"
            }
            assert errors == {"#/components/schemas/ErrorOut"}, f"{method.upper()} {path}: {errors}"
            assert "401" in op["responses"], f"{method.upper()} {path} does not document 401"


def test_api_schema_check_fails_when_the_committed_document_is_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stale = openapi_document()
    stale["info"]["version"] = "0.0.0-stale"
    target = tmp_path / "openapi.json"
    target.write_text(openapi_text(stale))
    monkeypatch.setattr("cmo_site.management.commands.api_schema.SCHEMA_FILE", target)
    with pytest.raises(CommandError, match="api_schema"):
        call_command("api_schema", "--check")
    call_command("api_schema")
    assert json.loads(target.read_text()) == openapi_document()
    call_command("api_schema", "--check")
