"""Which runs this process's code may execute: a run's graph version names the source hash of every node
it was started with, and a worker whose loaded node differs must not run it (it would execute new code
under the old version's name). A graph may declare older versions of its name compatible
(``graph(..., compatible_with=[2, 3])``, in the spirit of Temporal's ``patched()``): their runs then run on
this code. See runs.services.versions for the worker's side (releasing, waiting, moving a run)."""

from __future__ import annotations

from typing import Any

from runs.engine.graph import GRAPHS, NODES, GraphRegistry, NodeRegistry
from runs.engine.stores import RunSnapshot


def code_mismatch(snap: RunSnapshot, registry: NodeRegistry = NODES, graphs: GraphRegistry = GRAPHS) -> list[str]:
    """The nodes of ``snap``'s graph version whose loaded source is not the one the version recorded (or that
    are not loaded here); [] when this code may run it."""
    return version_mismatch(
        snap.graph_name, snap.graph_version, snap.definition, snap.node_hashes, registry=registry, graphs=graphs
    )


def version_mismatch(
    name: str,
    version: int,
    definition: dict[str, Any],
    node_hashes: dict[str, str],
    *,
    registry: NodeRegistry = NODES,
    graphs: GraphRegistry = GRAPHS,
) -> list[str]:
    """:func:`code_mismatch` for a stored version given by its parts."""
    loaded = graphs.get(name)
    if loaded is not None and version in loaded.compatible_with:
        return []
    differ = []
    for node in definition.get("nodes", []):
        node_name = node.get("name") if isinstance(node, dict) else None
        recorded = node_hashes.get(node_name) if isinstance(node_name, str) else None
        if recorded is None or not isinstance(node_name, str):
            continue  # a JSON graph stored before this node was registered anywhere: nothing to compare
        spec = registry.get(node_name)
        if spec is None or spec.source_hash != recorded:
            differ.append(node_name)
    return differ
