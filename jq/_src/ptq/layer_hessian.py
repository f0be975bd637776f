"""Layer-wise Hessian scores for HMSE: each kernel's inputs' second moments.

A linear layer ``y = W x`` (or a conv, ``x`` its input patch) whose kernel is quantized to
``W + E`` changes its output by ``E x``; the layer's output MSE over the calibration inputs is

    mean_x |E x|^2 = sum_o E_o^T H E_o,   H = mean_x x x^T   (GPTQ's ``H = 2 X X^T``, halved).

Keeping the diagonal of ``H`` gives ``sum_oi E_oi^2 H_ii``: HMSE with the per-element scores
``s_oi = H_ii = mean_x x_i^2``, exact for the layer's output MSE when ``H`` is diagonal (input
features uncorrelated), and in every case the weighting a per-channel search can use. It
costs one forward over the data and no derivatives, against the whole-model estimator
(``hessian.py``: Hutchinson's ``diag(J^T J)`` of the model outputs, up to 100 reverse passes
per sample), but it sees only the layer's own output, not how the model amplifies the error.

Conv kernels ``(O, C / g, *k)``: ``x_i`` is the input patch's tap ``(c, t)``, so ``H_ii`` is
the mean square of input channel ``c`` over the positions tap ``t`` reads (padding zeros
included, as the conv reads them); an output channel of group ``j`` sees channels of group
``j`` only. Linear kernels ``(O, I)``: every row of the input ``(..., I)`` is one ``x``.

The sums are accumulated batch by batch in one compiled program per batch shape: batches are
cut into chunks of the first batch's size, and a remainder smaller than that runs sample by
sample (batch 1), so a data pass compiles at most two programs whatever its batch sizes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..graph.apply import apply
from ..graph.graph import Graph
from ..runtime.jit import jit

Shapes = tuple[tuple[int, ...], ...]


class WeightsHessian(enum.Enum):
    """Where HMSE's kernel scores come from (``QuantizationConfig.weights_hessian``).

    ``MODEL``: the whole model's ``diag(J^T J)`` by Hutchinson draws on calibration samples
    (MCT's estimator, ``hessian.py``). ``LAYER``: each kernel's inputs' second moments over the
    calibration data (this module): the layer's own output MSE, one forward pass.
    """

    MODEL = "model"
    LAYER = "layer"


def parse_weights_hessian(value, where: str) -> WeightsHessian:
    """``value`` (a :class:`WeightsHessian` or its name) as the enum member.

    Raises:
      ValueError: an unknown name, listing the known ones.
    """
    if isinstance(value, WeightsHessian):
        return value
    if isinstance(value, str):
        for member in WeightsHessian:
            if value.lower() == member.value:
                return member
    known = ", ".join(repr(m.value) for m in WeightsHessian)
    raise ValueError(f"{where}: unknown value {value!r}; expected one of {known}")


@dataclasses.dataclass(frozen=True)
class _Layer:
    """How one kernel's input is reduced (static, hashable)."""

    name: str
    inp: str  # the value the layer reads
    op: str  # "linear" | "conv"
    weight_shape: tuple[int, ...]
    attrs: tuple  # the conv's (stride, padding, dilation, groups); () for linear


def plan_layers(graph: Graph, params, layers: Sequence[str], fn: str) -> tuple[_Layer, ...]:
    """One :class:`_Layer` per kernel of ``layers``, checked.

    Raises:
      ValueError: an empty or unknown layer list, a layer without a ``weight``, or a kernel op
        other than ``linear`` (2-D weight) and ``conv`` (the fix is named).
    """
    names = tuple(dict.fromkeys(layers))
    if not names:
        raise ValueError(f"{fn}: layers is empty")
    nodes = {n.name: n for n in graph.nodes}
    missing = [n for n in names if n not in nodes]
    if missing:
        raise ValueError(f"{fn}: layers {missing} are not nodes of the graph")
    no_w = [n for n in names if "weight" not in params.get(n, {})]
    if no_w:
        raise ValueError(f"{fn}: layers {no_w} have no 'weight' param")
    plan, bad = [], []
    for name in names:
        node, w_shape = nodes[name], tuple(np.shape(params[name]["weight"]))
        if node.op == "linear" and len(w_shape) == 2:
            plan.append(_Layer(name, node.inputs[0], "linear", w_shape, ()))
        elif node.op == "conv":
            a = dict(node.attrs)
            attrs = (a["stride"], a["padding"], a["dilation"], a.get("groups", 1))
            plan.append(_Layer(name, node.inputs[0], "conv", w_shape, attrs))
        else:
            bad.append(f"{name!r} ({node.op})")
    if bad:
        raise ValueError(
            f"{fn}: layer-wise Hessian scores cover linear and conv kernels only, not "
            f"{', '.join(bad)}; use the whole-model estimator "
            "(QuantizationConfig(weights_hessian='model')) for them"
        )
    return tuple(plan)


def _conv_sums(layer: _Layer, x):
    """``(sum of squares (C, T), count)`` of a conv's input patches ``x`` (N, C, *spatial):
    tap ``t`` of channel ``c`` summed over the samples and the output positions it feeds."""
    stride, padding, dilation, _ = layer.attrs
    kernel = layer.weight_shape[2:]
    pads = ((0, 0, 0), (0, 0, 0)) + tuple((lo, hi, 0) for lo, hi in padding)
    sq = lax.pad(jnp.square(x.astype(jnp.float32)), jnp.float32(0), pads)
    out = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(sq.shape[2:], kernel, stride, dilation, strict=True)
    ]
    axes = (0,) + tuple(range(2, sq.ndim))
    cols = []
    # One strided slice and sum per tap (row-major kernel order, as weight.reshape(O, C, -1)):
    # never the (C, taps, positions) patch tensor, which is taps times the input's size.
    for tap in itertools.product(*(range(k) for k in kernel)):
        start = [t * d for t, d in zip(tap, dilation, strict=True)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, stride, strict=True)]
        part = lax.slice(sq, [0, 0, *start], [*sq.shape[:2], *limit], [1, 1, *stride])
        cols.append(jnp.sum(part, axis=axes))
    return jnp.stack(cols, axis=1), jnp.float32(x.shape[0] * math.prod(out))


