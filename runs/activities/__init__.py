"""The activity kinds the runs app plugs into the engine (runs.engine.plugins): artifacts, read-only SQL,
MCP tool calls and messages to specialists. Registered by RunsConfig.ready()."""

from __future__ import annotations

from runs.engine.plugins import PLUGINS


def register() -> None:
    from runs.activities import artifacts, db_query, mcp, specialists

    for module in (artifacts, db_query, mcp, specialists):
        for kind in module.KINDS:
            PLUGINS.register_activity(kind)
