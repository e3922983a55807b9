"""The activity kinds the runs app plugs into the engine (runs.engine.plugins): artifacts, read-only SQL,
MCP tool calls, model calls (llm), messages to specialists, child runs, branch joins, durable timers and signals.
Registered by RunsConfig.ready()."""

from __future__ import annotations

from runs.engine.plugins import PLUGINS


def register() -> None:
    from runs.activities import artifacts, branches, children, db_query, llm, mcp, signals, specialists, timers

    for module in (artifacts, db_query, mcp, specialists, children, branches, timers, signals, llm):
        for kind in module.KINDS:
            PLUGINS.register_activity(kind)
