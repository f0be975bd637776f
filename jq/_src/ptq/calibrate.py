"""Statistics collection for PTQ (MCT 2.6.1's ``model_collector.py``): one step per batch.

On one device without Hessian weights (the common case) a batch runs the model's probe program
(``probe.py``, shared with the SQNR pass) and its activations are histogrammed on fixed tiles
(``stats_tiled.py``): one batch's activations are held on the host at a time. Otherwise (a
batch split over devices, or ``hmse``) each batch runs one fused program described next.

The fused step runs one compiled forward of the float graph with ``capture=...`` and, in the
same computation, updates a mergeable histogram (:class:`jq.HistogramState`), the min and
max of every quantized activation, and the per-channel means of the inputs of kernel layers
(bias correction). Activations never leave the compiled step, so memory is bounded by the
histograms. The default-mode histograms are kept stacked in groups of one size bucket and
updated group by group (one vmapped update each), so the program's size grows with the number
of size buckets, not of values. With ``hmse=True`` the step also draws one Rademacher vector
``v`` over the model outputs and weights each activation's histogram by
``(d sum(v * y) / d a)^2`` (MCT's Hessian-weighted collector; model outputs get unit weights).

``mct_compat=True`` reproduces MCT's collector instead: each batch's histogram over its own
``[min, max]`` in float64, merged on read (:class:`jq.MCTHistogramState`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..graph.ops.hooks import PERTURB_OP
from ..runtime.jit import jit
from ..select.buckets import bucket
from ..select.histogram import (
    HistogramState,
    MCTHistogramState,
    _histogram_impl,
    _state_add,
    histogram_finalize,
    histogram_init,
    widen_constant,
)
from .probe import ProbeSpec
from .shard import Reduce, Shards, for_batch, local_shapes, put_batch
from .stats_tiled import probe_step

PERTURB_SUFFIX = "#hmse"


class Statistics(NamedTuple):
    """What calibration collected.

    Attributes:
      histograms: ``{name: (edges (B+1,), counts (B,))}`` per quantized activation.
      minimum, maximum: ``{name: float}`` over all batches.
      means: ``{layer: (C,)}`` mean of each kernel layer's input per channel (average of the
        per-batch channel means, MCT's mean collector).
      n_batches: number of batches seen.
    """

    histograms: dict[str, tuple[np.ndarray, np.ndarray]]
    minimum: dict[str, float]
    maximum: dict[str, float]
    means: dict[str, np.ndarray]
    n_batches: int


def perturbed_graph(graph: Graph, targets: Sequence[str]) -> Graph:
    """``graph`` with a ``ptq_perturb`` node after each of ``targets`` (not graph outputs):
    readers of ``t`` read ``t#hmse`` instead."""
    targets = [t for t in targets if t not in graph.outputs]
    tset = set(targets)

    def hook(name: str) -> Node:
        return Node(name + PERTURB_SUFFIX, PERTURB_OP, (name,))

    nodes: list[Node] = [hook(i) for i in graph.inputs if i in tset]
    for n in graph.nodes:
        if any(i in tset for i in n.inputs):
            n = n.replace(inputs=tuple(i + PERTURB_SUFFIX if i in tset else i for i in n.inputs))
        nodes.append(n)
        if n.name in tset:
            nodes.append(hook(n.name))
    return graph.replace(nodes=tuple(nodes))


def _channel_mean(x: jax.Array, axis: int) -> jax.Array:
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return jnp.mean(x.astype(jnp.float32), axis=axes)


def _rademacher_share(key: jax.Array, out: jax.Array, red: Reduce) -> jax.Array:
    """This shard's part of one Rademacher draw over the whole batch's output ``out`` (batch
    axis first), so the draw does not depend on the number of devices."""
    if red.axes is None or out.ndim == 0:
        return jax.random.rademacher(key, out.shape, out.dtype)
    b = out.shape[0]
    full = jax.random.rademacher(key, (b * red.size, *out.shape[1:]), out.dtype)
    return jax.lax.dynamic_slice_in_dim(full, red.position() * b, b, axis=0)


