"""Post-training quantization of a jq graph: MCT's PTQ pipeline (reference §5), framework-neutral.

fold batch norms -> place quantizers (default target platform, fusing) -> statistics (one jitted
forward per batch) -> select every kernel's parameters with one ``weights_qparams_batch`` call
and every activation's with one ``activation_qparams_batch`` call -> bias correction -> the
quantized graph: fake-quantized kernels in the params and a ``fake_quant`` node after every
quantized value. The result runs with ``jq.apply`` (jit-able) and exports with
``jq_torch.to_torch``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..report.quant_info import LayerInfo, QuantizationInfo
from ..runtime.cache import ensure_compilation_cache
from ..runtime.timing import StageClock, compile_seconds
from ..select.activations import activation_qparams_batch
from ..select.enums import ErrorMethod, QuantizationMethod
from ..select.quantizers import affine_fake_quant, affine_grid, pot, threshold_range
from ..select.types import QParams
from ..select.weights import weights_qparams_batch
from .auto import (
    AutoErrorMethod,
    KernelSpec,
    auto_sqnr,
    candidate_methods,
    choose,
    error_curve,
    layer_analysis,
    params_dict,
)
from .calibrate import _progress, check_batch, check_shapes, collect_statistics
from .config import CoreConfig, TargetPlatform
from .fold import fold_batch_norm
from .placement import BOUNDED_OPS, plan_quantization
from .snc import NON_LINEAR_BITS, Shift, plan_shifts, shifted_bias

ACT_QUANT_SUFFIX = ".act_quant"
GRID_KEYS = ("scale", "q_min", "q_max")  # params of a ``fake_quant`` node
SQNR_BATCHES = 1  # batches kept (inputs only) to measure per-layer SQNR after quantization
AUTO_CHECK_BATCHES = 8  # with AUTO: batches kept to compare the per-layer mix with each method


class PTQResult(NamedTuple):
    """Output of :func:`quantize_graph`.

    Attributes:
      graph: the quantized graph (``fake_quant`` nodes after quantized values).
      params: its params (fake-quantized kernels, corrected biases, quantizer ranges).
      info: :class:`QuantizationInfo`.
      float_graph, float_params: the float graph after batch-norm folding (the reference the
        SQNR figures compare against).
    """

    graph: Graph
    params: dict
    info: QuantizationInfo
    float_graph: Graph
    float_params: dict


def _batches(
    first: tuple[np.ndarray, ...],
    rest: Iterator,
    n_inputs: int,
    fn: str,
    keep: list,
    samples: list,
    n_samples: int,
    n_keep: int,
):
    ref_shapes = [a.shape for a in first]
    ref_kinds = [a.dtype.kind for a in first]
    i = 0
    arrays = first
    while True:
        if len(keep) < n_keep and [a.shape for a in arrays] == ref_shapes:
            keep.append(arrays)
        have = len(samples[0]) if samples else 0
        if have < n_samples:
            take = min(n_samples - have, arrays[0].shape[0])
            for j, a in enumerate(arrays):
                samples[j].extend(a[k : k + 1] for k in range(take))
        yield arrays
        i += 1
        try:
            batch = next(rest)
        except StopIteration:
            return
        arrays = check_batch(batch, i, n_inputs, fn)
        check_shapes(arrays, ref_shapes, i, fn)
        for j, (a, k) in enumerate(zip(arrays, ref_kinds, strict=True)):
            if a.dtype.kind != k:
                raise TypeError(
                    f"{fn}: representative batch {i}, input {j} has dtype {a.dtype}; the first "
                    f"batch had {first[j].dtype}"
                )


def _bias_correction(op: str, w, wq, bias, mean, groups: int) -> np.ndarray:
    """``bias - correction``, ``correction[o] = sum_i sum_k (Wq - W)[o, i, k] * mean[i]`` per
    group (reference §5 step 9)."""
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


def _act_range(qp: QParams, i: int, n_bits: int, method: QuantizationMethod):
    signed = bool(np.asarray(qp.signed)[i])
    if method is QuantizationMethod.UNIFORM:
        a = min(float(np.asarray(qp.range_min)[i]), 0.0)
        b = max(float(np.asarray(qp.range_max)[i]), 0.0)
        if b <= a:
            b = a + 2.0**-16
        return signed, None, (a, b)
    t = float(np.asarray(qp.threshold)[i])
    a, b = threshold_range(jnp.float32(t), n_bits, signed)
    return signed, t, (float(a), float(b))


def _act_grid(signed: bool, t: float | None, ab: tuple[float, float], n_bits: int):
    """``(scale, q_min, q_max)`` of an activation quantizer (``fake_quant`` params)."""
    if t is not None:
        grid = affine_grid(n_bits, threshold=jnp.float32(t), signed=signed)
    else:
        grid = affine_grid(n_bits, range_min=jnp.float32(ab[0]), range_max=jnp.float32(ab[1]))
    return tuple(float(g) for g in grid)


def _bounded_qparams(op: str, method: QuantizationMethod, min_threshold: float):
    lo, hi = BOUNDED_OPS[op]
    signed = lo < 0
    if method is QuantizationMethod.POWER_OF_TWO:
        t = float(pot(jnp.float32(abs(hi)), min_threshold))
    elif method is QuantizationMethod.SYMMETRIC:
        t = max(abs(hi), min_threshold)
    else:
        return QParams(
            range_min=np.array([lo]), range_max=np.array([hi]), signed=np.array([signed])
        )
    return QParams(threshold=np.array([t]), signed=np.array([signed]))


def _sqnr_sums(fparams, qparams, inputs, *, fgraph, qgraph, pairs):
    """Per ``(float value, quantized value, offset)``: ``sum (f + offset)^2`` and
    ``sum (f + offset - q)^2`` (the offset is a shift-negative correction's shift)."""
    fnames = tuple(dict.fromkeys(f for f, _, _ in pairs))
    qnames = tuple(dict.fromkeys(q for _, q, _ in pairs))
    _, fa = apply(fgraph, fparams, *inputs, capture=fnames)
    _, qa = apply(qgraph, qparams, *inputs, capture=qnames)
    sig = jnp.stack([jnp.sum(jnp.square(fa[f] + o)) for f, _, o in pairs])
    noise = jnp.stack([jnp.sum(jnp.square(fa[f] + o - qa[q])) for f, q, o in pairs])
    return sig, noise


_sqnr_sums_jit = jax.jit(_sqnr_sums, static_argnames=("fgraph", "qgraph", "pairs"))


@functools.partial(jax.jit, static_argnames=("n_bits", "uniform"))
def _quantize_kernels(ws, qps, *, n_bits: int, uniform: bool):
    """Fake-quantize every kernel in one compiled call, as the deployed quantizer rounds
    (``jq.fake_quant``; ``torch.fake_quantize_per_channel_affine`` gives the same bits)."""
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


def _out_channels(op: str, w, groups: int) -> int:
    return int(w.shape[1]) * groups if op == "conv_transpose" else int(w.shape[0])


def _scale(qp: QParams, i: int | None = None) -> np.ndarray:
    """No-clipping scale per channel (threshold or range width) of a NOCLIPPING result."""
    if qp.threshold is not None:
        t = np.asarray(qp.threshold, np.float64)
        return (t if i is None else t[i]).ravel()
    a, b = np.asarray(qp.range_min, np.float64), np.asarray(qp.range_max, np.float64)
    return (b - a if i is None else b[i] - a[i]).ravel()


def _curve(qp: QParams, ref: np.ndarray, i: int | None = None):
    if qp.errors is None:
        return [], []
    e, c = np.asarray(qp.errors), np.asarray(qp.candidates)
    return error_curve(e if i is None else e[i], c if i is None else c[i], ref)


class _Built(NamedTuple):
    """A quantized graph and what went into it (``quantize_graph``'s build step)."""

    graph: Graph
    params: dict
    ranges: dict  # value -> (signed, threshold | None, (a, b))
    act_bits: dict  # value -> bit width (16 for shift-negative corrected non-linearities)
    shift_info: list  # (Shift, add node, its quantizer)
    n_corrected: int  # kernels with bias correction
    qname: dict  # value -> its quantizer node


def rebase_graph(qgraph: Graph, float_graph: Graph, new_float_graph: Graph) -> Graph:
    """``qgraph`` (quantized from ``float_graph``) for the input shapes of ``new_float_graph``.

    Graphs converted from torch bake shapes into attributes (reshape targets, ...). Every node
    of ``qgraph`` that comes from ``float_graph`` takes the attributes of its counterpart in
    ``new_float_graph`` where the two float graphs differ; nodes the quantization added or
    rewrote (quantizers, shift-negative adds and pads) are kept.

    Raises:
      ValueError: the float graphs differ in more than attributes (names, ops or wiring).
    """
    old = {n.name: n for n in float_graph.nodes}
    new = {n.name: n for n in new_float_graph.nodes}
    same = old.keys() == new.keys() and all(
        (old[k].op, old[k].inputs) == (new[k].op, new[k].inputs) for k in old
    )
    if not same or float_graph.inputs != new_float_graph.inputs:
        raise ValueError(
            "the model's graph for the new input shapes differs from the quantized one in more "
            "than shapes (nodes, ops or wiring); quantize it for those shapes"
        )
    nodes = [
        n.replace(attrs=new[n.name].attrs, shape=new[n.name].shape)
        if n.name in old and old[n.name].attrs != new[n.name].attrs
        else n
        for n in qgraph.nodes
    ]
    return qgraph.replace(nodes=tuple(nodes), input_shapes=new_float_graph.input_shapes)


def _sqnr_totals(fparams, qparams, batches, *, fgraph, qgraph, pairs) -> tuple:
    """``(signal, noise)`` per pair of :func:`_sqnr_sums`, summed over ``batches`` (float64)."""
    sig = np.zeros(len(pairs))
    noise = np.zeros(len(pairs))
    for arrays in batches:
        s, e = _sqnr_sums_jit(
            fparams,
            qparams,
            tuple(jnp.asarray(a) for a in arrays),
            fgraph=fgraph,
            qgraph=qgraph,
            pairs=pairs,
        )
        sig += np.asarray(s, np.float64)
        noise += np.asarray(e, np.float64)
    return sig, noise


def _output_db(fparams, built: _Built, batches, fgraph: Graph, outputs: list[str]) -> float:
    """SQNR (dB) of the float outputs ``outputs`` of ``built`` against the float graph."""
    qouts = dict(zip(fgraph.outputs, built.graph.outputs, strict=True))
    pairs = tuple((f, qouts[f], 0.0) for f in outputs)
    sig, noise = _sqnr_totals(
        fparams, built.params, batches, fgraph=fgraph, qgraph=built.graph, pairs=pairs
    )
    return _db(float(np.sum(sig)), float(np.sum(noise)))


def _db(sig: float, noise: float) -> float:
    if noise <= 0:
        return float("inf")
    if sig <= 0:
        return float("-inf")
    return float(10.0 * np.log10(sig / noise))


def quantize_graph(
    graph: Graph,
    params,
    representative_data_gen: Callable[[], Any],
    *,
    core_config: CoreConfig | None = None,
    target_platform: TargetPlatform | None = None,
    graph_for: Callable[[tuple[tuple[int, ...], ...]], Graph] | None = None,
    fn: str = "jq.ptq.post_training_quantization",
) -> PTQResult:
    """Quantize a float jq graph after training, as MCT's PTQ does (reference §5).

    Args:
      graph: the float graph (from ``jq_torch.from_torch`` or built by hand).
      params: its params pytree.
      representative_data_gen: a callable returning an iterable of batches; a batch is a list
        or tuple with one array per graph input (MCT's convention) or a single array. Batches
        may differ in batch size only.
      core_config: :class:`jq.core.CoreConfig` (default: MCT's defaults).
      target_platform: :class:`jq.core.TargetPlatform` (default: MCT's default platform).
      graph_for: returns the float graph for other input shapes (graphs converted from torch
        bake the batch size into reshapes). Default: ``graph`` for any shape.
      fn: the name used in error messages.

    Returns:
      :class:`PTQResult` ``(graph, params, info, float_graph, float_params)``.

    Raises:
      TypeError / ValueError: bad config, a data generator that yields nothing, batches of
      the wrong number, shape or dtype, NaN/inf data or activations. Nothing is returned on
      error.

    Example::

        res = quantize_graph(graph, params, lambda: ([x] for x in batches))
        y = jax.jit(jq.apply, static_argnums=0)(res.graph, res.params, x)
    """
    ensure_compilation_cache()
    total = StageClock()
    clock = StageClock()
    core_config = CoreConfig() if core_config is None else core_config
    if not isinstance(core_config, CoreConfig):
        raise TypeError(
            f"{fn}: core_config must be a jq.core.CoreConfig, got {type(core_config).__name__}"
        )
    tp = TargetPlatform() if target_platform is None else target_platform
    if not isinstance(tp, TargetPlatform):
        raise TypeError(
            f"{fn}: target_platform_capabilities must be None or a jq.core.TargetPlatform, got "
            f"{type(tp).__name__}"
        )
    if not isinstance(graph, Graph):
        raise TypeError(f"{fn}: graph must be a jq Graph, got {type(graph).__name__}")
    qc = core_config.quantization_config
    compat = qc.mct_compat
    progress = core_config.progress
    act_auto = qc.activation_error_method is AutoErrorMethod.AUTO
    w_auto = qc.weights_error_method is AutoErrorMethod.AUTO
    if not callable(representative_data_gen):
        raise TypeError(
            f"{fn}: representative_data_gen must be a callable returning an iterable of batches, "
            f"got {type(representative_data_gen).__name__}"
        )
    try:
        it = iter(representative_data_gen())
    except TypeError as e:
        raise TypeError(f"{fn}: representative_data_gen() did not return an iterable") from e
    n_inputs = len(graph.inputs)
    try:
        first_batch = next(it)
    except StopIteration:
        raise ValueError(f"{fn}: representative_data_gen yielded no batch") from None
    first = check_batch(first_batch, 0, n_inputs, fn)
    ref_shapes = tuple(a.shape for a in first)
    if graph.input_shapes:
        check_shapes(first, graph.input_shapes, 0, fn)

    # -- graph preparation -------------------------------------------------------------
    clock.start()
    fgraph, fparams, folded = fold_batch_norm(graph, params, include_linear=not compat)
    cache: dict[tuple, Graph] = {ref_shapes: fgraph}

    def folded_for(shapes):
        if shapes not in cache:
            if graph_for is None:
                if graph.input_shapes and tuple(map(tuple, graph.input_shapes)) != shapes:
                    raise ValueError(
                        f"{fn}: a batch has shapes {shapes} but the graph was built for "
                        f"{graph.input_shapes}; give every batch the same shape"
                    )
                cache[shapes] = fgraph
            else:
                g = graph_for(shapes)
                cache[shapes] = fold_batch_norm(g, params, include_linear=not compat)[0]
        return cache[shapes]

    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in first]
    names = tuple(n.name for n in fgraph.nodes)
    try:
        _, shapes = jax.eval_shape(
            lambda p, *xs: apply(fgraph, p, *xs, capture=names), fparams, *specs
        )
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{fn}: the model does not run on the first batch (input shapes {ref_shapes}, dtypes "
            f"{[str(a.dtype) for a in first]}): {str(e).splitlines()[0]}"
        ) from e
    float_values = {i for i, a in zip(fgraph.inputs, first, strict=True) if a.dtype.kind == "f"}
    float_values |= {n for n, s in shapes.items() if jnp.issubdtype(s.dtype, jnp.floating)}
    plan = plan_quantization(
        fgraph, float_values=frozenset(float_values), quantize_inputs=tp.quantize_inputs
    )
    layer_ops = {n.name: n for n in fgraph.nodes}
    mean_specs = ()
    if qc.weights_bias_correction:
        mean_specs = tuple(
            (k, (layer_ops[k].inputs[0], -1 if layer_ops[k].op == "linear" else 1))
            for k, _ in plan.kernels
        )
    clock.stop("prepare")

    # -- kernel searches start now, in a thread: they need only the weights, so their
    # compilation and run overlap the statistics pass (HMSE waits for its scores) ----------
    kernel_names = [k for k, _ in plan.kernels]
    need_scores = bool(kernel_names) and (qc.weights_error_method is ErrorMethod.HMSE or w_auto)
    w_methods = (
        candidate_methods("weights", hessian=need_scores) if w_auto else (qc.weights_error_method,)
    )

    def search_kernels(m: ErrorMethod, hessians=None) -> list[QParams]:
        c0 = compile_seconds()
        try:
            return _search_kernels(m, hessians)
        finally:
            if threading.get_ident() != main_thread:  # the early searches' own thread
                clock.add_compile("weights", compile_seconds() - c0)

    main_thread = threading.get_ident()

    def _search_kernels(m: ErrorMethod, hessians=None) -> list[QParams]:
        return weights_qparams_batch(
            [fparams[k]["weight"] for k in kernel_names],
            n_bits=tp.weights_n_bits,
            method=tp.weights_quantization_method,
            error_method=m,
            per_channel=tp.weights_per_channel_threshold,
            channel_axis=[a for _, a in plan.kernels],
            p=qc.l_p_value,
            hessians=hessians,
            mct_compat=compat,
            min_threshold=qc.min_threshold,
            return_errors=w_auto,
            # One program per model anyway (every group in one compiled call): padding to
            # shared buckets would only add work (measured 20 % on resnet18's kernels).
            _exact_shapes=True,
        )

    pool = ThreadPoolExecutor(max_workers=1)
    early = {}
    if kernel_names:
        early = {m: pool.submit(search_kernels, m) for m in w_methods if m is not ErrorMethod.HMSE}

    # -- statistics ------------------------------------------------------------------
    clock.start()
    keep: list = []
    n_samples = 16 if qc.weights_error_method is ErrorMethod.HMSE or w_auto else 0
    samples: list[list] = [[] for _ in range(n_inputs)]
    try:
        stats = collect_statistics(
            folded_for,
            fparams,
            _batches(
                first,
                it,
                n_inputs,
                fn,
                keep,
                samples,
                n_samples,
                AUTO_CHECK_BATCHES if act_auto or w_auto else SQNR_BATCHES,
            ),
            hist_names=plan.activations,
            mean_specs=mean_specs,
            hmse=qc.activation_error_method is ErrorMethod.HMSE,
            mct_compat=compat,
            progress=progress,
            fn=fn,
        )
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    clock.stop("statistics")

    # -- weights ---------------------------------------------------------------------
    clock.start()
    wqp: list[QParams] = []
    w_cands: list[list[QParams]] = []
    try:
        hessians = None
        if need_scores:
            from .hessian import weight_scores

            g1 = folded_for(tuple((1,) + tuple(s[1:]) for s in ref_shapes))
            xs = [np.stack(s) for s in samples]  # (S, 1, ...): S samples of batch 1
            scores = weight_scores(g1, fparams, xs, kernel_names, progress=progress)
            hessians = [scores[k] for k in kernel_names]
            clock.lap("hessian")
        # AUTO: one compiled batch search per candidate method (each over every layer).
        if kernel_names:
            w_cands = [
                early[m].result() if m in early else search_kernels(m, hessians) for m in w_methods
            ]
            wqp = w_cands[0]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    w_chosen = [w_methods[0].value] * len(kernel_names)
    clock.stop("weights")

    # -- activations -----------------------------------------------------------------
    clock.start()

    def op_of(v: str) -> str:
        return layer_ops[v].op if v in layer_ops else "input"

    searched = [v for v in plan.activations if op_of(v) not in BOUNDED_OPS]
    act_qp: dict[str, tuple[QParams, int, str]] = {}
    a_methods = candidate_methods("activation") if act_auto else (qc.activation_error_method,)
    a_cands: list[QParams] = []
    if searched:
        bins = np.stack([stats.histograms[v][0] for v in searched])
        counts = np.stack([stats.histograms[v][1] for v in searched])
        for m in a_methods:  # AUTO: one compiled batch search per candidate method
            batch_qp = activation_qparams_batch(
                bins,
                counts,
                n_bits=tp.activation_n_bits,
                method=tp.activation_quantization_method,
                error_method=m,
                p=qc.l_p_value,
                mct_compat=compat,
                min_threshold=qc.min_threshold,
                z_threshold=qc.z_threshold,
                return_errors=act_auto,
            )
            a_cands.append(jax.device_get(batch_qp))
        for i, v in enumerate(searched):
            act_qp[v] = (a_cands[0], i, a_methods[0].value)
    for v in plan.activations:
        if op_of(v) in BOUNDED_OPS:
            qp = _bounded_qparams(op_of(v), tp.activation_quantization_method, qc.min_threshold)
            act_qp[v] = (qp, 0, "minmax")
    clock.stop("activations")

    # -- AUTO: one extra compiled pass, every method's layer-output SQNR ----------------
    analysis: dict[tuple[str, str], dict] = {}
    if (act_auto and searched) or (w_auto and kernel_names):
        clock.start()
        analysis, auto_wqp, auto_chosen = _auto_select(
            folded_for,
            fparams,
            representative_data_gen,
            n_inputs,
            fn,
            progress=progress,
            stats=stats,
            layer_ops=layer_ops,
            kernel_names=kernel_names if w_auto else [],
            w_methods=w_methods,
            w_cands=w_cands,
            searched=searched if act_auto else [],
            a_methods=a_methods,
            a_cands=a_cands,
            act_qp=act_qp,
            tp=tp,
            bias_correction=qc.weights_bias_correction,
        )
        if w_auto and kernel_names:
            wqp, w_chosen = auto_wqp, auto_chosen
        clock.stop("auto")

    # -- quantized params: quantizer ranges, shift-negative correction, kernels --------
    clock.start()
    n_act = tp.activation_n_bits

    def build(wqp: list[QParams], act_qp: dict) -> _Built:
        """The quantized graph and params for kernel parameters ``wqp`` and activation
        parameters ``act_qp``."""
        ranges: dict[str, tuple[bool, float | None, tuple[float, float]]] = {}
        for v in plan.activations:
            qp, i, _ = act_qp[v]
            ranges[v] = _act_range(qp, i, n_act, tp.activation_quantization_method)
        act_bits = dict.fromkeys(plan.activations, n_act)
        shifts: tuple[Shift, ...] = ()
        if qc.shift_negative_activation_correction:
            shifts = plan_shifts(
                fgraph,
                quantized=set(plan.activations),
                minimum=stats.minimum,
                thresholds={v: r[1] for v, r in ranges.items()},
                n_bits=n_act,
                ratio=qc.shift_negative_ratio,
            )
        biases = {k: fparams[k].get("bias") for k in layer_ops if isinstance(fparams.get(k), dict)}
        means = dict(stats.means)
        for sh in shifts:
            act_bits[sh.value] = NON_LINEAR_BITS
            for b in sh.bypass:  # quantized bypass values now see non-negative data
                if b in ranges:
                    ranges[b] = (False, *ranges[b][1:])
            k = sh.layer
            biases[k] = shifted_bias(layer_ops[k].op, fparams[k]["weight"], biases.get(k), sh.shift)
            if k in means and not compat:
                # The layer now reads x + shift: its quantization error has mean
                # eps @ (m + shift). MCT corrects with the unshifted mean (leaving a bias
                # error of shift * sum(eps)).
                means[k] = np.asarray(means[k]) + sh.shift

        qparams = {k: dict(v) for k, v in fparams.items()}
        for sh in shifts:
            qparams[sh.layer]["bias"] = jnp.asarray(biases[sh.layer])
        n_corrected = 0
        wqs = []
        if kernel_names:
            slim = [QParams(qp.threshold, qp.range_min, qp.range_max, True) for qp in wqp]
            wqs = _quantize_kernels(
                [fparams[k]["weight"] for k in kernel_names],
                slim,
                n_bits=tp.weights_n_bits,
                uniform=tp.weights_quantization_method is QuantizationMethod.UNIFORM,
            )
        for k, wq in zip(kernel_names, wqs, strict=True):
            w = fparams[k]["weight"]
            qparams[k]["weight"] = wq
            if qc.weights_bias_correction:
                node = layer_ops[k]
                qparams[k]["bias"] = jnp.asarray(
                    _bias_correction(
                        node.op, w, wq, biases.get(k), means[k], node.attr("groups", 1)
                    )
                )
                n_corrected += 1

        taken = set(fgraph.inputs) | set(layer_ops)

        def new_name(base: str) -> str:
            while base in taken:
                base += "_"
            taken.add(base)
            return base

        qname: dict[str, str] = {}
        for v in plan.activations:
            qname[v] = new_name(v + ACT_QUANT_SUFFIX)
            signed, t, ab = ranges[v]
            grid = _act_grid(signed, t, ab, act_bits[v])
            qparams[qname[v]] = dict(zip(GRID_KEYS, map(jnp.float32, grid), strict=True))

        def quantizer(v: str, name: str | None = None) -> Node:
            return Node(name or qname[v], "fake_quant", (v,), {}, shape=None)

        # SNC rewiring: value -> quantizer (16 bits) -> add(shift) -> quantizer (unsigned, t) -> ...
        after: dict[str, list[Node]] = {}  # nodes inserted right after a node
        before: dict[str, list[Node]] = {}  # nodes inserted right before a node
        swap: dict[tuple[str, str], str] = {}  # (reader, old input) -> new input
        padded: dict[str, Node] = {}
        shift_info = []
        for sh in shifts:
            add = new_name(sh.value + "_post_add")
            add_q = new_name(add + ACT_QUANT_SUFFIX)
            shape = layer_ops[sh.value].shape
            after[qname[sh.value]] = [
                Node(add, "add", (qname[sh.value],), {"scalar": sh.shift}, shape=shape),
                quantizer(add, add_q).replace(shape=shape),
            ]
            grid = _act_grid(False, sh.threshold, (0.0, 0.0), n_act)
            qparams[add_q] = dict(zip(GRID_KEYS, map(jnp.float32, grid), strict=True))
            first = sh.bypass[0] if sh.bypass else sh.layer
            swap[(first, qname[sh.value])] = add_q
            layer = layer_ops[sh.layer]
            pads = layer.attr("padding", ())
            if layer.op == "conv" and any(p for pair in pads for p in pair):
                # The layer pads the shifted value: pad with the shift instead of zeros (MCT).
                feed = qname.get(sh.bypass[-1], sh.bypass[-1]) if sh.bypass else qname[sh.value]
                src = feed if sh.bypass else add_q
                pad = new_name(sh.layer + "_pre_pad")
                before[sh.layer] = [Node(pad, "pad", (src,), {"padding": pads, "value": sh.shift})]
                swap[(sh.layer, feed)] = pad
                padded[sh.layer] = layer.replace(
                    attrs={**layer.attrs_dict, "padding": tuple((0, 0) for _ in pads)}
                )
            shift_info.append((sh, add, add_q))

        nodes: list[Node] = [quantizer(i) for i in fgraph.inputs if i in qname]
        for n in fgraph.nodes:
            nodes.extend(before.get(n.name, ()))
            n = padded.get(n.name, n)
            if any(i in qname for i in n.inputs):
                n = n.replace(inputs=tuple(qname.get(i, i) for i in n.inputs))
            if any((n.name, i) in swap for i in n.inputs):
                n = n.replace(inputs=tuple(swap.get((n.name, i), i) for i in n.inputs))
            if n.name in qparams:
                n = n.replace(param_shapes={p: tuple(a.shape) for p, a in qparams[n.name].items()})
            nodes.append(n)
            if n.name in qname:
                nodes.append(quantizer(n.name).replace(shape=n.shape))
                nodes.extend(after.get(qname[n.name], ()))
        qgraph = fgraph.replace(
            nodes=tuple(nodes), outputs=tuple(qname.get(o, o) for o in fgraph.outputs)
        )
        return _Built(qgraph, qparams, ranges, act_bits, shift_info, n_corrected, qname)

    built = build(wqp, act_qp)
    clock.stop("build")
    out_values = [f for f in fgraph.outputs if f in float_values]

    # -- AUTO: the per-layer mix against each method for the whole model ----------------
    if analysis and out_values:
        clock.start()
        options = [("per layer", wqp, act_qp, w_chosen)]
        if w_auto and kernel_names:
            for m, cand in zip(w_methods, w_cands, strict=True):
                options.append((f"weights {m.value}", cand, act_qp, [m.value] * len(cand)))
        if act_auto and searched:
            for j, m in enumerate(a_methods):
                aq = dict(act_qp)
                aq.update({v: (a_cands[j], i, m.value) for i, v in enumerate(searched)})
                options.append((f"activations {m.value}", wqp, aq, w_chosen))
        builds = [built] + [build(w, a) for _, w, a, _ in options[1:]]
        scores = [_output_db(fparams, b, keep, fgraph, out_values) for b in builds]
        best = int(np.argmax(scores))  # the per-layer mix wins ties (first)
        _, wqp, act_qp, w_chosen = options[best]
        built = builds[best]
        for (name, kind), a in analysis.items():
            a["chosen"] = (
                w_chosen[kernel_names.index(name)] if kind == "weights" else act_qp[name][2]
            )
        auto_note = (
            f"auto: model output SQNR on {len(keep)} calibration batches, "
            + ", ".join(f"{o[0]} {db:.2f} dB" for o, db in zip(options, scores, strict=True))
            + f"; kept {options[best][0]}"
        )
        clock.stop("auto_check")
    qgraph, qparams, ranges, act_bits, shift_info, n_corrected, qname = built

    # -- SQNR per layer and of the outputs ---------------------------------------------
    clock.start()
    pairs = [(v, qname[v], 0.0) for v in plan.activations]
    pairs += [(sh.value, add_q, sh.shift) for sh, _, add_q in shift_info]
    pairs += [(k, k, 0.0) for k in kernel_names if k not in qname]
    out_pairs = [
        (f, q, 0.0)
        for f, q in zip(fgraph.outputs, qgraph.outputs, strict=True)
        if f in float_values
    ]
    all_pairs = tuple(pairs + out_pairs)
    sig = noise = np.zeros(len(all_pairs))
    if all_pairs:
        sig, noise = _sqnr_totals(
            fparams, qparams, keep[:SQNR_BATCHES], fgraph=fgraph, qgraph=qgraph, pairs=all_pairs
        )
    db = {p: _db(s, e) for p, s, e in zip(all_pairs, sig, noise, strict=True)}
    out_db = None
    if out_pairs:
        out_db = _db(
            float(sum(sig[len(pairs) :])),
            float(sum(noise[len(pairs) :])),
        )
    clock.stop("sqnr")

    # -- info ---------------------------------------------------------------------------
    layers: list[LayerInfo] = []
    for (k, axis), qp in zip(plan.kernels, wqp, strict=True):
        uniform = qp.threshold is None
        layers.append(
            LayerInfo(
                name=k,
                kind="weights",
                op=layer_ops[k].op,
                n_bits=tp.weights_n_bits,
                method=tp.weights_quantization_method.value,
                error_method=w_chosen[len(layers)],
                signed=True,
                threshold=None if uniform else np.asarray(qp.threshold).ravel().tolist(),
                range_min=np.asarray(qp.range_min).ravel().tolist() if uniform else None,
                range_max=np.asarray(qp.range_max).ravel().tolist() if uniform else None,
                channel_axis=axis if tp.weights_per_channel_threshold else None,
                sqnr_db=db.get((k, qname.get(k, k), 0.0)),
                analysis=analysis.get((k, "weights")),
            )
        )
    for v in plan.activations:
        signed, t, (a, b) = ranges[v]
        uniform = t is None
        layers.append(
            LayerInfo(
                name=v,
                kind="activation",
                op=op_of(v),
                n_bits=act_bits[v],
                method=tp.activation_quantization_method.value,
                error_method=act_qp[v][2],
                signed=signed,
                threshold=t,
                range_min=a if uniform else None,
                range_max=b if uniform else None,
                sqnr_db=db.get((v, qname[v], 0.0)),
                analysis=analysis.get((v, "activation")),
            )
        )
    for sh, add, add_q in shift_info:
        layers.append(
            LayerInfo(
                name=add,
                kind="activation",
                op="add",
                n_bits=n_act,
                method=tp.activation_quantization_method.value,
                error_method=act_qp[sh.value][2],
                signed=False,
                threshold=sh.threshold,
                sqnr_db=db.get((sh.value, add_q, sh.shift)),
            )
        )
    notes = [
        f"batch norms folded: {len(folded)}",
        f"layer+activation fused (no quantizer between): {len(plan.fused)}",
        f"bias correction: {n_corrected} layers"
        if qc.weights_bias_correction
        else "bias correction: off",
        f"statistics: {stats.n_batches} batches; SQNR on the first {min(len(keep), SQNR_BATCHES)}",
    ]
    if qc.shift_negative_activation_correction:
        shifts = [sh for sh, _, _ in shift_info]
        applied = ", ".join(f"{sh.value} (+{sh.shift:g} into {sh.layer})" for sh in shifts)
        notes.append(
            f"shift-negative correction: {len(shifts)} values"
            + (
                f": {applied}; each non-linearity quantized at {NON_LINEAR_BITS} bits"
                if shifts
                else ""
            )
        )
    else:
        notes.append("shift-negative correction: off")
    for kind in ("weights", "activation"):
        chosen = [a["chosen"] for (_, k), a in analysis.items() if k == kind]
        if chosen:
            tally = ", ".join(f"{m} {chosen.count(m)}" for m in dict.fromkeys(chosen))
            notes.append(f"auto ({kind}): chosen per layer: {tally}")
    if analysis and out_values:
        notes.append(auto_note)
    if compat and not folded and any(n.op == "batch_norm" for n in fgraph.nodes):
        notes.append("batch norms left unfolded (no preceding conv with a single reader)")
    total.lap("total")
    timings = {**clock.timings, **total.timings}
    config = {
        "activation_error_method": qc.activation_error_method.value,
        "weights_error_method": qc.weights_error_method.value,
        "weights_n_bits": tp.weights_n_bits,
        "activation_n_bits": tp.activation_n_bits,
        "weights_method": tp.weights_quantization_method.value,
        "activation_method": tp.activation_quantization_method.value,
        "per_channel": tp.weights_per_channel_threshold,
        "weights_bias_correction": qc.weights_bias_correction,
        "l_p_value": float(qc.l_p_value),
        "z_threshold": float(qc.z_threshold),
        "min_threshold": float(qc.min_threshold),
        "mct_compat": compat,
    }
    info = QuantizationInfo(
        layers=tuple(layers),
        output_sqnr_db=out_db,
        config=config,
        timings=timings,
        notes=tuple(notes),
    )
    return PTQResult(qgraph, qparams, info, fgraph, fparams)


