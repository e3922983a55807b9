"""The interactive docs at /api/docs work offline: every asset comes from our own static files."""

from __future__ import annotations

import re

from django.test import Client


def test_the_docs_page_loads_swagger_ui_from_our_static_files() -> None:
    page = Client().get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>CMO API</title>" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), f"{asset} would need the network"
        served = Client().get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content])
    assert "/api/openapi.json" in html
    assert '"validatorUrl": null' in html  # no call to validator.swagger.io


def test_the_openapi_document_names_both_ways_to_authenticate() -> None:
    document = Client().get("/api/openapi.json").json()
    assert document["info"]["title"] == "CMO API"
    assert document["components"]["securitySchemes"] == {
        "BearerToken": {"type": "http", "scheme": "bearer"},
        "Session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    }