def _forward_with_scores(graph, params, inputs, capture, hmse_targets, key, red):
    """Captured activations and, for ``hmse_targets``, their Hessian scores
    ``(d sum(v * y) / d a)^2`` for one Rademacher ``v`` over the model outputs."""

    def run(d):
        p = {**params, **{t + PERTURB_SUFFIX: {"delta": d[t]} for t in hmse_targets}}
        out, acts = apply(graph, p, *inputs, capture=capture)
        return (out if isinstance(out, tuple) else (out,)), acts

    # Zero hooks shaped like their activations (shapes from an abstract trace).
    shapes = jax.eval_shape(lambda: apply(graph, params, *inputs, capture=hmse_targets))[1]
    deltas = {t: jnp.zeros(shapes[t].shape, shapes[t].dtype) for t in hmse_targets}
    outs, vjp_fn, acts = jax.vjp(run, deltas, has_aux=True)
    keys = jax.random.split(key, len(outs))
    vs = tuple(_rademacher_share(k, o, red) for k, o in zip(keys, outs, strict=True))
    (grads,) = vjp_fn(vs)
    return acts, {t: jnp.square(g) for t, g in grads.items()}


def _update_histograms(hists, acts, scores, *, hist_names, compat, n_bins, red):
    """Each value's histogram after this batch (all shards' data), and the batch's min / max."""
    mins = {n: red.min(jnp.min(acts[n])) for n in hist_names}
    maxs = {n: red.max(jnp.max(acts[n])) for n in hist_names}
    weights = {n: _nonzero_scores(scores[n], red) for n in hist_names if n in scores}
    if compat:  # MCT's per-batch histogram over the whole batch's range
        new = {}
        for n in hist_names:
            x64, w = acts[n].astype(jnp.float64), weights.get(n)
            w64 = None if w is None else w.astype(jnp.float64)
            lo, hi = mins[n].astype(jnp.float64), maxs[n].astype(jnp.float64)
            edges, counts = _histogram_impl(x64, w64, n_bins, bounds=widen_constant(lo, hi))
            new[n] = (edges, red.sum(counts))
        return new, mins, maxs
    new = {g: _add_group(g, st, acts, weights, mins, maxs, red) for g, st in hists.items()}
    return new, mins, maxs


def _nonzero_scores(w: jax.Array, red: Reduce) -> jax.Array:
    """Hessian scores, or ones where every shard's are all zero (MCT's rule)."""
    nonzero = red.max(jnp.any(w != 0).astype(jnp.int32)) > 0
    return jnp.where(nonzero, w, jnp.ones_like(w))


def _add_group(names, st, acts, weights, mins, maxs, red: Reduce) -> HistogramState:
    """The stacked default-mode histograms ``st`` of ``names`` after this batch: one vmapped
    update over the values' stack, padded to a common size bucket. The program then holds one
    histogram update per group of similar sizes instead of one per value, and the states stay
    stacked between batches (GhostNet: 21 groups of 290 values; its statistics step compiled
    in 14 s instead of 37 s). Padding counts nothing: the counts equal the per-value
    update's, bit for bit."""
    size = bucket(max(acts[n].size for n in names))
    dtype = st.minimum.dtype

    def flat(a: jax.Array) -> jax.Array:
        return jnp.pad(a.ravel().astype(dtype), (0, size - a.size))

    x = jnp.stack([flat(acts[n]) for n in names])
    # The barrier keeps XLA from folding the mask into a (values x size) constant.
    n_real = jax.lax.optimization_barrier(jnp.asarray([acts[n].size for n in names], jnp.int32))
    real = jnp.arange(size, dtype=jnp.int32)[None, :] < n_real[:, None]
    x = jnp.where(real, x, x[:, :1])  # padding takes a real value, counted with weight 0
    w = None
    if any(n in weights for n in names):
        w = jnp.stack([flat(weights[n]) if n in weights else jnp.ones(size, dtype) for n in names])
    lo = jnp.minimum(st.minimum, jnp.stack([mins[n] for n in names]).astype(dtype))
    hi = jnp.maximum(st.maximum, jnp.stack([maxs[n] for n in names]).astype(dtype))
    return jax.vmap(functools.partial(_state_add, reduce=red.sum))(st, x, w, real, lo, hi)