def _auto_select(
    folded_for,
    fparams,
    representative_data_gen,
    n_inputs: int,
    fn: str,
    *,
    progress: bool,
    stats,
    layer_ops: dict,
    kernel_names: list[str],
    w_methods,
    w_cands: list[list[QParams]],
    searched: list[str],
    a_methods,
    a_cands: list[QParams],
    act_qp: dict,
    tp: TargetPlatform,
    bias_correction: bool,
):
    """AUTO (``auto.py``): evaluate every candidate method of every layer in one compiled
    pass over ``representative_data_gen()`` and keep the best per layer.

    Updates ``act_qp`` in place for the searched activations; returns ``(analysis, wqp,
    w_chosen)``: the ``LayerInfo.analysis`` records keyed by ``(name, kind)``, the chosen
    kernel ``QParams`` and the chosen kernel method names (empty lists without weights AUTO).
    """
    n_a = tp.activation_n_bits
    a_method = tp.activation_quantization_method
    act_grids = np.array(
        [
            [_act_grid(*_act_range(qp, i, n_a, a_method), n_a) for qp in a_cands]
            for i in range(len(searched))
        ],
        np.float32,
    ).reshape(len(searched), len(a_cands), 3)
    kernels, kernel_w, kernel_b = [], [], []
    if kernel_names:
        uniform = tp.weights_quantization_method is QuantizationMethod.UNIFORM
        per_method = [
            _quantize_kernels(
                [fparams[k]["weight"] for k in kernel_names],
                [QParams(q.threshold, q.range_min, q.range_max, True) for q in qps],
                n_bits=tp.weights_n_bits,
                uniform=uniform,
            )
            for qps in w_cands
        ]
        for j, k in enumerate(kernel_names):
            node = layer_ops[k]
            w = fparams[k]["weight"]
            groups = node.attr("groups", 1)
            bias = fparams[k].get("bias")
            biases = []
            for wqs in per_method:
                if bias_correction:
                    biases.append(
                        _bias_correction(node.op, w, wqs[j], bias, stats.means[k], groups)
                    )
                elif bias is not None:
                    biases.append(np.asarray(bias, np.float32))
                else:
                    biases.append(np.zeros(_out_channels(node.op, w, groups), np.float32))
            kernels.append(KernelSpec(k, node.op, node.inputs[0], node.attrs))
            kernel_w.append(jnp.stack([wqs[j] for wqs in per_method]))
            kernel_b.append(np.stack(biases))

    def batches():
        for i, b in enumerate(_progress(representative_data_gen(), progress, "jq auto")):
            yield check_batch(b, i, n_inputs, fn)

    sums = auto_sqnr(
        folded_for,
        fparams,
        batches(),
        act_values=tuple(searched),
        act_grids=act_grids,
        kernels=kernels,
        kernel_weights=kernel_w,
        kernel_biases=kernel_b,
        fn=fn,
    )
    analysis: dict[tuple[str, str], dict] = {}
    if searched:
        choice, db = choose(sums.act_signal, sums.act_noise)
        noclip = a_cands[a_methods.index(ErrorMethod.NOCLIPPING)]
        for i, v in enumerate(searched):
            c = int(choice[i])
            act_qp[v] = (a_cands[c], i, a_methods[c].value)
            ref = _scale(noclip, i)
            params = []
            for qp in a_cands:
                signed, t, (a, b) = _act_range(qp, i, n_a, a_method)
                params.append(
                    params_dict(threshold=t, signed=signed)
                    if t is not None
                    else params_dict(range_min=a, range_max=b, signed=signed)
                )
            analysis[(v, "activation")] = layer_analysis(
                a_methods,
                db[i],
                c,
                params=params,
                curves=[_curve(qp, ref, i) for qp in a_cands],
                histogram=stats.histograms[v],
            )
    wqp, w_chosen = [], []
    if kernel_names:
        choice, db = choose(sums.kernel_signal, sums.kernel_noise)
        noclip = w_cands[w_methods.index(ErrorMethod.NOCLIPPING)]
        for j, k in enumerate(kernel_names):
            c = int(choice[j])
            wqp.append(w_cands[c][j])
            w_chosen.append(w_methods[c].value)
            ref = _scale(noclip[j])
            analysis[(k, "weights")] = layer_analysis(
                w_methods,
                db[j],
                c,
                params=[
                    params_dict(threshold=q[j].threshold)
                    if q[j].threshold is not None
                    else params_dict(range_min=q[j].range_min, range_max=q[j].range_max)
                    for q in w_cands
                ],
                curves=[_curve(q[j], ref) for q in w_cands],
            )
    return analysis, wqp, w_chosen
