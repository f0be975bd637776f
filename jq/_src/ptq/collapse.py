"""Linear and residual collapsing on jq graphs: MCT 2.6.1's ``Conv2DCollapsing`` and
``ResidualCollapsing`` (``core/common/substitutions/{linear,residual}_collapsing.py`` with the
PyTorch functions of ``core/pytorch/graph_substitutions/substitutions/``), pre-statistics
rewrites that MCT runs after batch-norm folding, linear first, when ``linear_collapsing`` /
``residual_collapsing`` are on (its defaults).

* **Linear**: a 2-D ``conv`` (any kernel) read only by a 1x1 2-D ``conv`` becomes one conv,
  ``W = W2 @ W1`` over the middle channels and ``b = W2 @ b1 + b2``, when both have stride 1,
  dilation 1 and one group, the 1x1 conv pads nothing, and the merged kernel has no more
  scalars than the two together (MCT's conditions). The merged conv has the first conv's
  padding and is named ``"{first}_{second}_collapsed"``; no quantizer remains between the two.
* **Residual**: ``conv(x) + x`` or ``x + conv(x)``, the conv read only by the add, becomes the
  conv with 1 added to its kernel's centre tap of channel ``i`` -> ``i``, named
  ``"{conv}_{add}_collapsed"``.

Both are exact up to rounding: the merged kernel and bias are computed in float64 and rounded
once to the kernel's dtype (in compat mode summed in float32 as MCT sums them); the collapsed
graph's outputs equal the original's within float32 rounding of the reordered sums (``rtol``
about 1e-5). The residual kernel differs from the original by one float add per channel, the
same rounding as MCT's ``kernel[i, i, h, w] += 1``.

MCT collapses over the edges of its graph in node order, again after each collapse, with the
merged node appended at the end (``linear_collapsing_substitute``): chains of 1x1 convs merge
in MCT's order and get MCT's names (``a_b_collapsed_c_d_collapsed_collapsed``; MCT names a
conv that absorbed a batch norm ``conv_bn``, jq keeps ``conv``). A node read twice or
a graph output is never collapsed away. MCT also skips a module called twice (a reused
node); a jq graph holds such a module as two nodes, each collapsed on its own.

Where MCT 2.6.1 cannot run, jq collapses exactly instead (both modes; nothing to keep parity
with): a first conv with a non-square kernel (MCT's identity probe pads the wrong axes and
raises), a grouped or depthwise conv in a residual (``kernel[i, i]`` indexes past
``in/groups``). Residuals MCT rewrites into a different function are left alone: a conv whose
output shape or channels differ from ``x``'s (a broadcast add), or whose centre tap does not
read ``x`` at the same position (even kernels with dilation > 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np

from ..graph.graph import Graph, Node
from .fold import rename_inputs


class Collapse(NamedTuple):
    """One collapse.

    Attributes:
      name: the merged conv (a new node).
      sources: the nodes it replaces, in graph order (two convs, or a conv and an add).
      kind: ``"linear"`` or ``"residual"``.
    """

    name: str
    sources: tuple[str, str]
    kind: str


Rewrite = tuple[Graph, dict, tuple[Collapse, ...]]


def _conv2d(graph: Graph, name: str) -> Node | None:
    """The 2-D ``conv`` node called ``name`` (MCT matches ``nn.Conv2d`` only), else None."""
    if name in graph.inputs:
        return None
    node = graph.node(name)
    return node if node.op == "conv" and len(node.attr("stride")) == 2 else None


def _sole_reader(graph: Graph, name: str, reader: str) -> bool:
    """Whether ``reader`` is the only node reading ``name`` (once) and ``name`` is no output."""
    readers = graph.consumers(name)
    return (
        name not in graph.outputs
        and len(readers) == 1
        and readers[0].name == reader
        and readers[0].inputs.count(name) == 1
    )


def _unique(graph: Graph, base: str) -> str:
    taken = set(graph.inputs) | {n.name for n in graph.nodes}
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def _replace(
    graph: Graph, params: dict, old: tuple[str, str], new: Node, p: dict
) -> tuple[Graph, dict]:
    """``graph`` with node ``new`` (params ``p``) in place of ``old[0]``, ``old[1]`` removed
    and its readers (and the outputs) reading ``new``."""
    new = new.replace(param_shapes={k: tuple(v.shape) for k, v in p.items()})
    nodes = [new if n.name == old[0] else n for n in graph.nodes if n.name != old[1]]
    mapping = {old[1]: new.name}
    outputs = tuple(mapping.get(o, o) for o in graph.outputs)
    params = {k: v for k, v in params.items() if k not in old}
    params[new.name] = p
    return graph.replace(nodes=tuple(rename_inputs(nodes, mapping)), outputs=outputs), params


# -- linear collapsing ------------------------------------------------------------------------


def _linear_ok(first: Node, second: Node, w1, w2) -> bool:
    """MCT's ``Conv2DCollapsing`` conditions (stride/dilation 1, one group, a 1x1 second conv
    without padding, no more kernel scalars after the merge)."""
    ones = (1, 1)
    plain = all(
        n.attr("stride") == ones and n.attr("dilation") == ones and n.attr("groups") == 1
        for n in (first, second)
    )
    unpadded = all(lo == hi == 0 for lo, hi in second.attr("padding"))
    merged = w2.shape[0] * int(np.prod(w1.shape[1:]))
    return plain and unpadded and tuple(w2.shape[2:]) == ones and merged <= w1.size + w2.size


def merge_linear(p1: Mapping, p2: Mapping, *, mct_compat: bool = False) -> dict:
    """The params of ``conv2(conv1(x))`` as one conv (conv2 1x1, stride 1, one group).

    Args:
      p1: ``weight`` (M, I, kh, kw), optional ``bias`` (M,).
      p2: ``weight`` (O, M, 1, 1), optional ``bias`` (O,).
      mct_compat: sum the products in the kernels' dtype with NumPy's matmul, as MCT's torch
        convolution of an identity image does (the two kernels agree bit for bit on most
        shapes measured, not all); otherwise in float64, rounded once.

    Returns:
      ``{"weight": (O, I, kh, kw)[, "bias": (O,)]}``: ``W2 @ W1`` and ``W2 @ b1 + b2`` (either
      bias alone, or none), in the kernels' dtype.
    """
    w1, w2 = np.asarray(p1["weight"]), np.asarray(p2["weight"])
    dtype = np.result_type(w1, w2)
    work = dtype if mct_compat else np.float64
    k2 = w2[:, :, 0, 0].astype(work)
    weight = k2 @ w1.reshape(w1.shape[0], -1).astype(work)
    out = {"weight": weight.reshape((k2.shape[0],) + w1.shape[1:])}
    bias = None
    if "bias" in p1:
        bias = k2 @ np.asarray(p1["bias"], work)
    if "bias" in p2:
        b2 = np.asarray(p2["bias"], work)
        bias = b2 if bias is None else bias + b2
    if bias is not None:
        out["bias"] = bias
    return {k: jax.device_put(v.astype(dtype)) for k, v in out.items()}


def _linear_edges(graph: Graph, rank: Mapping[str, int]) -> list[tuple[str, str]]:
    """``(conv, conv)`` edges in MCT's order (by the source's place in MCT's node list)."""
    edges = [
        (n.inputs[0], n.name)
        for n in graph.nodes
        if _conv2d(graph, n.name) and _conv2d(graph, n.inputs[0])
    ]
    return sorted(edges, key=lambda e: rank[e[0]])


