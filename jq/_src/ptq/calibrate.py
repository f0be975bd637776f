"""Statistics collection for PTQ (reference §3.5 "Statistics", §4.3): one jitted step per batch.

Each batch runs one compiled forward of the float graph with ``capture=...`` and, in the same
computation, updates a mergeable histogram (:class:`jq._histogram.HistogramState`), the min and
max of every quantized activation, and the per-channel means of the inputs of kernel layers
(bias correction). Activations never leave the compiled step, so memory is bounded by the
histograms. With ``hmse=True`` the step also draws one Rademacher vector ``v`` over the model
outputs and weights each activation's histogram by ``(d sum(v * y) / d a)^2`` (MCT's
Hessian-weighted collector; model outputs get unit weights).

``mct_compat=True`` reproduces MCT's collector instead: each batch's histogram over its own
``[min, max]`` in float64, merged on read (:class:`jq._histogram.MCTHistogramState`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..graph.ops import register_op
from ..select.histogram import (
    MCTHistogramState,
    _histogram_impl,
    _state_update,
    histogram_finalize,
    histogram_init,
)

PERTURB_OP = "ptq_perturb"
PERTURB_SUFFIX = "#hmse"


@register_op(PERTURB_OP)
def _ptq_perturb(params, x):
    """``x + params["delta"]``: a zero-valued hook; its gradient is the gradient w.r.t. ``x``
    (used for Hessian scores of activations). Without ``delta`` it is the identity. Not
    quantized, never exported."""
    return x + params["delta"] if "delta" in params else x


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


@functools.partial(
    jax.jit,
    static_argnames=("graph", "hist_names", "mean_specs", "hmse_targets", "compat", "n_bins"),
)
def _stats_step(
    params, hists, sums, key, inputs, *, graph, hist_names, mean_specs, hmse_targets, compat, n_bins
):
    capture = tuple(dict.fromkeys(hist_names + tuple(src for _, (src, _) in mean_specs)))
    scores: dict[str, jax.Array] = {}
    if hmse_targets:

        def run(d):
            p = {**params, **{t + PERTURB_SUFFIX: {"delta": d[t]} for t in hmse_targets}}
            out, acts = apply(graph, p, *inputs, capture=capture)
            return (out if isinstance(out, tuple) else (out,)), acts

        # Zero hooks shaped like their activations (shapes from an abstract trace).
        shapes = jax.eval_shape(lambda: apply(graph, params, *inputs, capture=hmse_targets))[1]
        deltas = {t: jnp.zeros(shapes[t].shape, shapes[t].dtype) for t in hmse_targets}
        outs, vjp_fn, acts = jax.vjp(run, deltas, has_aux=True)
        keys = jax.random.split(key, len(outs))
        vs = tuple(
            jax.random.rademacher(k, o.shape, o.dtype) for k, o in zip(keys, outs, strict=True)
        )
        (grads,) = vjp_fn(vs)
        scores = {t: jnp.square(g) for t, g in grads.items()}
    else:
        _, acts = apply(graph, params, *inputs, capture=capture)

    new_hists = {}
    mins, maxs = {}, {}
    for name in hist_names:
        a = acts[name]
        w = scores.get(name)
        if w is not None:  # MCT: all-zero weights mean ones
            w = jnp.where(jnp.any(w != 0), w, jnp.ones_like(w))
        mins[name], maxs[name] = jnp.min(a), jnp.max(a)
        if compat:
            x64 = a.astype(jnp.float64)
            w64 = None if w is None else w.astype(jnp.float64)
            new_hists[name] = _histogram_impl(x64, w64, n_bins)
        else:
            new_hists[name] = _state_update(hists[name], a, w)
    new_sums = {
        layer: sums[layer] + _channel_mean(acts[src], axis) for layer, (src, axis) in mean_specs
    }
    return new_hists, new_sums, mins, maxs


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, desc=desc, leave=False)


def check_batch(batch: Any, index: int, n_inputs: int, fn: str) -> tuple[np.ndarray, ...]:
    """One representative batch as a tuple of NumPy arrays; rejects bad input with a clear error.

    Accepts a list/tuple of arrays (MCT's convention) or a single array (one-input models).
    Float arrays are cast to float32 and must be finite.
    """
    if isinstance(batch, (list, tuple)):
        items = list(batch)
    else:
        items = [batch]
    if len(items) != n_inputs:
        raise ValueError(
            f"{fn}: representative batch {index} has {len(items)} input(s); the model takes "
            f"{n_inputs}"
        )
    out = []
    for j, x in enumerate(items):
        if hasattr(x, "detach"):  # a torch tensor, without importing torch
            x = x.detach().cpu().numpy()
        try:
            a = np.asarray(x)
        except Exception as e:
            raise TypeError(
                f"{fn}: representative batch {index}, input {j}: expected an array or tensor, "
                f"got {type(x).__name__}"
            ) from e
        if a.dtype == object or not (
            np.issubdtype(a.dtype, np.floating)
            or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_
        ):
            raise TypeError(
                f"{fn}: representative batch {index}, input {j}: expected a real numeric array, "
                f"got dtype {a.dtype}"
            )
        if a.size == 0:
            raise ValueError(f"{fn}: representative batch {index}, input {j} is empty")
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                what = "NaN" if np.isnan(a).any() else "inf"
                raise ValueError(
                    f"{fn}: representative batch {index}, input {j} contains {what}; "
                    "statistics need finite data"
                )
            a = a.astype(np.float32)
        out.append(a)
    return tuple(out)


def check_shapes(
    arrays: Sequence[np.ndarray], expected: Sequence[tuple[int, ...] | None], index: int, fn: str
) -> None:
    """Every input must match ``expected`` except on the batch axis (0)."""
    for j, (a, e) in enumerate(zip(arrays, expected, strict=True)):
        if e is None:
            continue
        if a.ndim != len(e) or tuple(a.shape[1:]) != tuple(e[1:]):
            raise ValueError(
                f"{fn}: representative batch {index}, input {j} has shape {tuple(a.shape)}; "
                f"expected (batch, {', '.join(map(str, e[1:]))}) like the first batch {tuple(e)}"
            )


def collect_statistics(
    graph_for: Callable[[tuple[tuple[int, ...], ...]], Graph],
    params,
    batches: Iterable[tuple[np.ndarray, ...]],
    *,
    hist_names: Sequence[str],
    mean_specs: Sequence[tuple[str, tuple[str, int]]] = (),
    hmse: bool = False,
    mct_compat: bool = False,
    n_bins: int = 2048,
    seed: int = 0,
    progress: bool = True,
    fn: str = "collect_statistics",
) -> Statistics:
    """Run every batch through the float graph once, collecting statistics.

    Args:
      graph_for: returns the float graph for a tuple of input shapes (graphs may bake the
        batch size into reshapes; a new batch size can need a new graph).
      params: the params pytree.
      batches: checked batches (tuples of arrays, see :func:`check_batch`).
      hist_names: values whose histogram and min/max are collected.
      mean_specs: ``((layer, (input_value, channel_axis)), ...)``: per-channel means collected
        for bias correction.
      hmse: weight histograms by Hessian scores (§4.3).
      mct_compat: MCT's per-batch float64 histograms merged on read.
      n_bins: histogram bins.
      seed: seed of the Rademacher draws (``hmse``).
      progress: tqdm progress bar.
      fn: name used in error messages.

    Returns:
      :class:`Statistics`.

    Raises:
      ValueError: no batch, or a non-finite activation (naming the value).
    """
    hist_names = tuple(hist_names)
    mean_specs = tuple(mean_specs)
    key = jax.random.PRNGKey(seed)
    hists: dict[str, Any] = {}
    if mct_compat:
        states = {n: MCTHistogramState(n_bins) for n in hist_names}
    else:
        states = {n: histogram_init(n_bins, dtype=jnp.float32) for n in hist_names}
    sums: dict[str, jax.Array] | None = None
    mins = {n: np.inf for n in hist_names}
    maxs = {n: -np.inf for n in hist_names}
    count = 0
    ctx = jax.enable_x64(True) if mct_compat else _null()
    for arrays in _progress(batches, progress, "jq statistics"):
        g = graph_for(tuple(a.shape for a in arrays))
        targets = ()
        if hmse:
            targets = tuple(n for n in hist_names if n not in g.outputs)
            g = perturbed_graph(g, targets)
        if sums is None:
            sums = _zero_sums(g, params, arrays, mean_specs)
        key, sub = jax.random.split(key)
        with ctx:
            out = _stats_step(
                params,
                {} if mct_compat else states,
                sums,
                sub,
                tuple(jnp.asarray(a) for a in arrays),
                graph=g,
                hist_names=hist_names,
                mean_specs=mean_specs,
                hmse_targets=targets,
                compat=mct_compat,
                n_bins=n_bins,
            )
        new_hists, sums, bmin, bmax = out
        if mct_compat:
            for n in hist_names:
                e, c = new_hists[n]
                s = states[n]
                states[n] = s._replace(bins=s.bins + (e,), counts=s.counts + (c,))
        else:
            states = new_hists
        bmin, bmax = jax.device_get((bmin, bmax))
        for n in hist_names:
            mins[n] = min(mins[n], float(bmin[n]))
            maxs[n] = max(maxs[n], float(bmax[n]))
        count += 1
    if count == 0:
        raise ValueError(f"{fn}: the representative dataset yielded no batch")
    bad = [n for n in hist_names if not (np.isfinite(mins[n]) and np.isfinite(maxs[n]))]
    if bad:
        raise ValueError(
            f"{fn}: activations {bad[:5]} have non-finite values (NaN/inf) on the representative "
            "data; the float model overflows or produces NaN there"
        )
    with ctx:
        for n in hist_names:
            e, c = histogram_finalize(states[n])
            hists[n] = (np.asarray(e), np.asarray(c))
    means = {n: np.asarray(s) / count for n, s in (sums or {}).items()}
    return Statistics(hists, mins, maxs, means, count)


def _zero_sums(graph, params, arrays, mean_specs):
    if not mean_specs:
        return {}
    srcs = tuple(dict.fromkeys(src for _, (src, _) in mean_specs))
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
    _, acts = jax.eval_shape(lambda p, *xs: apply(graph, p, *xs, capture=srcs), params, *specs)
    return {
        layer: jnp.zeros(acts[src].shape[axis % len(acts[src].shape)], jnp.float32)
        for layer, (src, axis) in mean_specs
    }


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
