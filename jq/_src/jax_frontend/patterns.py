"""Compositions JAX inlines that the pipeline must see as one op: softmax, GELU (tanh and erf
forms), layer norm (Flax's fast and two-pass variance). Quantizing their pieces (an exp, a
variance, an rsqrt) at 8 bits each would wreck accuracy; as one op each is quantized once
(softmax bounded to ``[0, 1]``, GELU shift-negative corrected) as in a PyTorch graph.

A match is accepted only if every matched node but the last is read by matched nodes alone
(and is not an output), and broadcasts of reduced values put each axis back where it came
from (:meth:`View.broadcast_of`), so a rewrite never changes what the graph computes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from ..graph.graph import Graph, Node
from .edit import const_value, reader_map, renamed, shape_map
from .naming import module_of

GELU_TANH = (0.5, 1.0, 0.7978845834732056, 0.044714998453855515)
SQRT_HALF = 0.7071067690849304


class Match(NamedTuple):
    """A recognised composition: ``node`` takes the place of node ``last`` and the nodes
    ``absorbed`` go; ``params`` are the new node's (``None``: none)."""

    node: Node
    last: str
    absorbed: tuple[str, ...]
    params: dict | None = None


class View:
    """Read-only queries on a graph for the matchers."""

    def __init__(self, graph: Graph, params: dict) -> None:
        self.graph, self.params = graph, params
        self.readers = reader_map(graph)
        self.shapes = shape_map(graph)

    def node(self, name: str | None, op: str | None = None) -> Node | None:
        if name is None or name in self.graph.inputs:
            return None
        n = self.graph.node(name)
        return n if op is None or n.op == op else None

    def scalar(self, name: str | None, op: str, value: float) -> Node | None:
        """Node ``name`` if it is ``op`` of one tensor and the scalar ``value``."""
        n = self.node(name, op)
        if n is None or len(n.inputs) != 1:
            return None
        s = n.attr("scalar", None)
        return n if s is not None and np.isclose(s, value, rtol=1e-6, atol=0) else None

    def const(self, name: str) -> np.ndarray | None:
        """The value of a ``constant`` node (through an ``expand`` of one), else ``None``."""
        n = self.node(name)
        if n is not None and n.op == "expand":
            c = self.const(n.inputs[0])
            return None if c is None else np.broadcast_to(c, n.attr("shape"))
        return const_value(self.graph, self.params, name) if n is not None else None

    def closed(self, nodes: Iterable[Node], last: Node) -> bool:
        """Every node but ``last`` is read only by ``nodes`` and is not a graph output."""
        names = {n.name for n in nodes}
        for n in nodes:
            if n.name == last.name:
                continue
            if n.name in self.graph.outputs:
                return False
            if any(r.name not in names for r in self.readers.get(n.name, [])):
                return False
        return True

    def broadcast_of(self, name: str, axes: tuple[int, ...], full: tuple[int, ...]):
        """``(source, chain)``: follow ``name`` back through reshape / permute / expand nodes
        to a value reduced over ``axes`` of a value of shape ``full``. ``source`` is ``""``
        unless the chain puts every kept axis back in its place (the reduced ones size 1)."""
        chain: list[Node] = []
        n = self.node(name)
        while n is not None and n.op in ("reshape", "permute", "expand"):
            chain.append(n)
            n = self.node(n.inputs[0])
        src = chain[-1].inputs[0] if chain else name
        labels: list[int | None] | None = [i for i in range(len(full)) if i not in axes]
        none: list[int | None] = [None]
        shape = self.shapes.get(src)
        for c in reversed(chain):
            if labels is None or shape is None or c.shape is None:
                return "", chain
            if c.op == "permute":
                labels = [labels[d] for d in c.attr("dims")]
            elif c.op == "reshape":
                labels = _relabel(labels, shape, c.shape)
            else:  # expand: leading axes may be added
                labels = none * (len(c.shape) - len(labels)) + labels
            shape = c.shape
        ok = labels is not None and len(labels) == len(full)
        for i, lab in enumerate(labels or ()):
            ok = ok and (lab is None if i in axes else lab == i or (lab is None and full[i] == 1))
        return (src if ok else ""), chain


