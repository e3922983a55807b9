"""The second release of graph t-deploy: the node's code changed (it marks the state with "v2")."""

from __future__ import annotations

import time
from typing import Any

from runs.engine import END, graph, node


@node("d_step")
def d_step(state: dict[str, Any], ctx: Any) -> Any:
    time.sleep(state.get("sleep", 0))
    done = [*state.get("done", []), "v2"]  # the new release's change
    return ctx.result({**state, "done": done}, edge="again" if len(done) < state.get("steps", 3) else "done")


graph("t-deploy", entry="d_step", edges=[("d_step", "d_step", "again"), ("d_step", END, "done")])
