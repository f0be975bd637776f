"""Graph passes over a freshly converted graph: the compositions users think of as one layer.

- :func:`reshapes`: a reshape of a reshape read by nothing else is one reshape, and a reshape
  to its input's own shape is none (``jax.vmap`` of a layer written for one example, as
  Equinox's are, reshapes around every op), so a conv's bias add follows the conv.
- :func:`fold_biases`: ``conv`` / ``linear`` then ``add`` of a per-output-channel constant is
  the layer's bias (Flax adds biases as a separate broadcast add).
- :func:`batch_norms`: ``(x - mean) * mul + bias`` with per-channel constants on axis 1 (Flax's
  inference batch norm once ``rsqrt(var + eps) * scale`` is evaluated) is a ``batch_norm`` node,
  so the pipeline folds it into the conv before it as MCT does.
- :func:`means`: ``jnp.mean`` as JAX inlines it (a sum and a division) is one ``mean`` node.
- :func:`avg_pools`: a sum ``reduce_window`` divided by the window's element counts (Flax's
  ``avg_pool``, with or without ``count_include_pad``) is one ``avg_pool`` node, quantized once
  and looked through by shift-negative correction as MCT does.
- :func:`flattens`: a flatten of a channels-first stored value into a ``linear`` (Flax's
  ``x.reshape(n, -1)`` of an NHWC value) reshapes the stored value and permutes the linear's
  input columns instead, so the graph reads ``silu -> reshape -> linear`` as torch's does.
  Softmax, GELU and layer norm are matched in :mod:`jq._src.jax_frontend.patterns`.
- :func:`prune`: drop nodes nothing reads (constants absorbed by the passes above).

Each pass is ``(graph, params) -> (graph, params)``; nodes keep their order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..graph.graph import Graph, Node
from .edit import (
    channel_vector,
    const_value,
    reader_map,
    renamed,
    rewire,
    shape_map,
)
from .naming import module_of
from .pooling import avg_pool_attrs


def reshapes(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Collapse reshape chains and drop reshapes that keep the shape (see module docstring);
    the reshapes left unread are pruned later."""
    readers, shapes = reader_map(graph), shape_map(graph)
    outputs = set(graph.outputs)
    nodes: dict[str, Node] = {n.name: n for n in graph.nodes}
    same: dict[str, str] = {}  # reshape keeping the shape -> its source
    for n in graph.nodes:
        if n.op != "reshape":
            continue
        src = same.get(n.inputs[0], n.inputs[0])
        inner = nodes.get(src)
        if inner is not None and inner.op == "reshape" and len(readers.get(src, [])) == 1:
            if src not in outputs:
                src = inner.inputs[0]
        if src != n.inputs[0]:
            nodes[n.name] = n = n.replace(inputs=(src,))
        if n.name not in outputs and shapes.get(src) is not None and shapes[src] == n.shape:
            same[n.name] = src
    kept, outs = rewire(list(nodes.values()), same, graph.outputs)
    return graph.replace(nodes=tuple(kept), outputs=outs), params


def _bias_vector(graph: Graph, params: dict, layer: Node, head: Node, add: Node):
    """The bias that ``add`` adds to ``layer``'s output (read as ``head``: the layer, or a
    reshape splitting a linear's output axis), or ``None``."""
    other = add.inputs[1] if add.inputs[0] == head.name else add.inputs[0]
    value = const_value(graph, params, other)
    if value is None or layer.shape is None or head.shape is None:
        return None
    if head is layer:
        axis = 1 if layer.op == "conv" else -1
        vec = channel_vector(value, len(layer.shape), axis)
        return vec if vec is not None and vec.shape[0] == layer.shape[axis] else None
    lead = len(layer.shape) - 1
    split = tuple(head.shape[lead:])
    if tuple(head.shape[:lead]) != tuple(layer.shape[:-1]) or np.prod(split) != layer.shape[-1]:
        return None
    if value.shape != (1,) * lead + split:
        return None
    return value.reshape(-1)


