"""Graph passes over a freshly converted graph: the compositions users think of as one layer.

- :func:`fold_biases`: ``conv`` / ``linear`` then ``add`` of a per-output-channel constant is
  the layer's bias (Flax adds biases as a separate broadcast add).
- :func:`batch_norms`: ``(x - mean) * mul + bias`` with per-channel constants on axis 1 (Flax's
  inference batch norm once ``rsqrt(var + eps) * scale`` is evaluated) is a ``batch_norm`` node,
  so the pipeline folds it into the conv before it as MCT does.
- :func:`means`, :func:`softmaxes`: ``jnp.mean`` and ``jax.nn.softmax`` as JAX inlines them
  (a sum and a division; max, exp, sum, division) are one ``mean`` / ``softmax`` node, which
  the pipeline quantizes once (and bounds to ``[0, 1]``).
- :func:`prune`: drop nodes nothing reads (constants absorbed by the passes above).

Each pass is ``(graph, params) -> (graph, params)``; nodes keep their order.
"""

from __future__ import annotations

import numpy as np

from ..graph.graph import Graph, Node
from .naming import Names, module_of


def _readers(graph: Graph) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def _channel_vector(value: np.ndarray, ndim: int, axis: int) -> np.ndarray | None:
    """``value`` as a ``(C,)`` vector if it broadcasts along ``axis`` only (rank ``ndim``)."""
    if value.ndim != ndim:
        return None
    if any(d != 1 for i, d in enumerate(value.shape) if i != axis % ndim):
        return None
    return value.reshape(-1)


def _rewire(nodes: list[Node], mapping: dict[str, str], outputs: tuple[str, ...]):
    nodes = [
        n.replace(inputs=tuple(mapping.get(i, i) for i in n.inputs))
        if any(i in mapping for i in n.inputs)
        else n
        for n in nodes
    ]
    return nodes, tuple(mapping.get(o, o) for o in outputs)


def _const(graph: Graph, params: dict, name: str) -> np.ndarray | None:
    if name in graph.inputs or graph.node(name).op != "constant":
        return None
    return np.asarray(params[name]["value"])