def _is_grouped(hists: dict) -> bool:
    return bool(hists) and not isinstance(next(iter(hists)), str)


def _grouped(hists: dict, sizes: dict[str, int]) -> dict:
    """Per-value states ``{name: state}`` stacked on the host into ``{names: state}`` groups of
    one size bucket."""
    groups: dict[int, list[str]] = {}
    for n in hists:
        groups.setdefault(bucket(sizes[n]), []).append(n)
    host = {n: jax.device_get(st) for n, st in hists.items()}
    return {
        tuple(ns): jax.tree.map(lambda *a: np.stack(a), *[host[n] for n in ns])
        for ns in groups.values()
    }


def _per_value(hists: dict) -> dict:
    """Grouped states ``{names: state}`` as ``{name: state}`` (host arrays)."""
    if not _is_grouped(hists):
        return hists
    out = {}
    for names, st in hists.items():
        host = jax.device_get(st)
        out.update({n: jax.tree.map(lambda a, i=i: a[i], host) for i, n in enumerate(names)})
    return out


def _stats_body(
    params,
    hists,
    sums,
    key,
    inputs,
    *,
    graph,
    hist_names,
    mean_specs,
    hmse_targets,
    compat,
    n_bins,
    red,
):
    """One batch's statistics step (on one device, or one shard with ``red``'s collectives)."""
    capture = tuple(dict.fromkeys(hist_names + tuple(src for _, (src, _) in mean_specs)))
    scores: dict[str, jax.Array] = {}
    if hmse_targets:
        acts, scores = _forward_with_scores(graph, params, inputs, capture, hmse_targets, key, red)
    else:
        _, acts = apply(graph, params, *inputs, capture=capture)
    new_hists, mins, maxs = _update_histograms(
        hists, acts, scores, hist_names=hist_names, compat=compat, n_bins=n_bins, red=red
    )
    new_sums = {}
    for layer, (src, axis) in mean_specs:
        m = _channel_mean(acts[src], axis)
        new_sums[layer] = sums[layer] + (m if red.axes is None else red.sum(m) / red.size)
    return new_hists, new_sums, mins, maxs


@functools.partial(
    jit,
    static_argnames=(
        "graph",
        "hist_names",
        "mean_specs",
        "hmse_targets",
        "compat",
        "n_bins",
        "shards",
    ),
)
def _stats_step(params, hists, sums, key, inputs, *, shards, **static):
    """:func:`_stats_body` on one device, or ``shard_map``ped over ``shards`` (the batch split
    along its first axis, everything else replicated)."""
    if shards is None:
        return _stats_body(params, hists, sums, key, inputs, red=Reduce(), **static)
    body = functools.partial(_stats_body, red=Reduce(shards.axes, shards.size), **static)
    rep = PartitionSpec()
    # Every output is a collective's result, so replicated; check_vma=False because the
    # histogram's block scan carries values that vary by shard until their psum.
    return jax.shard_map(
        body,
        mesh=shards.mesh,
        in_specs=(rep, rep, rep, rep, shards.spec()),
        out_specs=rep,
        check_vma=False,
    )(params, hists, sums, key, inputs)