def fold_biases(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Absorb ``add(layer, constant)`` into the layer's ``bias`` (see module docstring); also
    through a reshape that splits a linear's output (``DenseGeneral``: heads, head_dim)."""
    readers = reader_map(graph)
    params = dict(params)
    drop: dict[str, str] = {}  # add node -> what its readers read instead

    def only_reader(name: str) -> Node | None:
        users = readers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph.outputs else None

    for n in graph.nodes:
        if n.op not in ("conv", "linear") or "bias" in params.get(n.name, {}):
            continue
        head = n
        r = only_reader(n.name)
        if n.op == "linear" and r is not None and r.op == "reshape":
            head = r
        add = only_reader(head.name)
        if add is None or add.op != "add" or len(add.inputs) != 2:
            continue
        vec = _bias_vector(graph, params, n, head, add)
        if vec is None:
            continue
        params[n.name] = {**params[n.name], "bias": vec.astype(np.float32)}
        drop[add.name] = head.name
    layers = {n.name for n in graph.nodes if n.op in ("conv", "linear")}
    nodes = [
        n.replace(param_shapes={k: v.shape for k, v in params[n.name].items()})
        if n.name in layers
        else n
        for n in graph.nodes
        if n.name not in drop
    ]
    nodes, outputs = rewire(nodes, drop, graph.outputs)
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
    c = const_value(graph, params, n.inputs[1])
    vec = None if c is None else channel_vector(c, ndim, 1)
    return None if vec is None else (n, vec)


def batch_norms(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Turn ``sub(x, mean) -> mul(., s) [-> add(., b)]`` per-channel chains into
    ``batch_norm`` nodes (``eps=0``, ``running_var=1``, ``weight=s``: exact)."""
    readers = reader_map(graph)
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
    nodes, outputs = rewire(nodes, rename, graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs), params


def _only_reader(readers, graph: Graph, name: str, op: str) -> Node | None:
    users = readers.get(name, [])
    if len(users) != 1 or name in graph.outputs or users[0].op != op:
        return None
    return users[0]


def means(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """``reduce_sum(x, axes) / count`` -> ``mean`` (``jnp.mean``, global average pooling)."""
    readers, shapes = reader_map(graph), shape_map(graph)
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
    return renamed(graph, replace, drop, params)


def _divisor(graph: Graph, params: dict, div: Node) -> np.ndarray | None:
    """What ``div`` divides its first input by: its scalar, or a constant (through an
    ``expand``); ``None`` otherwise."""
    if div.attr("reverse", False):
        return None
    if len(div.inputs) == 1:
        s = div.attr("scalar", None)
        return None if s is None else np.asarray(s, np.float32)
    name = div.inputs[1]
    n = None if name in graph.inputs else graph.node(name)
    if n is not None and n.op == "expand":
        name = n.inputs[0]
    return const_value(graph, params, name)


def avg_pools(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """``reduce_window(sum) -> div`` by torch's window counts -> ``avg_pool`` (see
    :func:`jq._src.jax_frontend.pooling.avg_pool_attrs`), named after the pool's scope."""
    readers, shapes = reader_map(graph), shape_map(graph)
    replace: dict[str, Node] = {}
    drop: set[str] = set()
    for n in graph.nodes:
        div = _only_reader(readers, graph, n.name, "div") if n.op == "reduce_window" else None
        in_shape = shapes.get(n.inputs[0]) if div is not None else None
        if div is None or div.inputs[0] != n.name or in_shape is None or div.shape is None:
            continue
        divisor = _divisor(graph, params, div)
        attrs = (
            None if divisor is None else avg_pool_attrs(n.attrs_dict, in_shape, divisor, div.shape)
        )
        if attrs is None:
            continue
        scope = n.name.rpartition(".")[0]
        name = f"{scope}.avg_pool" if scope else "avg_pool"
        replace[div.name] = Node(name, "avg_pool", n.inputs, attrs, div.shape)
        drop.add(n.name)
    return renamed(graph, replace, drop, params)


def _flatten_columns(stored: tuple[int, ...], dims: tuple[int, ...], lead: int) -> np.ndarray:
    """For a value of shape ``stored`` permuted by ``dims`` (``dims[:lead]`` the identity) and
    flattened after ``lead`` axes: ``idx[j]`` is the position, in the flattened *unpermuted*
    value, of element ``j`` of the flattened permuted one."""
    trailing = stored[lead:]
    idx = np.arange(int(np.prod(trailing))).reshape(trailing)
    return np.transpose(idx, [d - lead for d in dims[lead:]]).reshape(-1)


class _Flatten(NamedTuple):
    """A flatten into a linear: its permute's input and that input's (stored) shape, the
    permute's dims, the linear, and the number of leading axes kept."""

    source: str
    stored: tuple[int, ...]
    dims: tuple[int, ...]
    linear: Node
    lead: int


def _flatten_match(graph: Graph, readers, shapes, r: Node) -> _Flatten | None:
    """The flatten ``r`` is, if it reshapes a permute (which leaves the leading axes in place)
    into a linear's input by merging the trailing axes; else ``None``."""
    p = graph.node(r.inputs[0]) if r.inputs[0] not in graph.inputs else None
    users = readers.get(r.name, [])
    if p is None or p.op != "permute" or len(users) != 1 or r.name in graph.outputs:
        return None
    lin, src_shape = users[0], shapes.get(p.inputs[0])
    if lin.op != "linear" or lin.inputs != (r.name,) or src_shape is None or r.shape is None:
        return None
    lead, dims = len(r.shape) - 1, tuple(p.attr("dims"))
    if lead < 0 or dims[:lead] != tuple(range(lead)) or tuple(r.shape[:lead]) != src_shape[:lead]:
        return None
    return _Flatten(p.inputs[0], tuple(src_shape), dims, lin, lead)


def flattens(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """``permute -> reshape (flatten) -> linear`` -> ``reshape -> linear`` with the linear's
    weight columns permuted to match (exact: the same products, summed in another order).

    A Flax model flattens NHWC (``x.reshape(n, -1)``) a value the converter stores NCHW, so a
    permute sits between the last activation and the dense layer; torch's graph of the same
    network has none. Shift-negative correction looks through reshapes only (MCT's bypass
    ops), so the permute would keep a silu before the dense layer from being corrected."""
    readers, shapes = reader_map(graph), shape_map(graph)
    params = dict(params)
    new: dict[str, Node] = {}
    for r in graph.nodes:
        m = _flatten_match(graph, readers, shapes, r) if r.op == "reshape" else None
        if m is None:
            continue
        idx = _flatten_columns(m.stored, m.dims, m.lead)
        w = np.asarray(params[m.linear.name]["weight"])
        permuted = np.empty_like(w)
        permuted[:, idx] = w
        params[m.linear.name] = {**params[m.linear.name], "weight": permuted}
        new[r.name] = r.replace(inputs=(m.source,))
    nodes = tuple(new.get(n.name, n) for n in graph.nodes)
    return graph.replace(nodes=nodes), params


def prune(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Drop nodes that no output depends on (and their params)."""
    live = set(graph.outputs)
    for n in reversed(graph.nodes):
        if n.name in live:
            live.update(n.inputs)
    nodes = tuple(n for n in graph.nodes if n.name in live)
    kept = {n.name for n in nodes}
    return graph.replace(nodes=nodes), {k: v for k, v in params.items() if k in kept}
