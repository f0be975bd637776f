"""The build pass: the quantized graph and params from the chosen parameters.

Activation ranges -> shift-negative correction (SNC) -> fake-quantized kernels with bias
correction -> a ``fake_quant`` node after every quantized value (and SNC's add, quantizer and
pad nodes). The float graph's nodes are kept, in order, with their inputs rewired.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.graph import Graph, Node
from ..names import Names
from ..runtime.jit import jit
from ..select.enums import QuantizationMethod
from ..select.fake_quant import expand_groups
from ..select.quantizers import affine_fake_quant, affine_grid, threshold_range
from ..select.types import QParams
from .calibrate import Statistics
from .placement import kernel_group_size
from .plan_searches import ActQuant
from .prepare import Prepared
from .settings import Settings
from .snc import NON_LINEAR_BITS, Shift, plan_shifts, shifted_bias

ACT_QUANT_SUFFIX = ".act_quant"
GRID_KEYS = ("scale", "q_min", "q_max")  # params of a ``fake_quant`` node


class ActRange(NamedTuple):
    """An activation quantizer's range: ``threshold`` for threshold quantizers (``None`` for
    uniform ones) and the representable ``[lo, hi]``."""

    signed: bool
    threshold: float | None
    lo: float
    hi: float


class ShiftNodes(NamedTuple):
    """The nodes a shift-negative correction adds: ``add`` (value + shift) and its quantizer."""

    shift: Shift
    add: str
    quantizer: str


class Built(NamedTuple):
    """A quantized graph and what went into it.

    Attributes:
      graph, params: the quantized graph and its params.
      ranges: ``{value: ActRange}`` per quantized value.
      act_bits: ``{value: bits}`` (16 for shift-negative corrected non-linearities).
      shifts: the shift-negative corrections applied, with their nodes.
      n_corrected: kernels with bias correction.
      qname: ``{value: its quantizer node}``.
    """

    graph: Graph
    params: dict
    ranges: dict[str, ActRange]
    act_bits: dict[str, int]
    shifts: list[ShiftNodes]
    n_corrected: int
    qname: dict[str, str]


def act_range(qp: QParams, i: int, n_bits: int, method: QuantizationMethod) -> ActRange:
    """The range of entry ``i`` of an activation search result ``qp``."""
    signed = bool(np.asarray(qp.signed)[i])
    if method is QuantizationMethod.UNIFORM:
        a = min(float(np.asarray(qp.range_min)[i]), 0.0)
        b = max(float(np.asarray(qp.range_max)[i]), 0.0)
        if b <= a:
            b = a + 2.0**-16
        return ActRange(signed, None, a, b)
    t = float(np.asarray(qp.threshold)[i])
    lo, hi = threshold_range(jnp.float32(t), n_bits, signed)
    return ActRange(signed, t, float(lo), float(hi))


def act_grid(r: ActRange, n_bits: int) -> tuple[float, float, float]:
    """``(scale, q_min, q_max)`` of an activation quantizer (``fake_quant`` params)."""
    if r.threshold is not None:
        grid = affine_grid(n_bits, threshold=jnp.float32(r.threshold), signed=r.signed)
    else:
        grid = affine_grid(n_bits, range_min=jnp.float32(r.lo), range_max=jnp.float32(r.hi))
    s, lo, hi = (float(g) for g in grid)
    return s, lo, hi


def bias_correction(op: str, w, wq, bias, mean, groups: int) -> np.ndarray:
    """``bias - correction``, ``correction[o] = sum_i sum_k (Wq - W)[o, i, k] * mean[i]`` per
    group (MCT 2.6.1's ``compute_bias_correction_of_graph``)."""
    eps = np.asarray(wq, np.float64) - np.asarray(w, np.float64)
    mean = np.asarray(mean, np.float64)
    if op == "linear":
        corr = eps @ mean
    elif op == "conv":
        es = eps.reshape(eps.shape[0], eps.shape[1], -1).sum(-1)  # (O, I/g)
        out = es.shape[0]
        mg = mean.reshape(groups, -1)  # (g, I/g)
        corr = np.sum(es * mg[np.arange(out) // (out // groups)], axis=1)
    else:  # conv_transpose: weight (I, O/g, *k)
        es = eps.reshape(eps.shape[0], eps.shape[1], -1).sum(-1)  # (I, O/g)
        eg = es.reshape(groups, -1, es.shape[1])  # (g, I/g, O/g)
        corr = np.einsum("gij,gi->gj", eg, mean.reshape(groups, -1)).reshape(-1)
    b = np.zeros(corr.shape) if bias is None else np.asarray(bias, np.float64)
    return (b - corr).astype(np.float32)


@functools.partial(jit, static_argnames=("n_bits", "uniform"))
def _quantize_kernels_jit(ws, qps, *, n_bits: int, uniform: bool):
    out = []
    for w, qp in zip(ws, qps, strict=True):
        if uniform:
            grid = affine_grid(
                n_bits,
                range_min=qp.range_min.astype(w.dtype),
                range_max=qp.range_max.astype(w.dtype),
            )
        else:
            grid = affine_grid(n_bits, threshold=qp.threshold.astype(w.dtype), signed=True)
        out.append(affine_fake_quant(w, *grid))
    return out


def quantize_kernels(
    prep: Prepared, names: list[str], qps: list[QParams], st: Settings
) -> list[jax.Array]:
    """Fake-quantize the kernels of layers ``names`` with parameters ``qps``, as the deployed
    quantizer rounds (``jq.fake_quant``; ``torch.fake_quantize_per_channel_affine`` gives the
    same bits): one compiled call per bit width and grid kind (one call without steering).
    Per-group parameters ``(out, in / group)`` are repeated over their groups first."""
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, k in enumerate(names):
        cfg = prep.plan.kernel(k)
        groups.setdefault((cfg.n_bits, cfg.method is QuantizationMethod.UNIFORM), []).append(i)
    out: list[Any] = [None] * len(names)
    for (n_bits, uniform), idx in groups.items():
        wqs = _quantize_kernels_jit(
            [prep.params[names[i]]["weight"] for i in idx],
            [_elementwise(prep, st, names[i], qps[i]) for i in idx],
            n_bits=n_bits,
            uniform=uniform,
        )
        for i, wq in zip(idx, wqs, strict=True):
            out[i] = wq
    return out


def kernel_group(prep: Prepared, st: Settings, name: str) -> int | None:
    """Kernel ``name``'s group size (``TargetPlatform.weights_group_size`` where it applies)."""
    cfg = prep.plan.kernel(name)
    return kernel_group_size(prep.nodes[name].op, cfg.per_channel, st.tp.weights_group_size)


def _elementwise(prep: Prepared, st: Settings, name: str, qp: QParams) -> QParams:
    """``qp`` as parameters that broadcast against the kernel: per-group ``(out, G)`` values
    repeated over their groups to the kernel's shape, others as they are."""
    g = kernel_group(prep, st, name)
    fields: list[Any] = [qp.threshold, qp.range_min, qp.range_max]
    if g is not None:
        shape = tuple(np.shape(prep.params[name]["weight"]))
        axis = dict(prep.plan.kernels)[name]
        fields = [None if v is None else expand_groups(v, shape, axis, g) for v in fields]
    return QParams(threshold=fields[0], range_min=fields[1], range_max=fields[2], signed=True)


def out_channels(op: str, w, groups: int) -> int:
    """A kernel layer's number of output channels."""
    return int(w.shape[1]) * groups if op == "conv_transpose" else int(w.shape[0])


def build_quantized(
    prep: Prepared,
    stats: Statistics,
    kernels: list[QParams],
    acts: Mapping[str, ActQuant],
    st: Settings,
) -> Built:
    """The quantized graph and params for kernel parameters ``kernels`` and activation
    parameters ``acts``."""
    cfg = {v: prep.plan.act(v) for v in prep.plan.activations}
    ranges = {
        v: act_range(acts[v].qparams, acts[v].entry, cfg[v].n_bits, cfg[v].method)
        for v in prep.plan.activations
    }
    act_bits = {v: cfg[v].n_bits for v in prep.plan.activations}
    shifts: tuple[Shift, ...] = ()
    if st.qc.shift_negative_activation_correction:
        shifts = plan_shifts(
            prep.graph,
            quantized=set(prep.plan.activations),
            minimum=stats.minimum,
            thresholds={v: r.threshold for v, r in ranges.items()},
            n_bits=dict(act_bits),
            ratio=st.qc.shift_negative_ratio,
        )
    for sh in shifts:
        act_bits[sh.value] = NON_LINEAR_BITS
        for b in sh.bypass:  # quantized bypass values now see non-negative data
            if b in ranges:
                ranges[b] = ranges[b]._replace(signed=False)
    qparams, n_corrected = _layer_params(prep, stats, kernels, shifts, st)
    names = Names([*prep.graph.inputs, *prep.nodes])
    qname = {v: names.new(v + ACT_QUANT_SUFFIX) for v in prep.plan.activations}
    for v in prep.plan.activations:
        qparams[qname[v]] = _grid_params(act_grid(ranges[v], act_bits[v]))
    wiring = _shift_wiring(prep, shifts, qname, qparams, names, st)
    return Built(
        _assemble(prep.graph, qname, qparams, wiring),
        qparams,
        ranges,
        act_bits,
        wiring.shifts,
        n_corrected,
        qname,
    )


def _grid_params(grid: tuple[float, float, float]) -> dict:
    return dict(zip(GRID_KEYS, map(jnp.float32, grid), strict=True))


def _layer_params(
    prep: Prepared, stats: Statistics, kernels: list[QParams], shifts, st: Settings
) -> tuple[dict, int]:
    """The params with fake-quantized kernels, shift-corrected and bias-corrected biases;
    and the number of bias-corrected kernels."""
    fparams, nodes = prep.params, prep.nodes
    biases = {k: fparams[k].get("bias") for k in nodes if isinstance(fparams.get(k), dict)}
    means = dict(stats.means)
    for sh in shifts:
        k = sh.layer
        biases[k] = shifted_bias(nodes[k].op, fparams[k]["weight"], biases.get(k), sh.shift)
        if k in means and not st.compat:
            # The layer now reads x + shift: its quantization error has mean
            # eps @ (m + shift). MCT corrects with the unshifted mean (leaving a bias
            # error of shift * sum(eps)).
            means[k] = np.asarray(means[k]) + sh.shift
    qparams = {k: dict(v) for k, v in fparams.items()}
    for sh in shifts:
        qparams[sh.layer]["bias"] = jax.device_put(np.asarray(biases[sh.layer]))
    n_corrected = 0
    wqs = quantize_kernels(prep, prep.kernel_names, kernels, st)
    for k, wq in zip(prep.kernel_names, wqs, strict=True):
        qparams[k]["weight"] = wq
        if st.qc.weights_bias_correction:
            node = nodes[k]
            corrected = bias_correction(
                node.op, fparams[k]["weight"], wq, biases.get(k), means[k], node.attr("groups", 1)
            )
            qparams[k]["bias"] = jax.device_put(np.asarray(corrected))
            n_corrected += 1
    return qparams, n_corrected


class _Wiring(NamedTuple):
    """Nodes inserted after / before a node, reader inputs swapped, layers replaced."""

    after: dict[str, list[Node]]  # nodes inserted right after a node
    before: dict[str, list[Node]]  # nodes inserted right before a node
    swap: dict[tuple[str, str], str]  # (reader, old input) -> new input
    padded: dict[str, Node]  # layers whose padding moved into a pad node
    shifts: list[ShiftNodes]


def _shift_wiring(prep: Prepared, shifts, qname, qparams, names: Names, st: Settings) -> _Wiring:
    """SNC rewiring: value -> quantizer (16 bits) -> add(shift) -> quantizer (unsigned, the
    value's own bit width) -> ..."""
    w = _Wiring({}, {}, {}, {}, [])
    for sh in shifts:
        add = names.new(sh.value + "_post_add")
        add_q = names.new(add + ACT_QUANT_SUFFIX)
        shape = prep.nodes[sh.value].shape
        w.after[qname[sh.value]] = [
            Node(add, "add", (qname[sh.value],), {"scalar": sh.shift}, shape=shape),
            Node(add_q, "fake_quant", (add,), {}, shape=shape),
        ]
        n_act = prep.plan.act(sh.value).n_bits
        qparams[add_q] = _grid_params(act_grid(ActRange(False, sh.threshold, 0.0, 0.0), n_act))
        first = sh.bypass[0] if sh.bypass else sh.layer
        w.swap[(first, qname[sh.value])] = add_q
        layer = prep.nodes[sh.layer]
        pads = layer.attr("padding", ())
        if layer.op == "conv" and any(p for pair in pads for p in pair):
            # The layer pads the shifted value: pad with the shift instead of zeros (MCT).
            feed = qname.get(sh.bypass[-1], sh.bypass[-1]) if sh.bypass else qname[sh.value]
            src = feed if sh.bypass else add_q
            pad = names.new(sh.layer + "_pre_pad")
            w.before[sh.layer] = [Node(pad, "pad", (src,), {"padding": pads, "value": sh.shift})]
            w.swap[(sh.layer, feed)] = pad
            w.padded[sh.layer] = layer.replace(
                attrs={**layer.attrs_dict, "padding": tuple((0, 0) for _ in pads)}
            )
        w.shifts.append(ShiftNodes(sh, add, add_q))
    return w


def _assemble(fgraph: Graph, qname: dict[str, str], qparams: dict, w: _Wiring) -> Graph:
    """The float graph's nodes with a quantizer after every quantized value, rewired."""

    def quantizer(v: str) -> Node:
        return Node(qname[v], "fake_quant", (v,), {}, shape=None)

    nodes: list[Node] = [quantizer(i) for i in fgraph.inputs if i in qname]
    for n in fgraph.nodes:
        nodes.extend(w.before.get(n.name, ()))
        n = w.padded.get(n.name, n)
        if any(i in qname for i in n.inputs):
            n = n.replace(inputs=tuple(qname.get(i, i) for i in n.inputs))
        if any((n.name, i) in w.swap for i in n.inputs):
            n = n.replace(inputs=tuple(w.swap.get((n.name, i), i) for i in n.inputs))
        if n.name in qparams:
            n = n.replace(param_shapes={p: tuple(a.shape) for p, a in qparams[n.name].items()})
        nodes.append(n)
        if n.name in qname:
            nodes.append(quantizer(n.name).replace(shape=n.shape))
            nodes.extend(w.after.get(qname[n.name], ()))
    return fgraph.replace(
        nodes=tuple(nodes), outputs=tuple(qname.get(o, o) for o in fgraph.outputs)
    )