class StatsSpec(NamedTuple):
    """What the statistics pass collects (static for a PTQ call).

    Attributes:
      hist_names: values whose histogram and min/max are collected.
      mean_specs: ``((layer, (input_value, channel_axis)), ...)``: per-channel means of kernel
        layers' inputs (bias correction).
      hmse: weight histograms by Hessian scores (MCT's Hessian-weighted collector).
      mct_compat: MCT's per-batch float64 histograms, merged on read.
      n_bins: histogram bins.
      shards: the devices each batch is split over (``None``: one device).
      fn: the entry point's name, used in error messages.
      probe: run batches on one device without ``hmse`` through the model's probe program
        (shared with the SQNR pass) and histogram them on fixed tiles (``stats_tiled.py``)
        instead of one fused program per model.
    """

    hist_names: tuple[str, ...]
    mean_specs: tuple[tuple[str, tuple[str, int]], ...] = ()
    hmse: bool = False
    mct_compat: bool = False
    n_bins: int = 2048
    shards: Shards | None = None
    fn: str = "jq.ptq"
    probe: ProbeSpec | None = None

    def shards_for(self, shapes) -> Shards | None:
        """The shards a batch of input ``shapes`` runs on (see :func:`shard.for_batch`)."""
        return for_batch(self.shards, shapes[0][0], self.fn)

    def graph_shapes(self, shapes) -> tuple[tuple[int, ...], ...]:
        """The input shapes one device's graph sees for a batch of ``shapes``."""
        return local_shapes(shapes, self.shards_for(shapes))


class StatsState(NamedTuple):
    """The running statistics: a pure function of the batches seen, mergeable across shards.

    Attributes:
      hists: ``{name: HistogramState | MCTHistogramState}``; after a default-mode step,
        ``{names: HistogramState}`` with the states of ``names`` stacked (one size bucket).
      sums: ``{layer: (C,)}`` sums of per-batch channel means; ``None`` before the first batch.
      minimum, maximum: ``{name: float}``.
      key: the PRNG key of the next batch's Rademacher draw (``hmse``).
      n_batches: batches seen.
    """

    hists: dict[str, Any]
    sums: dict[str, jax.Array] | None
    minimum: dict[str, float]
    maximum: dict[str, float]
    key: jax.Array
    n_batches: int


def stats_init(spec: StatsSpec, seed: int = 0) -> StatsState:
    """The state before any batch."""
    if spec.mct_compat:
        hists: dict[str, Any] = {n: MCTHistogramState(spec.n_bins) for n in spec.hist_names}
    else:  # unweighted counts as exact integers, so shards and batches add up exactly
        exact = not spec.hmse
        hists = {
            n: histogram_init(spec.n_bins, dtype=jnp.float32, integer_counts=exact)
            for n in spec.hist_names
        }
    names = spec.hist_names
    return StatsState(
        hists,
        None,
        dict.fromkeys(names, np.inf),
        dict.fromkeys(names, -np.inf),
        jax.random.PRNGKey(seed),
        0,
    )


def stats_step(
    spec: StatsSpec, params, state: StatsState, graph: Graph, inputs: tuple[np.ndarray, ...]
) -> StatsState:
    """``state`` after one batch ``inputs`` through the float ``graph`` (one compiled step).

    With ``spec.shards`` the batch is split over the devices and ``graph`` is one device's
    (for :meth:`StatsSpec.graph_shapes`)."""
    shards = spec.shards_for([a.shape for a in inputs])
    if spec.probe is not None and not spec.hmse and shards is None:
        return _probe_step(spec, params, state, graph, inputs)
    targets: tuple[str, ...] = ()
    if spec.hmse:
        targets = tuple(n for n in spec.hist_names if n not in graph.outputs)
        graph = perturbed_graph(graph, targets)
    sums, hists = state.sums, state.hists
    regroup = not spec.mct_compat and not _is_grouped(hists)  # first batch, or after a merge
    if sums is None or regroup:  # shapes from an abstract trace
        shapes = _value_shapes(graph, params, inputs, shards, spec)
        sums = _zero_sums(shapes, spec) if sums is None else sums
        if regroup:
            hists = _grouped(hists, {n: int(np.prod(shapes[n].shape)) for n in spec.hist_names})
    key, sub = jax.random.split(state.key)
    with jax.enable_x64(True) if spec.mct_compat else contextlib.nullcontext():
        new_hists, sums, bmin, bmax = _stats_step(
            params,
            {} if spec.mct_compat else hists,
            sums,
            sub,
            put_batch(inputs, shards),
            shards=shards,
            graph=graph,
            hist_names=spec.hist_names,
            mean_specs=spec.mean_specs,
            hmse_targets=targets,
            compat=spec.mct_compat,
            n_bins=spec.n_bins,
        )
    if spec.mct_compat:
        hists = {}
        for n in spec.hist_names:
            e, c = new_hists[n]
            s = state.hists[n]
            hists[n] = s._replace(bins=s.bins + (e,), counts=s.counts + (c,))
    else:
        hists = new_hists
    bmin, bmax = jax.device_get((bmin, bmax))
    mins = {n: min(state.minimum[n], float(bmin[n])) for n in spec.hist_names}
    maxs = {n: max(state.maximum[n], float(bmax[n])) for n in spec.hist_names}
    return StatsState(hists, sums, mins, maxs, key, state.n_batches + 1)