def _relabel(labels, old: tuple[int, ...], new: tuple[int, ...]) -> list | None:
    """Axis labels after a reshape that only adds or removes unit axes (``None`` otherwise)."""
    kept = [(lab, d) for lab, d in zip(labels, old, strict=True) if d != 1]
    if [d for _, d in kept] != [d for d in new if d != 1]:
        return None
    it = iter(lab for lab, _ in kept)
    return [next(it) if d != 1 else None for d in new]


def _in(n: Node | None, i: int = 0) -> str | None:
    """Input ``i`` of ``n`` (``None`` when there is no node)."""
    return n.inputs[i] if n is not None and len(n.inputs) > i else None


def _gelu_tanh(v: View, m: Node) -> Match | None:
    """``x * 0.5 * (1 + tanh(0.79788 * (x + 0.044715 * x**3)))`` (jax.nn.gelu's default)."""
    half, one, c1, c2 = GELU_TANH
    for x, h in (m.inputs, m.inputs[::-1]) if len(m.inputs) == 2 else ():
        n1 = v.scalar(h, "mul", half)
        n2 = v.scalar(_in(n1), "add", one)
        n3 = v.node(_in(n2), "tanh")
        n4 = v.scalar(_in(n3), "mul", c1)
        n5 = v.node(_in(n4), "add")
        if n5 is None or len(n5.inputs) != 2 or x not in n5.inputs:
            continue
        n6 = v.scalar(n5.inputs[1] if n5.inputs[0] == x else n5.inputs[0], "mul", c2)
        n7 = v.node(_in(n6), "integer_pow")
        if n7 is None or n7.attr("y") != 3 or n7.inputs != (x,):
            continue
        inner = [n for n in (n1, n2, n3, n4, n5, n6, n7, m) if n is not None]
        if len(inner) == 8 and v.closed(inner, m):
            node = Node(m.name, "gelu", (x,), {"approximate": "tanh"}, m.shape)
            return Match(node, m.name, tuple(n.name for n in inner[:-1]))
    return None


def _gelu_erf(v: View, m: Node) -> Match | None:
    """``(0.5 * x) * erfc(-x * 0.70711)`` (jax.nn.gelu(approximate=False))."""
    for b, e in (m.inputs, m.inputs[::-1]) if len(m.inputs) == 2 else ():
        n1 = v.scalar(b, "mul", 0.5)
        n2 = v.node(e, "erfc")
        n3 = v.scalar(_in(n2), "mul", SQRT_HALF)
        n4 = v.node(_in(n3), "neg")
        if n1 is None or n4 is None or n4.inputs != n1.inputs:
            continue
        inner = [n for n in (n1, n2, n3, n4, m) if n is not None]
        if len(inner) == 5 and v.closed(inner, m):
            node = Node(m.name, "gelu", n1.inputs, {"approximate": "none"}, m.shape)
            return Match(node, m.name, tuple(n.name for n in inner[:-1]))
    return None


