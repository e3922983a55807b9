"""How to call a hook: the example payload, the headers, a curl and a Python snippet, for its page."""

from __future__ import annotations

import json
import shlex
from typing import Any

from jsonpath_ng import Child, Fields, Root

from hooks import mapping, signing
from hooks.models import Hook
from runs.models import Graph
from runs.selectors import input_example


def _example_payload(hook: Hook, graph: Graph | None) -> Any:
    """A body the hook accepts: the graph's example input, placed where the mapping's simple paths read it."""
    schema = graph.definition.get("input_schema") or {} if graph else {}
    example = input_example(schema=schema) if schema else {}
    if hook.input_mode == Hook.BODY:
        return example if example is not None else {}
    payload: dict[str, Any] = {}
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for field, path in hook.input_mapping.items():
        names = _field_names(mapping.compile_path(path))
        if not names:
            continue
        node = payload
        for name in names[:-1]:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            default = example.get(field) if isinstance(example, dict) else None
            node[names[-1]] = default if default is not None else input_example(schema=properties.get(field, {}))
    return payload


def _field_names(path: Any) -> list[str] | None:
    """["a", "b"] for $.a.b; None for a path with indexes, wildcards or unions."""
    if isinstance(path, Root):
        return []
    if isinstance(path, Child) and isinstance(path.right, Fields) and len(path.right.fields) == 1:
        left = _field_names(path.left)
        return None if left is None else [*left, path.right.fields[0]]
    return None


def call_example(*, hook: Hook, url: str) -> dict[str, Any]:
    graph = Graph.objects.filter(name=hook.graph_name).order_by("-version").first()
    if hook.version is not None:
        graph = Graph.objects.filter(name=hook.graph_name, version=hook.version).first()
    body = json.dumps(_example_payload(hook, graph))
    key_header = hook.key_name if hook.key_source == Hook.KEY_HEADER else ""
    headers = [
        ("Content-Type", "application/json"),
        (signing.TIMESTAMP_HEADER, "<Unix seconds now>"),
        (signing.SIGNATURE_HEADER, "sha256=<hex HMAC-SHA256 of '<timestamp>.<raw body>' keyed with the secret>"),
    ]
    if key_header:
        headers.append((key_header, "<a unique id per event; a retry sends the same>"))
    curl = [
        'SECRET="$CMO_HOOK_SECRET"  # the secret shown when the hook was made or its secret rotated',
        f"BODY={shlex.quote(body)}",
        "TS=$(date +%s)",
        'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed \'s/^.* //\')',
        f"curl -sS -X POST {shlex.quote(url)} \\",
        "  -H 'Content-Type: application/json' \\",
        '  -H "X-CMO-Timestamp: $TS" -H "X-CMO-Signature: sha256=$SIG" \\',
    ]
    if key_header:
        curl.append(f'  -H {shlex.quote(key_header + ": ")}"$(uuidgen)" \\')
    curl.append('  --data-raw "$BODY"')
    python = [
        "import hashlib, hmac, os, time, urllib.request",
        "",
        'secret = os.environ["CMO_HOOK_SECRET"]',
        f"body = {body!r}.encode()  # the exact bytes that are signed and sent",
        "ts = str(int(time.time()))",
        'sig = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()',
        "headers = {",
        '    "Content-Type": "application/json",',
        '    "X-CMO-Timestamp": ts,',
        '    "X-CMO-Signature": "sha256=" + sig,',
    ]
    if key_header:
        python.append(f"    {json.dumps(key_header)}: str(uuid.uuid4()),")
        python[0] = "import hashlib, hmac, os, time, urllib.request, uuid"
    python += [
        "}",
        f'request = urllib.request.Request({json.dumps(url)}, data=body, headers=headers, method="POST")',
        'print(urllib.request.urlopen(request).read().decode())  # 202 {"trace_id": ...}',
    ]
    return {"url": url, "body": body, "headers": headers, "curl": "\n".join(curl), "python": "\n".join(python)}