def _probe_step(
    spec: StatsSpec, params, state: StatsState, graph: Graph, inputs: tuple[np.ndarray, ...]
) -> StatsState:
    assert spec.probe is not None
    compat = spec.mct_compat
    out = probe_step(
        spec.probe,
        graph,
        params,
        inputs,
        hist_names=spec.hist_names,
        hists={} if compat else _per_value(state.hists),
        sums=state.sums,
        state_min=state.minimum,
        state_max=state.maximum,
        compat=compat,
        n_bins=spec.n_bins,
    )
    hists = out.hists
    if compat:  # MCT keeps each batch's histogram
        hists = {
            n: s._replace(bins=s.bins + (out.hists[n][0],), counts=s.counts + (out.hists[n][1],))
            if n in out.hists
            else s
            for n, s in state.hists.items()
        }
    key, _ = jax.random.split(state.key)
    return StatsState(hists, out.sums, out.minimum, out.maximum, key, state.n_batches + 1)


def stats_finalize(spec: StatsSpec, state: StatsState, fn: str) -> Statistics:
    """The :class:`Statistics` of ``state``.

    Raises:
      ValueError: no batch, or a non-finite activation (naming the values).
    """
    if state.n_batches == 0:
        raise ValueError(f"{fn}: the representative dataset yielded no batch")
    names = spec.hist_names
    bad = [
        n for n in names if not (np.isfinite(state.minimum[n]) and np.isfinite(state.maximum[n]))
    ]
    if bad:
        raise ValueError(
            f"{fn}: activations {bad[:5]} have non-finite values (NaN/inf) on the representative "
            "data; the float model overflows or produces NaN there"
        )
    hists, states = {}, _per_value(state.hists)
    with jax.enable_x64(True) if spec.mct_compat else contextlib.nullcontext():
        for n in names:
            e, c = histogram_finalize(states[n])
            hists[n] = (np.asarray(e), np.asarray(c))
    means = {n: np.asarray(s) / state.n_batches for n, s in (state.sums or {}).items()}
    return Statistics(hists, state.minimum, state.maximum, means, state.n_batches)


def _value_shapes(graph, params, inputs, shards: Shards | None, spec: StatsSpec) -> dict:
    """Shapes of the histogrammed values and the kernel layers' inputs on one device's share
    of a batch (an abstract trace)."""
    srcs = tuple(src for _, (src, _) in spec.mean_specs)
    names = tuple(dict.fromkeys(spec.hist_names + srcs))
    shapes = local_shapes([a.shape for a in inputs], shards)
    specs = [jax.ShapeDtypeStruct(s, a.dtype) for s, a in zip(shapes, inputs, strict=True)]
    _, acts = jax.eval_shape(lambda p, *xs: apply(graph, p, *xs, capture=names), params, *specs)
    return acts


def _zero_sums(shapes: dict, spec: StatsSpec) -> dict:
    """Zero channel sums of the kernel layers' inputs."""
    return {  # NumPy: an eager jnp.zeros compiles a program per channel count
        layer: np.zeros(shapes[src].shape[axis % len(shapes[src].shape)], np.float32)
        for layer, (src, axis) in spec.mean_specs
    }