def _softmax(v: View, d: Node) -> Match | None:
    """``e / sum(e)`` with ``e = exp(x - max(x))`` over one axis (jax.nn.softmax)."""
    if len(d.inputs) != 2:
        return None
    e = v.node(d.inputs[0], "exp")
    u = v.node(_in(e), "sub")
    shape = v.shapes.get(d.name)
    if e is None or u is None or len(u.inputs) != 2 or shape is None:
        return None
    total = v.node(d.inputs[1])
    src, s_chain = v.broadcast_of(d.inputs[1], _axes_of(v, d.inputs[1]), shape)
    t = v.node(src, "reduce_sum")
    if t is None or t.inputs != (e.name,) or len(t.attr("axes")) != 1 or total is None:
        return None
    axes = t.attr("axes")
    x, m = u.inputs
    src, m_chain = v.broadcast_of(m, axes, shape)
    mx = v.node(src)
    extra = []
    if mx is not None and mx.op == "maximum" and mx.attr("scalar", None) == -float("inf"):
        extra.append(mx)
        mx = v.node(mx.inputs[0])
    if mx is None or mx.op != "reduce_max" or mx.inputs != (x,) or mx.attr("axes") != axes:
        return None
    inner = [e, u, t, mx, *extra, *s_chain, *m_chain, d]
    masked = _masked(v, x)
    if masked is not None and v.closed([masked[0], *inner], d):
        sel, fill = masked
        attrs = {"axis": axes[0], "fill": fill}
        node = Node(d.name, "masked_softmax", (sel.inputs[2], sel.inputs[0]), attrs, d.shape)
        return Match(node, d.name, tuple(n.name for n in [sel, *inner[:-1]]))
    if not v.closed(inner, d):
        return None
    node = Node(d.name, "softmax", (x,), {"axis": axes[0]}, d.shape)
    return Match(node, d.name, tuple(n.name for n in inner[:-1]))


def _masked(v: View, x: str) -> tuple[Node, float] | None:
    """``(select_n node, fill)`` if ``x`` is ``where(mask, scores, fill)`` with one very
    negative fill (``jnp.finfo.min`` or ``-inf``: Flax's attention masking)."""
    sel = v.node(x, "select_n")
    if sel is None or len(sel.inputs) != 3:
        return None
    fill = v.const(sel.inputs[1])
    if fill is None or fill.size == 0 or not np.all(fill == fill.flat[0]):
        return None
    value = float(fill.flat[0])
    return (sel, value) if value <= -1e30 else None


def _axes_of(v: View, name: str) -> tuple[int, ...]:
    """The reduced axes of the reduction at the top of a broadcast chain from ``name`` (for a
    fast variance ``relu(mean(x**2) - ...)``, its mean's)."""
    n = v.node(name)
    while n is not None and n.op in ("reshape", "permute", "expand"):
        n = v.node(n.inputs[0])
    if n is not None and n.op == "relu":
        s = v.node(n.inputs[0], "sub")
        n = v.node(s.inputs[0]) if s is not None else None
    if n is not None and n.op == "mean":
        return tuple(n.attr("axis"))
    return tuple(n.attr("axes")) if n is not None and n.op.startswith("reduce_") else ()


def _variance(v: View, name: str, axes, full) -> tuple[str, Node, list[Node]] | None:
    """``(x, mean(x), nodes)`` if ``name`` is the variance of ``x`` over ``axes``: Flax's fast
    form ``relu(mean(x**2) - mean(x)**2)`` or the two-pass ``mean((x - mean(x))**2)``."""
    r = v.node(name, "relu")
    s = v.node(_in(r), "sub")
    if r is not None and s is not None and len(s.inputs) == 2:
        m2, sq = v.node(s.inputs[0], "mean"), v.node(s.inputs[1], "square")
        x2 = v.node(_in(m2), "square")
        mx = v.node(_in(sq), "mean")
        if x2 and mx and m2 and sq and x2.inputs == mx.inputs and _reduces(m2, axes):
            if _reduces(mx, axes):
                return x2.inputs[0], mx, [r, s, m2, sq, x2]
    m2 = v.node(name, "mean")
    sq = v.node(_in(m2), "square")
    c = v.node(_in(sq), "sub")
    if m2 is None or sq is None or c is None or not _reduces(m2, axes) or len(c.inputs) != 2:
        return None
    src, chain = v.broadcast_of(c.inputs[1], axes, full)
    mx = v.node(src, "mean")
    if mx is None or mx.inputs != (c.inputs[0],) or not _reduces(mx, axes):
        return None
    return c.inputs[0], mx, [m2, sq, c, *chain]


def _reduces(n: Node, axes) -> bool:
    return tuple(n.attr("axis", ())) == tuple(axes) and not n.attr("keepdims", False)


