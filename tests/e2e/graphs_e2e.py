"""A graph for the dashboard's browser test: it holds at its first step until a marker file appears, then counts."""

from __future__ import annotations

import tests.graphs  # noqa: F401 - registers t_wait_for_file and t_count
from runs.engine import END, graph

graph(
    "e2e-live",
    description="Waits for a marker file, then counts to a target: a run the browser can watch as it goes.",
    entry="t_wait_for_file",
    nodes=["t_wait_for_file", "t_count"],
    edges=[("t_wait_for_file", "t_count"), ("t_count", "t_count", "again"), ("t_count", END, "done")],
    input_schema={
        "type": "object",
        "required": ["marker", "target"],
        "properties": {
            "marker": {"type": "string", "minLength": 1},
            "target": {"type": "integer", "minimum": 1, "maximum": 20},
            "max_wait": {"type": "number", "default": 30},
        },
    },
)
