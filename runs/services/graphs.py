"""Store graph definitions: validated, hashed and versioned."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from cmo_site.shared.permissions import ADMIN
from runs.engine.errors import CMOError, GraphValidationError, NotJSONError
from runs.engine.graph import GRAPHS, NODES, GraphSpec
from runs.engine.hashing import json_hash, normalize
from runs.engine.validation import validate_definition
from runs.models import Graph
from runs.services.audit import audit_record


def _node_hashes(definition: dict[str, Any]) -> dict[str, str]:
    hashes = {}
    for n in definition["nodes"]:
        spec = NODES.get(n["name"])
        if spec is not None:
            hashes[n["name"]] = spec.source_hash
    return hashes


def _validated(definition: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str]:
    """(validated definition, node source hashes, version digest) of ``definition``.

    The definition must be storable JSON first: no NaN (a ``"timeout": NaN`` passes JSON Schema's
    "number"), no nesting deeper than the engine stores (an input_schema 900 levels deep would
    exhaust the schema checker's recursion).
    """
    try:
        normalize(definition, what="the graph definition")
    except NotJSONError as exc:
        name = definition.get("name", "?") if isinstance(definition, dict) else "?"
        raise GraphValidationError(str(name), [str(exc)]) from None
    definition = validate_definition(definition)
    node_hashes = _node_hashes(definition)
    return definition, node_hashes, json_hash({"definition": definition, "node_hashes": node_hashes})


# Code graphs are synced on every run start, and validating them (jsonschema) each time made the demo
# graph's lookup 3.7 ms where its query takes 0.7 ms (0.8 ms memoized). Keyed by the raw definition and
# the sources of the nodes it names, so a changed node or registry still makes a new version.
_SYNCED: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {}
_SYNCED_MAX = 256


def _validated_code_graph(definition: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str]:
    key = json_hash({"definition": definition, "node_hashes": _node_hashes(definition)})
    found = _SYNCED.get(key)
    if found is None:
        found = _validated(definition)
        if len(_SYNCED) >= _SYNCED_MAX:
            _SYNCED.clear()
        _SYNCED[key] = found
    return found


class GraphPublishRefused(CMOError):
    """The caller may not publish this graph name (reserved for code, or owned by someone else)."""

    status, code = 403, "forbidden"


class GraphNotRunnable(CMOError):
    """The version did not come from the code or its owner (an imported definition): only an admin or the
    name's owner may run it."""

    status, code = 403, "forbidden"


def _store(
    definition: dict[str, Any], *, origin: str, code: bool = False, publisher: AbstractBaseUser | None = None
) -> tuple[Graph, bool]:
    """Store ``definition`` as a new version unless the latest version of its origin has the same hash.

    The hash covers the definition and every node's source, so a code change
    makes a new version; runs keep the version they started on. Code that matches an
    older version of its graph (a previous release's worker) gets that version back. A code graph is
    compared with its latest code version only, so a version that came from
    elsewhere (an import) does not make every later sync store the code again.
    """
    definition, node_hashes, digest = _validated_code_graph(definition) if code else _validated(definition)
    name = definition["name"]
    for _ in range(3):
        latest = Graph.objects.filter(name=name).order_by("-version").first()
        same_origin = latest if latest is None or latest.origin == origin else _latest(name, origin)
        if same_origin is not None and same_origin.definition_hash == digest:
            return same_origin, False
        if code:
            # An older release's worker starting during a rolling deploy finds its own version again instead of
            # storing its code as a newer one (old and new would leapfrog each other's numbers).
            known = Graph.objects.filter(name=name, origin=origin, definition_hash=digest).order_by("-version").first()
            if known is not None:
                return known, False
        try:
            with transaction.atomic():
                graph = Graph.objects.create(
                    name=name,
                    version=(latest.version + 1) if latest else 1,
                    description=definition.get("description", ""),
                    definition=definition,
                    definition_hash=digest,
                    node_hashes=node_hashes,
                    origin=origin,
                    published_by=publisher,  # type: ignore[misc]
                )
                if not code:
                    audit_record(
                        actor=publisher.get_username() if publisher is not None else "",
                        action="graph_published",
                        target=f"graph:{name}",
                        detail={"version": graph.version, "definition_hash": digest, "origin": origin},
                    )
            return graph, True
        except IntegrityError:
            continue  # another process stored the same version first; look again
    raise RuntimeError(f"could not store a new version of graph {name!r}")


def _latest(name: str, origin: str) -> Graph | None:
    return Graph.objects.filter(name=name, origin=origin).order_by("-version").first()


def graph_owner(*, name: str) -> AbstractBaseUser | None:
    """Who owns JSON graph ``name``: the publisher of its first JSON version (None: nobody, or the command line)."""
    first = Graph.objects.filter(name=name, origin=Graph.ORIGIN_JSON).order_by("version").select_related(
        "published_by"
    )
    row = first.first()
    return row.published_by if row is not None else None


# The stored version of each code graph as this process last synced it, keyed by the graph's spec and its
# nodes' specs (objects replaced when code is registered again). A hit costs one indexed existence check
# instead of building, hashing and looking up the definition (a run start's graph lookup: ~1 ms -> ~0.15 ms);
# a stored version never changes, and a flushed table or a re-registered node misses.
# The specs themselves are kept (compared by identity), so a replaced spec never matches by a reused id.
_RESOLVED: dict[str, tuple[tuple[Any, ...], Graph]] = {}


def graph_sync(*, spec: GraphSpec) -> tuple[Graph, bool]:
    """Sync one code-defined graph; returns (graph version, created)."""
    key = (spec, *(NODES.get(n) for n in spec.nodes))
    cached = _RESOLVED.get(spec.name)
    if cached is not None and len(cached[0]) == len(key) and all(a is b for a, b in zip(cached[0], key, strict=True)):
        graph = cached[1]
        if Graph.objects.filter(pk=graph.pk, definition_hash=graph.definition_hash).exists():
            return graph, False
    graph, created = _store(spec.definition(), origin=Graph.ORIGIN_CODE, code=True)
    _RESOLVED[spec.name] = (key, graph)
    return graph, created


def graph_sync_all() -> list[tuple[Graph, bool]]:
    return [graph_sync(spec=spec) for spec in GRAPHS.all()]


def graph_publish_refusal(*, name: str, user: AbstractBaseUser | None, role: str) -> str:
    """Why ``user`` (with ``role``) may not publish a version of graph ``name``, or "" if they may.

    A code graph's versions come from its code only. A JSON graph belongs to whoever published its
    first version; after that only they or an admin publish versions. A new name is anyone's to take
    who may operate. The command line (no user) is trusted like an admin.
    """
    if name in {spec.name for spec in GRAPHS.all()}:
        return f"graph {name!r} is defined in code: its versions come from the code, never from a JSON definition"
    if user is None or role == ADMIN:
        return ""
    owner = graph_owner(name=name)
    published = Graph.objects.filter(name=name, origin=Graph.ORIGIN_JSON).exists()
    if published and (owner is None or owner.pk != user.pk):
        who = owner.get_username() if owner is not None else "the command line"
        return f"graph {name!r} belongs to {who}: only they or an admin may publish its versions"
    return ""


def graph_create_from_json(
    *, definition: Any, user: AbstractBaseUser | None = None, role: str = ""
) -> tuple[Graph, bool]:
    """Publish a JSON definition that names registered nodes, as ``user`` (None: the command line).

    GraphValidationError if invalid; GraphPublishRefused if the name is reserved for code or owned by
    someone else. A new version is recorded in the audit log (``graph_published``).
    """
    name = definition.get("name") if isinstance(definition, dict) else None
    if isinstance(name, str):
        refusal = graph_publish_refusal(name=name, user=user, role=role)
        if refusal:
            raise GraphPublishRefused(refusal)
    return _store(definition, origin=Graph.ORIGIN_JSON, publisher=user)


def graph_run_refusal(*, graph: Graph, user: Any, role: str) -> str:
    """Why a run on ``graph`` may not start (or be forked) for ``user`` with ``role``, or "" if it may.

    Code versions and JSON versions that their owner published run for anyone who may operate. A
    version that came from elsewhere (an imported bundle, or a JSON version of a name that code now
    defines) never went through publishing: only an admin, or the owner of a JSON name, runs it.
    """
    if graph.origin == Graph.ORIGIN_CODE or role == ADMIN:
        return ""
    code_name = graph.name in {spec.name for spec in GRAPHS.all()}
    if graph.origin == Graph.ORIGIN_JSON and not code_name:
        return ""
    if not code_name and user is not None and getattr(user, "is_authenticated", False):
        owner = graph_owner(name=graph.name)
        if owner is not None and owner.pk == user.pk:
            return ""
    where = "came with an imported run" if graph.origin == Graph.ORIGIN_IMPORT else "is not the code's definition"
    return (
        f"version {graph.version} of graph {graph.name!r} {where}; only an admin"
        + ("" if code_name else " or the graph's owner")
        + " may run it: start or fork on a published version instead"
    )


def graph_resolve(*, name: str, version: int | None = None) -> Graph:
    """The stored graph ``name`` at ``version`` (default: the latest published version), syncing code graphs first.

    A code graph's default is its code version; a JSON graph's is its latest JSON version (imported
    versions are history: they are only chosen by number, or when nothing was published).
    Raises Graph.DoesNotExist with a message naming what is known.
    """
    spec = GRAPHS.get(name)
    if spec is not None:
        synced, _ = graph_sync(spec=spec)
        if version is None or version == synced.version:
            return synced
    qs = Graph.objects.filter(name=name)
    if version is not None:
        graph = qs.filter(version=version).first()
    else:
        graph = qs.exclude(origin=Graph.ORIGIN_IMPORT).order_by("-version").first() or qs.order_by("-version").first()
    if graph is None:
        known = sorted(set(Graph.objects.values_list("name", flat=True)) | {g.name for g in GRAPHS.all()})
        if qs.exists():
            versions = list(qs.order_by("version").values_list("version", flat=True))
            raise Graph.DoesNotExist(f"graph {name!r} has no version {version}; versions: {versions}")
        raise Graph.DoesNotExist(f"unknown graph {name!r}; known graphs: {', '.join(known) or 'none'}")
    return graph