def _layer_norm(v: View, o: Node) -> Match | None:
    """``(x - mean) * rsqrt(var + eps) [* scale] [+ bias]`` over trailing axes (Flax's
    LayerNorm), starting from its ``rsqrt``."""
    a = v.node(o.inputs[0], "add")
    readers = v.readers.get(o.name, [])
    shape = v.shapes.get(readers[0].name) if len(readers) == 1 else None
    if a is None or len(a.inputs) != 1 or a.attr("scalar", None) is None or shape is None:
        return None
    eps, ndim = a.attr("scalar"), len(shape)
    axes = _axes_of(v, a.inputs[0])
    if not axes or axes != tuple(range(ndim - len(axes), ndim)):
        return None
    src, var_chain = v.broadcast_of(a.inputs[0], axes, shape)
    var = _variance(v, src, axes, shape) if src else None
    if var is None:
        return None
    x, mean, var_nodes = var
    inner: list[Node] = [o, a, *var_chain, *var_nodes, mean]
    norm_shape = tuple(shape[-len(axes) :])
    step: Node | None = readers[0]
    scale = np.ones(norm_shape, np.float32)
    if step is not None and step.op == "mul" and step.inputs[0] == o.name and len(step.inputs) == 2:
        c, cn = v.const(step.inputs[1]), v.node(step.inputs[1])
        if c is None or cn is None or c.size != np.prod(norm_shape):
            return None
        scale, inner = c.reshape(norm_shape), inner + [step, cn]
        nxt = v.readers.get(step.name, [])
        step = nxt[0] if len(nxt) == 1 else None
    if step is None or step.op != "mul" or len(step.inputs) != 2:
        return None
    xc = v.node(step.inputs[0], "sub")
    if xc is None or len(xc.inputs) != 2 or xc.inputs[0] != x:
        return None
    msrc, m_chain = v.broadcast_of(xc.inputs[1], axes, shape)
    if msrc != mean.name:
        return None
    inner += [xc, *m_chain, step]
    last, bias = step, np.zeros(norm_shape, np.float32)
    add = v.readers.get(step.name, [])
    if len(add) == 1 and add[0].op == "add" and len(add[0].inputs) == 2:
        c = v.const(add[0].inputs[1]) if add[0].inputs[0] == step.name else None
        cn = v.node(add[0].inputs[1])
        if c is not None and cn is not None and c.size == np.prod(norm_shape):
            last, bias = add[0], c.reshape(norm_shape)
            inner += [cn, last]
    if not v.closed(inner, last):
        return None
    owner = module_of([n.name for n in inner if n.op == "constant"]) or last.name
    params = {"weight": scale.astype(np.float32), "bias": bias.astype(np.float32)}
    attrs = {"normalized_shape": norm_shape, "eps": float(eps)}
    pshapes = {k: p.shape for k, p in params.items()}
    node = Node(owner, "layer_norm", (x,), attrs, last.shape, pshapes)
    return Match(node, last.name, tuple(n.name for n in inner if n.name != last.name), params)


_MATCHERS = (("mul", (_gelu_tanh, _gelu_erf)), ("div", (_softmax,)), ("rsqrt", (_layer_norm,)))


def compositions(graph: Graph, params: dict) -> tuple[Graph, dict]:
    """Replace every softmax, GELU and layer norm JAX inlined by one node (see module doc)."""
    v = View(graph, params)
    params = dict(params)
    replace: dict[str, Node] = {}
    drop: set[str] = set()
    for n in graph.nodes:
        matchers = [f for op, fs in _MATCHERS if n.op == op for f in fs]
        for match in matchers if n.name not in drop else ():
            m = match(v, n)
            if m is None or drop & {m.last, *m.absorbed} or m.last in replace:
                continue
            replace[m.last] = m.node
            drop.update(m.absorbed)
            if m.params is not None:
                params[m.last] = m.params
            break
    return renamed(graph, replace, drop, params)
