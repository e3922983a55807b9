"""Make the demo's recorded run: runs/demo_bundles/incident-summary-llm.json (runs.demo_llm.RECORDED_BUNDLE).

``python -m tests.bench.make_demo_llm_bundle [--out FILE]`` (from the repository root, with the dev
requirements installed). In a fresh SQLite database in a temporary CMO_VAR_DIR (DATABASE_URL and REDIS_URL
are ignored; nothing of the developer's is touched), it

1. starts the tests' local model server (tests/fixtures/model_server.py) with a random API key, and
   configures it as provider "openai" (kind openai, default model "gpt-4o-mini", with gpt-4o-mini's price
   table, so the calls have a cost), the key on this "worker" as the secret ``openai``;
2. runs incident-summary-llm on DEMO_SUMMARY_INPUT to its end, in this process, under the worker's policy:
   the model calls ``lookup_runbook`` (scripted), the node answers with the runbook, and the model's second
   answer is a scripted, realistic summary (the server would otherwise echo the prompt);
3. adds the note "recorded demo run: made against a local model server, not a real provider" to the run's
   events, exports the run as a trace bundle, checks that neither the API key nor the server's address is
   in it, verifies the run with no provider configured (nothing may be sent), and writes the bundle.

Run it again after changing incident-summary-llm or the nodes it runs (runs/demo_llm.py): the bundle holds
the graph's definition hash and its nodes' source hashes, and tests/unit/test_demo_llm.py fails while they
differ from the code's (an imported run of an older version would verify as "the node's code changed").
Then commit the new bundle; its trace id changes, so a demo database that has the old one imports the new one.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fixtures.model_server import DEFAULT_API_KEY, OPENAI_PATH, ModelServer

PROVIDER = "openai"
MODEL = "gpt-4o-mini"
SECRET = "openai"
PRICES = {MODEL: {"input": 0.15, "output": 0.60, "cached": 0.075}}  # USD per million tokens
SEED = 1
SUMMARY = (
    "Checkout's p99 latency has been over 2 s since the 14:05 deploy. Per the latency runbook, check the cache "
    "hit rate and flush the cache if it dropped, then recycle the connection pool; if latency is still high "
    "after 10 minutes, roll back the 14:05 deploy."
)


@contextmanager
def configured(server: ModelServer, api_key: str) -> Iterator[None]:
    """Provider "openai" against ``server``, its key in this process's environment (as a worker's)."""
    from django.test import override_settings

    from runs.engine import secrets as engine_secrets

    providers = {
        PROVIDER: {
            "kind": "openai",
            "base_url": server.url + "/v1",
            "api_key_secret": SECRET,
            "default_model": MODEL,
            "max_retries": 0,
            "prices": PRICES,
        }
    }
    variable = f"CMO_SECRET_{SECRET.upper()}"
    os.environ[variable] = api_key
    engine_secrets.reload()
    try:
        with override_settings(CMO_LLM_PROVIDERS=providers, CMO_LLM_DEFAULT_PROVIDER=""):
            yield
    finally:
        os.environ.pop(variable, None)
        engine_secrets.reload()


def record(server: ModelServer, api_key: str) -> Any:
    """Run incident-summary-llm against ``server`` to its end and label it; returns the Run (needs a database)."""
    from runs.demo_llm import DEMO_SUMMARY_INPUT, RECORDED_NOTE
    from runs.engine.plugins import PLUGINS
    from runs.services.events import run_event_add
    from runs.services.graphs import graph_sync_all
    from runs.services.runs import run_start
    from tests.helpers import execute

    graph_sync_all()
    server.script(tool_call=True, path=OPENAI_PATH)  # the model looks the runbook up
    server.script(text=SUMMARY, path=OPENAI_PATH)  # then answers with the summary
    with configured(server, api_key):
        run = run_start(graph_name="incident-summary-llm", data=DEMO_SUMMARY_INPUT, seed=SEED, role="operator")
        execute(run, policy=PLUGINS.policy())
    run.refresh_from_db()
    if run.status != "COMPLETED":
        raise SystemExit(f"the run did not complete: {run.status} {run.error}")
    run_event_add(run_id=run.pk, kind="note", message=RECORDED_NOTE)
    return run


def bundle_text(run: Any, *, forbidden: list[str]) -> str:
    """The run's trace bundle as the committed file holds it; SystemExit if it contains a ``forbidden`` string."""
    from replay.bundles import bundle_export

    text = json.dumps(bundle_export(run=run), sort_keys=True, indent=1) + "\n"
    for secret in forbidden:
        if secret in text:
            raise SystemExit(f"the bundle contains {secret[:6]}...: not written")
    return text


def check_verify(run: Any, server: ModelServer) -> None:
    """Verify ``run`` with no provider configured: it must match, and send nothing."""
    from replay.services import run_verify

    sent = server.count()
    report = run_verify(run=run)
    if not report.ok or server.count() != sent:
        raise SystemExit(f"the recorded run does not verify without a provider: {report.first_divergence}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Make the demo's recorded run of incident-summary-llm.")
    parser.add_argument(
        "--out", default=None, help="file to write (default: runs/demo_bundles/incident-summary-llm.json)"
    )
    wanted = parser.parse_args().out
    var = tempfile.mkdtemp(prefix="cmo-demo-bundle-")
    for name in ("DATABASE_URL", "REDIS_URL", "CMO_LLM_PROVIDERS", "CMO_LLM_DEFAULT_PROVIDER"):
        os.environ.pop(name, None)
    os.environ.update(
        CMO_VAR_DIR=var,
        DJANGO_SETTINGS_MODULE="cmo_site.settings",
        CMO_GRAPH_MODULES="runs.demo",
        CMO_LOG_LEVEL="WARNING",
        DEBUG="false",
        SECRET_KEY="demo-bundle-" + secrets.token_urlsafe(32),
    )
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from runs.demo_llm import RECORDED_BUNDLE

        call_command("migrate", verbosity=0)
        out = Path(wanted) if wanted else RECORDED_BUNDLE
        api_key = "sk-demo-" + secrets.token_urlsafe(24)
        with ModelServer(api_key=api_key) as server:
            run = record(server, api_key)
            text = bundle_text(run, forbidden=[api_key, DEFAULT_API_KEY, server.url, f"127.0.0.1:{server.port}"])
            check_verify(run, server)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out} ({len(text.encode())} bytes): run {run.trace_id}, {run.tokens} tokens, ${run.cost_usd:.6f}")
    finally:
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
