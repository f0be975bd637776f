"""Small helpers for rewriting converted graphs (the recognition passes share them)."""

from __future__ import annotations

import numpy as np

from ..graph.graph import Graph, Node
from .naming import Names


def reader_map(graph: Graph) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def channel_vector(value: np.ndarray, ndim: int, axis: int) -> np.ndarray | None:
    """``value`` as a ``(C,)`` vector if it broadcasts along ``axis`` only (rank ``ndim``)."""
    if value.ndim != ndim:
        return None
    if any(d != 1 for i, d in enumerate(value.shape) if i != axis % ndim):
        return None
    return value.reshape(-1)


def rewire(nodes: list[Node], mapping: dict[str, str], outputs: tuple[str, ...]):
    nodes = [
        n.replace(inputs=tuple(mapping.get(i, i) for i in n.inputs))
        if any(i in mapping for i in n.inputs)
        else n
        for n in nodes
    ]
    return nodes, tuple(mapping.get(o, o) for o in outputs)


def const_value(graph: Graph, params: dict, name: str) -> np.ndarray | None:
    if name in graph.inputs or graph.node(name).op != "constant":
        return None
    return np.asarray(params[name]["value"])


def shape_map(graph: Graph) -> dict[str, tuple[int, ...] | None]:
    shapes = dict(zip(graph.inputs, graph.input_shapes or (None,) * len(graph.inputs), strict=True))
    shapes.update((n.name, n.shape) for n in graph.nodes)
    return shapes


def renamed(
    graph: Graph, replace: dict[str, Node], drop: set[str], params: dict | None = None
) -> tuple[Graph, dict]:
    """``graph`` with nodes replaced and ``drop`` removed; returns it and ``params`` re-keyed.

    ``replace`` maps an old node name to its new node; the new node is named after its own
    ``name`` when that differs from the old one (a module name), else after its op, made
    unique. ``params`` entries of replaced nodes move to the new names.
    """
    names = Names(set(graph.inputs) | {n.name for n in graph.nodes} - set(replace) - drop)
    rename = {
        old: names.new(node.name if node.name != old else node.op) for old, node in replace.items()
    }
    nodes = [
        replace[n.name].replace(name=rename[n.name]) if n.name in replace else n
        for n in graph.nodes
        if n.name not in drop
    ]
    nodes, outputs = rewire(nodes, rename, graph.outputs)
    out = dict(params or {})
    for old, new in rename.items():
        if old in out:
            out[new] = out.pop(old)
    return graph.replace(nodes=tuple(nodes), outputs=outputs), out
