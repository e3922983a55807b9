"""The CMO runtime: graphs, the executor and the activity boundary.

Importable without a web request; it reaches storage only through
:class:`runs.engine.stores.Checkpointer`.
"""

from runs.engine.errors import (
    BoundaryViolation,
    GraphValidationError,
    InvalidTransition,
    NonDeterminismError,
    NotJSONError,
)
from runs.engine.graph import END, Edge, GraphSpec, NodeSpec, RetryPolicy, graph, node

__all__ = [
    "END",
    "BoundaryViolation",
    "Edge",
    "GraphSpec",
    "GraphValidationError",
    "InvalidTransition",
    "NodeSpec",
    "NonDeterminismError",
    "NotJSONError",
    "RetryPolicy",
    "graph",
    "node",
]