def _try_linear(graph: Graph, params: dict, a: str, b: str, mct_compat: bool) -> Rewrite | None:
    """Collapse conv ``a`` into the conv ``b`` that reads it, or None where MCT would not."""
    first, second = graph.node(a), graph.node(b)
    p1, p2 = params[a], params[b]
    if not (_sole_reader(graph, a, b) and _linear_ok(first, second, p1["weight"], p2["weight"])):
        return None
    name = _unique(graph, f"{a}_{b}_collapsed")
    merged = first.replace(name=name, shape=second.shape)
    graph, params = _replace(
        graph, params, (a, b), merged, merge_linear(p1, p2, mct_compat=mct_compat)
    )
    return graph, params, (Collapse(name, (a, b), "linear"),)


def collapse_linear(graph: Graph, params: Mapping, *, mct_compat: bool = False) -> Rewrite:
    """Collapse every 2-D conv followed by a 1x1 conv that MCT 2.6.1 collapses (module doc).

    Each ``(conv, conv)`` edge is tried once, in MCT's order; a merged node is tried again
    with its new neighbours (it comes last in MCT's node order).

    Args:
      graph: the float graph (batch norms folded); conv kernels ``(out, in/groups, kh, kw)``.
      params: its params (not modified).
      mct_compat: merged kernels summed as MCT sums them (:func:`merge_linear`).

    Returns:
      ``(graph, params, collapses)``: new graph and params (untouched entries shared) and a
      :class:`Collapse` per merge, in the order made.

    Example:
      >>> import numpy as np, jq
      >>> conv = dict(stride=(1, 1), dilation=(1, 1), groups=1)
      >>> g = jq.Graph(("x",), (
      ...     jq.Node("a", "conv", ("x",), {**conv, "padding": ((1, 1), (1, 1))}),
      ...     jq.Node("b", "conv", ("a",), {**conv, "padding": ((0, 0), (0, 0))})), ("b",))
      >>> p = {"a": {"weight": np.ones((4, 4, 3, 3), np.float32)},
      ...      "b": {"weight": np.ones((4, 4, 1, 1), np.float32)}}
      >>> g2, p2, done = collapse_linear(g, p)
      >>> [n.name for n in g2.nodes], done[0].sources
      (['a_b_collapsed'], ('a', 'b'))
    """
    params = dict(params)
    rank = {n.name: i for i, n in enumerate(graph.nodes)}
    tried: set[tuple[str, str]] = set()
    done: list[Collapse] = []
    while True:
        edge = next((e for e in _linear_edges(graph, rank) if e not in tried), None)
        if edge is None:
            return graph, params, tuple(done)
        tried.add(edge)
        out = _try_linear(graph, params, *edge, mct_compat)
        if out is not None:
            graph, params, (c,) = out
            rank[c.name] = len(rank)
            done.append(c)