def _linear_sums(x):
    """``(sum of squares (I,), count)`` over the rows of a linear layer's input (..., I)."""
    rows = jnp.reshape(x.astype(jnp.float32), (-1, x.shape[-1]))
    return jnp.sum(jnp.square(rows), axis=0), jnp.float32(rows.shape[0])


@functools.partial(jit, static_argnames=("graph", "plan"))
def _batch_sums(params, xs, acc, *, graph: Graph, plan: tuple[_Layer, ...]):
    """``acc`` plus one batch's per-layer ``(sum of squares, count)`` (one forward)."""
    caps = tuple(dict.fromkeys(lay.inp for lay in plan))
    _, acts = apply(graph, params, *xs, capture=caps)
    out = {}
    for lay in plan:
        x = acts[lay.inp]
        s, n = _linear_sums(x) if lay.op == "linear" else _conv_sums(lay, x)
        out[lay.name] = (acc[lay.name][0] + s, acc[lay.name][1] + n)
    return out


def _zeros(plan: tuple[_Layer, ...]):
    return {
        lay.name: (
            jnp.zeros(
                lay.weight_shape[1:2]
                if lay.op == "linear"
                else (lay.weight_shape[1] * lay.attrs[3], math.prod(lay.weight_shape[2:])),
                jnp.float32,
            ),
            jnp.float32(0),
        )
        for lay in plan
    }