def fold_biases(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Absorb ``add(layer, constant)`` into the layer's ``bias`` (see module docstring)."""
    readers = _readers(graph)
    params = dict(params)
    drop: dict[str, str] = {}  # add node -> the layer it folds into
    for n in graph.nodes:
        if n.op not in ("conv", "linear") or "bias" in params.get(n.name, {}):
            continue
        users = readers.get(n.name, [])
        if len(users) != 1 or users[0].op != "add" or len(users[0].inputs) != 2:
            continue
        add = users[0]
        other = add.inputs[1] if add.inputs[0] == n.name else add.inputs[0]
        value = _const(graph, params, other)
        if value is None or n.shape is None or n.name in graph.outputs:
            continue
        axis = 1 if n.op == "conv" else -1
        vec = _channel_vector(value, len(n.shape), axis)
        if vec is None or vec.shape[0] != n.shape[axis]:
            continue
        params[n.name] = {**params[n.name], "bias": vec.astype(np.float32)}
        drop[add.name] = n.name
    nodes = [
        n.replace(param_shapes={k: v.shape for k, v in params[n.name].items()})
        if n.name in drop.values()
        else n
        for n in graph.nodes
        if n.name not in drop
    ]
    nodes, outputs = _rewire(nodes, drop, graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs), params


def _chain_step(graph, params, readers, value: str, op: str, ndim: int):
    """The single reader of ``value`` if it is ``op(value, per-channel constant on axis 1)``;
    ``(node, vector)`` or ``None``."""
    users = readers.get(value, [])
    if len(users) != 1 or value in graph.outputs:
        return None
    n = users[0]
    if n.op != op or len(n.inputs) != 2 or n.inputs[0] != value:
        return None
    c = _const(graph, params, n.inputs[1])
    vec = None if c is None else _channel_vector(c, ndim, 1)
    return None if vec is None else (n, vec)


def batch_norms(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Turn ``sub(x, mean) -> mul(., s) [-> add(., b)]`` per-channel chains into
    ``batch_norm`` nodes (``eps=0``, ``running_var=1``, ``weight=s``: exact)."""
    readers = _readers(graph)
    params = dict(params)
    replace: dict[str, Node] = {}  # last node of a chain -> the batch_norm node
    drop: set[str] = set()
    rename: dict[str, str] = {}
    taken = {n.name for n in graph.nodes} | set(graph.inputs)
    for x in graph.nodes:
        if x.shape is None or len(x.shape) < 2:
            continue
        ndim = len(x.shape)
        sub = _chain_step(graph, params, readers, x.name, "sub", ndim)
        mul = sub and _chain_step(graph, params, readers, sub[0].name, "mul", ndim)
        if not (sub and mul):
            continue
        chain = [sub, mul]
        add = _chain_step(graph, params, readers, mul[0].name, "add", ndim)
        if add:
            chain.append(add)
        consts = [c.inputs[1] for c, _ in chain]
        mean, scale = sub[1], mul[1]
        bias = add[1] if add else np.zeros_like(scale)
        last = chain[-1][0]
        name = module_of(consts)
        if not name or name in taken:
            name = last.name
        taken.add(name)
        params[name] = {
            "running_mean": mean.astype(np.float32),
            "running_var": np.ones_like(scale, np.float32),
            "weight": scale.astype(np.float32),
            "bias": bias.astype(np.float32),
        }
        pshapes = {k: v.shape for k, v in params[name].items()}
        replace[last.name] = Node(name, "batch_norm", (x.name,), {"eps": 0.0}, last.shape, pshapes)
        rename[last.name] = name
        drop.update(c.name for c, _ in chain[:-1])
    nodes = [replace.get(n.name, n) for n in graph.nodes if n.name not in drop]
    nodes, outputs = _rewire(nodes, rename, graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs), params


def _shapes(graph: Graph) -> dict[str, tuple[int, ...] | None]:
    shapes = dict(zip(graph.inputs, graph.input_shapes or (None,) * len(graph.inputs), strict=True))
    shapes.update((n.name, n.shape) for n in graph.nodes)
    return shapes


def _only_reader(readers, graph: Graph, name: str, op: str) -> Node | None:
    users = readers.get(name, [])
    if len(users) != 1 or name in graph.outputs or users[0].op != op:
        return None
    return users[0]


def _renamed(graph: Graph, replace: dict[str, Node], drop: set[str]) -> Graph:
    """``graph`` with nodes replaced (each renamed after its new op) and ``drop`` removed."""
    names = Names(set(graph.inputs) | {n.name for n in graph.nodes})
    rename = {old: names.new(node.op) for old, node in replace.items()}
    nodes = [
        replace[n.name].replace(name=rename[n.name]) if n.name in replace else n
        for n in graph.nodes
        if n.name not in drop
    ]
    nodes, outputs = _rewire(nodes, rename, graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs)


def means(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """``reduce_sum(x, axes) / count`` -> ``mean`` (``jnp.mean``, global average pooling)."""
    readers, shapes = _readers(graph), _shapes(graph)
    replace: dict[str, Node] = {}
    drop: set[str] = set()
    for n in graph.nodes:
        div = _only_reader(readers, graph, n.name, "div") if n.op == "reduce_sum" else None
        shape = shapes.get(n.inputs[0]) if div else None
        if div is None or shape is None or div.attr("reverse", True):
            continue
        axes = n.attr("axes")
        if div.attr("scalar", None) != float(np.prod([shape[a] for a in axes])):
            continue
        attrs = {"axis": tuple(axes), "keepdims": False}
        replace[div.name] = Node(div.name, "mean", n.inputs, attrs, div.shape)
        drop.add(n.name)
    return _renamed(graph, replace, drop), params


def _through_shapes(graph: Graph, readers, name: str) -> tuple[str, list[str]]:
    """Follow ``name`` back through single-reader ``reshape`` / ``expand`` nodes."""
    passed = []
    while name not in graph.inputs:
        n = graph.node(name)
        if n.op not in ("reshape", "expand") or len(readers.get(name, [])) != 1:
            break
        passed.append(name)
        name = n.inputs[0]
    return name, passed


def _softmax_at(graph: Graph, readers, div: Node) -> tuple[str, int, list[str]] | None:
    """``(x, axis, nodes replaced)`` if ``div`` ends ``exp(x - max(x)) / sum(exp(...))``."""
    if len(div.inputs) != 2:
        return None
    e, s = div.inputs
    if e in graph.inputs or graph.node(e).op != "exp" or len(readers.get(e, [])) != 2:
        return None
    total, s_chain = _through_shapes(graph, readers, s)
    t = None if total in graph.inputs else graph.node(total)
    if t is None or t.op != "reduce_sum" or t.inputs != (e,) or len(t.attr("axes")) != 1:
        return None
    u = graph.node(graph.node(e).inputs[0]) if graph.node(e).inputs[0] not in graph.inputs else None
    if u is None or u.op != "sub" or len(u.inputs) != 2 or len(readers.get(u.name, [])) != 1:
        return None
    x, m = u.inputs
    top, m_chain = _through_shapes(graph, readers, m)
    mx = None if top in graph.inputs else graph.node(top)
    extra = []
    if mx is not None and mx.op == "maximum" and mx.attr("scalar", None) == -float("inf"):
        extra.append(mx.name)
        mx = graph.node(mx.inputs[0]) if mx.inputs[0] not in graph.inputs else None
    if mx is None or mx.op != "reduce_max" or mx.inputs != (x,):
        return None
    if mx.attr("axes") != t.attr("axes"):
        return None
    replaced = [e, t.name, u.name, mx.name] + s_chain + m_chain + extra
    return x, t.attr("axes")[0], replaced


def softmaxes(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """``exp(x - max(x)) / sum(exp(x - max(x)))`` over one axis -> ``softmax``
    (``jax.nn.softmax`` as JAX inlines it)."""
    readers = _readers(graph)
    replace: dict[str, Node] = {}
    drop: set[str] = set()
    for n in graph.nodes:
        found = _softmax_at(graph, readers, n) if n.op == "div" else None
        if found:
            x, axis, replaced = found
            replace[n.name] = Node(n.name, "softmax", (x,), {"axis": axis}, n.shape)
            drop.update(replaced)
    return _renamed(graph, replace, drop), params


def prune(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Drop nodes that no output depends on (and their params)."""
    live = set(graph.outputs)
    for n in reversed(graph.nodes):
        if n.name in live:
            live.update(n.inputs)
    nodes = tuple(n for n in graph.nodes if n.name in live)
    kept = {n.name for n in nodes}
    return graph.replace(nodes=nodes), {k: v for k, v in params.items() if k in kept}