# -- residual collapsing ----------------------------------------------------------------------


def _centre(conv: Node, w) -> tuple[int, ...] | None:
    """The kernel tap that reads ``x`` at the output's own position when the conv keeps
    ``x``'s shape and channels (MCT's ``(k - 1) // 2``), else None."""
    cout, cin_g, *kernel = w.shape
    groups = conv.attr("groups")
    if cout != cin_g * groups or any(s != 1 for s in conv.attr("stride")):
        return None
    taps = []
    for k, d, (lo, hi) in zip(kernel, conv.attr("dilation"), conv.attr("padding"), strict=True):
        t = (k - 1) // 2
        if t * d != lo or lo + hi != d * (k - 1):
            return None
        taps.append(t)
    return tuple(taps)


def add_identity(w, tap: tuple[int, ...], groups: int):
    """``w`` (out, in/groups, *kernel) + 1 at ``tap`` of each channel ``i -> i`` (in the
    kernel's dtype): a conv of ``x`` plus ``x``, for convs that keep ``x``'s channels."""
    w = np.array(w)
    out = np.arange(w.shape[0])
    w[(out, out % w.shape[1]) + tap] += 1
    return jax.device_put(w)


def _residual_conv(graph: Graph, add: Node) -> str | None:
    """The conv of ``add = conv(x) + x`` (either order) that MCT collapses, else None."""
    if add.op != "add" or len(add.inputs) != 2 or add.attr("scalar", None) is not None:
        return None
    for i, c in enumerate(add.inputs):
        conv = _conv2d(graph, c)
        if conv is not None and conv.inputs[0] == add.inputs[1 - i]:
            return c if _sole_reader(graph, c, add.name) else None
    return None


def collapse_residual(graph: Graph, params: Mapping) -> Rewrite:
    """Collapse every ``conv(x) + x`` / ``x + conv(x)`` that MCT 2.6.1 collapses (module doc),
    in graph order.

    Args:
      graph: the float graph (after :func:`collapse_linear` when both run, as in MCT).
      params: its params (not modified).

    Returns:
      ``(graph, params, collapses)`` as :func:`collapse_linear`.
    """
    params = dict(params)
    done: list[Collapse] = []
    for name in [n.name for n in graph.nodes if n.op == "add"]:
        add = graph.node(name)  # its inputs as rewritten so far
        c = _residual_conv(graph, add)
        if c is None:
            continue
        conv, p = graph.node(c), dict(params[c])
        tap = _centre(conv, p["weight"])
        if tap is None:
            continue
        p["weight"] = add_identity(p["weight"], tap, conv.attr("groups"))
        merged = _unique(graph, f"{c}_{name}_collapsed")
        graph, params = _replace(graph, params, (c, name), conv.replace(name=merged), p)
        done.append(Collapse(merged, (c, name), "residual"))
    return graph, params, tuple(done)