def _expand(layer: _Layer, sums, count) -> jax.Array:
    """The per-element scores, the kernel's shape, from a layer's input sums."""
    mean = sums / jnp.maximum(count, 1.0)
    o = layer.weight_shape[0]
    if layer.op == "linear":
        return jnp.broadcast_to(mean[None, :], layer.weight_shape)
    groups = layer.attrs[3]
    per_group = jnp.reshape(mean, (groups, -1))  # (g, C/g * T): channel-major, as the kernel
    rows = jnp.repeat(per_group, o // groups, axis=0)  # output o reads group o // (O / g)
    return jnp.reshape(rows, layer.weight_shape)


def _chunks(arrays: tuple[np.ndarray, ...], size: int):
    """``arrays`` cut along the batch axis into chunks of ``size``; a shorter rest goes
    sample by sample (so only the shapes of ``size`` and 1 occur)."""
    n = arrays[0].shape[0]
    full = n - n % size
    for i in range(0, full, size):
        yield tuple(a[i : i + size] for a in arrays)
    for i in range(full, n):
        yield tuple(a[i : i + 1] for a in arrays)


def accumulate_scores(
    graphs: Callable[[Shapes], Graph],
    params,
    batches: Iterable[Sequence[np.ndarray]],
    layers: Sequence[str],
    *,
    fn: str = "layer_scores",
) -> dict[str, jax.Array]:
    """:func:`layer_scores` with a graph per input shapes (``graphs``): the form the PTQ
    pipeline calls with its float graphs."""
    plan: tuple[_Layer, ...] | None = None
    acc = None
    size = None
    for batch in batches:
        arrays = tuple(
            np.asarray(a) for a in (batch if isinstance(batch, (list, tuple)) else (batch,))
        )
        if size is None:
            if not arrays or arrays[0].ndim == 0 or arrays[0].shape[0] == 0:
                raise ValueError(f"{fn}: the first batch is empty")
            size = arrays[0].shape[0]
        for chunk in _chunks(arrays, size):
            shapes = tuple(tuple(a.shape) for a in chunk)
            graph = graphs(shapes)
            if plan is None:
                plan = plan_layers(graph, params, layers, fn)
                acc = _zeros(plan)
            xs = tuple(jnp.asarray(a) for a in chunk)
            acc = _batch_sums(params, xs, acc, graph=graph, plan=plan)
    if plan is None or acc is None:
        raise ValueError(f"{fn}: no batches")
    return {lay.name: _expand(lay, *acc[lay.name]) for lay in plan}


def layer_scores(
    graph: Graph,
    params,
    batches: Iterable[Sequence[np.ndarray]],
    layers: Sequence[str],
) -> dict[str, jax.Array]:
    """Per-element HMSE scores of kernels from their layers' inputs: ``diag(mean x x^T)``.

    Args:
      graph: the float graph (it must accept every batch's shapes).
      params: its params; ``params[layer]["weight"]`` is each layer's kernel: ``linear``
        ``(O, I)`` or ``conv`` ``(O, C / groups, *kernel)``.
      batches: calibration batches, each a tuple with one array ``(N, ...)`` per graph input
        (or one array); sizes may differ.
      layers: the layers whose kernels are scored.

    Returns:
      ``{layer: scores}``, each the kernel's shape (float32, >= 0): element ``(o, i)`` is the
      mean of ``x_i^2`` over every input row (linear) or patch (conv) of the layer, the diagonal
      of the layer-output Hessian ``mean x x^T`` (the same for every output channel that reads
      the input).

    Raises:
      ValueError: no layers, unknown layers, layers without a weight or of another op
        (conv_transpose, ...), no batches.

    Examples:
      >>> import numpy as np, jq
      >>> from jq._src.ptq.layer_hessian import layer_scores
      >>> g = jq.Graph(inputs=("x",), nodes=(jq.Node("fc", "linear", ("x",)),), outputs=("fc",))
      >>> p = {"fc": {"weight": np.ones((2, 3), np.float32)}}
      >>> x = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]], np.float32)
      >>> np.asarray(layer_scores(g, p, [(x,)], ["fc"])["fc"])
      array([[5. , 2. , 0.5],
             [5. , 2. , 0.5]], dtype=float32)

    Reference: GPTQ (Frantar et al., 2023), whose layer objective ``|W X - Q X|^2`` has the
    Hessian ``2 X X^T``; its diagonal weights the per-element error here.
    """
    return accumulate_scores(lambda _shapes: graph, params, batches, layers)
