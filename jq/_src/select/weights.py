"""Threshold / range selection for weight tensors.

MCT 2.6.1's ``power_of_two_selection_tensor``, ``symmetric_selection_tensor`` and
``uniform_selection_tensor`` (``core/common/quantization/quantization_params_generation/``),
searched by the functions of :mod:`.search`.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ..runtime.cache import ensure_compilation_cache
from ..runtime.jit import jit
from ..runtime.mesh import check_mesh, pad_leading, padded_length, split_leading
from . import metrics as _metrics
from . import npsum as _npsum
from .buckets import bucket
from .enums import ErrorMethod, QuantizationMethod
from .histogram import _histogram_impl
from .kl import kl_tensor_from_hist
from .metrics import Mean
from .options import parse_options, x64
from .quantizers import (
    MIN_THRESHOLD,
    absmax_factor,
    pot,
    threshold_quantize,
    uniform_quantize,
)
from .search import SearchResult, pot_search, symmetric_search, uniform_search
from .tiled_weights import SYMMETRIC_ROUNDS, UNIFORM_ROUNDS, search_tiled, tiled
from .types import QParams
from .validate import as_float_array, check_axis

KL_BINS = 2048
POT_CANDIDATES = 10
UNIFORM_GRID = 8
CANDIDATE_BATCH = 1  # candidates evaluated per step of lax.map (see _search.evaluate)
MCT_UNIFORM_KL_BITS = 8  # [quirk] MCT never forwards n_bits to the uniform-weights KL


class _Layout(NamedTuple):
    """Where a tensor's real values lie in its padded ``(Cb, Nb)`` search layout (a pytree of
    runtime values, so that one compiled search serves every tensor of a bucket).

    Attributes:
      n: int32 ``()``, real elements per channel row (the first ``n`` columns); a NumPy
        scalar as :func:`_layout` builds it on the host, a JAX array inside the program.
      c: int32 ``()``, real channels (the first ``c`` rows; padded rows are zeros).
      row_plan, chan_plan, flat_plan: compat mode's NumPy summation orders
        (:class:`~jq._src.select.npsum.PrefixPlan` of a row and of the channel axis,
        :class:`~jq._src.select.npsum.SumPlan` of the whole flattened tensor, for MCT's
        per-channel HMSE only); ``None`` where unused and in exact-shape searches, which sum
        with static lengths.
    """

    n: jax.Array | np.int32
    c: jax.Array | np.int32
    row_plan: _npsum.PrefixPlan | None = None
    chan_plan: _npsum.PrefixPlan | None = None
    flat_plan: _npsum.SumPlan | None = None


def _masked(x2d: jax.Array, layout: _Layout) -> jax.Array:
    """``(Nb,)`` mask of the real columns."""
    return jnp.arange(x2d.shape[1]) < layout.n


def _row_min_max(x2d: jax.Array, cols: jax.Array) -> tuple[jax.Array, jax.Array]:
    return (
        jnp.min(jnp.where(cols, x2d, jnp.inf), axis=1),
        jnp.max(jnp.where(cols, x2d, -jnp.inf), axis=1),
    )


def _absmax(x2d: jax.Array, cols: jax.Array, n_bits: int, uniform: bool) -> jax.Array:
    """``max(-min, f * max)`` per row over the real columns (MCT 2.6.1's ``get_tensor_max``).
    ``(C, N)`` -> ``(C,)``."""
    lo, hi = _row_min_max(x2d, cols)
    return jnp.maximum(-lo, hi * absmax_factor(n_bits, uniform))


def _means(layout: _Layout, cols: jax.Array, compat: bool) -> tuple[Mean, Mean, Mean | None]:
    """``(row mean (C, N) -> (C,), channel mean (C,) -> (), flat mean)`` over real values:
    NumPy's order in compat mode (the layout's plans), a masked sum over ``n`` otherwise."""
    return _numpy_means(layout) if compat else _masked_means(layout, cols)


def _numpy_means(layout: _Layout) -> tuple[Mean, Mean, Mean]:
    """:func:`_means` in NumPy's summation order (compat mode): over the real elements by the
    layout's plans, or by static-length sums when it has none (an exact-shape search)."""
    row_plan, chan_plan, flat_plan = layout.row_plan, layout.chan_plan, layout.flat_plan
    if row_plan is None or chan_plan is None:  # exact shapes: static sums, faster than plans
        return _npsum.mean, _npsum.mean, _npsum.mean

    def row(v):
        return _npsum.planned_mean(v, row_plan, layout.n.astype(v.dtype))

    def chan(v):
        return _npsum.planned_mean(v, chan_plan, layout.c.astype(v.dtype))

    def flat(v):
        assert flat_plan is not None  # built for MCT's per-channel HMSE, its only user
        nc = (layout.n * layout.c).astype(v.dtype)
        return _npsum.planned_mean(v, flat_plan, nc)

    return row, chan, flat


def _masked_means(layout: _Layout, cols: jax.Array) -> tuple[Mean, Mean, None]:
    """:func:`_means` as masked sums over the real elements (default mode; no flat mean)."""

    def row(v):
        return jnp.sum(jnp.where(cols, v, 0), axis=-1) / layout.n.astype(v.dtype)

    def chan(v):
        real = jnp.arange(v.shape[-1]) < layout.c
        return jnp.sum(jnp.where(real, v, 0), axis=-1) / layout.c.astype(v.dtype)

    return row, chan, None


def _loss_fn(x2d, w2d, p, layout, *, method, error_method, n_bits, per_channel, compat):
    """Per-candidate loss ``params -> (C,)`` for a padded ``(C, N)`` tensor (MCT 2.6.1's
    ``get_threshold_selection_tensor_error_function``)."""
    uniform = method is QuantizationMethod.UNIFORM
    cols = _masked(x2d, layout)
    row_mean, _, flat_mean = _means(layout, cols, compat)

    def hist(row):
        return _histogram_impl(row, None, KL_BINS, cols)

    if error_method is ErrorMethod.KL:
        edges, counts = jax.vmap(hist)(x2d)
        kl_bits = MCT_UNIFORM_KL_BITS if (uniform and compat) else n_bits
        kl_rows = jax.vmap(
            functools.partial(kl_tensor_from_hist, n_bits=kl_bits, mct_compat=compat)
        )
        if uniform:
            return lambda r: kl_rows(edges, counts, r[:, 0], r[:, 1])
        if compat and method is QuantizationMethod.POWER_OF_TWO and not per_channel:
            # [quirk] MCT histograms the *quantized* candidate here (swapped arguments).
            def swapped(t):
                q = threshold_quantize(x2d, t[:, None], n_bits, True)
                e, c = jax.vmap(hist)(q)
                return kl_rows(e, c, -t, t)

            return swapped
        return lambda t: kl_rows(edges, counts, -t, t)

    def metric(x, q):
        if error_method is ErrorMethod.MAE:
            return _metrics.mae(x, q, exact=compat, mean=row_mean)
        if error_method is ErrorMethod.LP:
            return _metrics.lp(x, q, p, exact=compat, mean=row_mean)
        if error_method is ErrorMethod.HMSE:
            if compat and per_channel:  # [quirk] one global, normalised scalar
                e = _metrics.hmse_global_normalised(x, q, w2d, mean=flat_mean)
                return jnp.broadcast_to(e, x.shape[:1])
            return _metrics.hmse(x, q, w2d, exact=compat, mean=row_mean)
        return _metrics.mse(x, q, exact=compat, mean=row_mean)

    if uniform:

        def uniform_loss(r):
            q = uniform_quantize(x2d, r[:, 0:1], r[:, 1:2], n_bits, exact=compat)[0]
            loss = metric(x2d, q)
            if not compat:  # a zero-width candidate range has no grid
                loss = jnp.where(r[:, 0] == r[:, 1], jnp.inf, loss)
            return loss

        return uniform_loss
    return lambda t: metric(x2d, threshold_quantize(x2d, t[:, None], n_bits, True, exact=compat))


def _search_weights(
    x2d,
    w2d,
    p,
    min_threshold,
    layout,
    *,
    method,
    error_method,
    n_bits,
    per_channel,
    compat,
    f32_start,
) -> SearchResult:
    """Search one padded ``(C, N)`` tensor; returns ``(C,)`` thresholds or ``(C, 2)`` ranges
    (padded channels' entries are meaningless; ``layout`` says which are real).

    ``f32_start`` (compat, float32 weights): MCT's uniform start ``[min, max]`` stays float32,
    so its quantization is float32 arithmetic [quirk] (HMSE's scores stay float64, as MCT's);
    the rest of the search is float64.
    """
    options = dict(
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        compat=compat,
    )
    loss_fn = _loss_fn(x2d, w2d, p, layout, **options)
    cols = _masked(x2d, layout)
    _, chan_mean, _ = _means(layout, cols, compat)
    dtype = x2d.dtype
    empty = jnp.zeros((0,) + (x2d.shape[0],), dtype)
    if method is QuantizationMethod.UNIFORM:
        start = jnp.stack([_row_min_max(x2d, cols)[0], _absmax(x2d, cols, n_bits, True)], axis=1)
        if error_method is ErrorMethod.NOCLIPPING:
            return SearchResult(start, jnp.zeros(start.shape[:1], dtype), empty, empty)
        loss0 = _f32_start_loss(x2d, w2d, p, layout, start, options) if f32_start else None
        return uniform_search(
            loss_fn,
            start,
            grid=UNIFORM_GRID,
            rounds=UNIFORM_ROUNDS[per_channel],
            per_channel=per_channel,
            compat=compat,
            loss0=loss0,
            batch_size=CANDIDATE_BATCH,
            mean=chan_mean,
        )
    absmax = _absmax(x2d, cols, n_bits, False)
    if method is QuantizationMethod.POWER_OF_TWO:
        return _pot_weights(loss_fn, absmax, min_threshold, empty, error_method, compat)
    return _symmetric_weights(
        loss_fn, absmax, min_threshold, empty, chan_mean, error_method, per_channel, compat
    )


def _f32_start_loss(x2d, w2d, p, layout, start, options) -> jax.Array:
    """The uniform start's loss with the tensor and the start range in float32 (MCT's own
    dtypes for float32 weights), as ``x2d``'s dtype."""
    # Only the tensor and its start range are float32 in MCT: HMSE's scores stay
    # float64 (``sqrt(mean(scores))``), so the weighted error is float64 [quirk].
    x32 = x2d.astype(jnp.float32)
    loss_fn32 = _loss_fn(x32, w2d, p, layout, **options)
    return loss_fn32(start.astype(jnp.float32)).astype(x2d.dtype)


def _pot_weights(loss_fn, absmax, min_threshold, empty, error_method, compat) -> SearchResult:
    """Power-of-two thresholds from the rows' ``absmax``: ``pot(absmax)`` (no clipping) or the
    best of the ``POT_CANDIDATES`` thresholds ``2 pot(absmax) / 2^i``, floored at
    ``min_threshold``."""
    if error_method is ErrorMethod.NOCLIPPING:
        return SearchResult(pot(absmax, min_threshold), jnp.zeros_like(absmax), empty, empty)
    t0 = 2 * pot(absmax, min_threshold)
    res = pot_search(loss_fn, t0, n_cand=POT_CANDIDATES, compat=compat, batch_size=CANDIDATE_BATCH)
    return res._replace(param=jnp.maximum(res.param, min_threshold))


def _symmetric_weights(
    loss_fn, absmax, min_threshold, empty, chan_mean, error_method, per_channel, compat
) -> SearchResult:
    """Symmetric thresholds from the rows' ``absmax`` (floored at ``min_threshold``): that
    start itself (no clipping) or :func:`symmetric_search` around it, floored again."""
    x0 = jnp.maximum(absmax, min_threshold)
    if error_method is ErrorMethod.NOCLIPPING:
        return SearchResult(x0, jnp.zeros_like(x0), empty, empty)
    rounds, freq = SYMMETRIC_ROUNDS[per_channel]
    res = symmetric_search(
        loss_fn,
        x0,
        rounds=rounds,
        dec_freq=freq,
        per_channel=per_channel,
        compat=compat,
        batch_size=CANDIDATE_BATCH,
        mean=chan_mean,
    )
    return res._replace(param=jnp.maximum(res.param, min_threshold))


@functools.partial(
    jit,
    static_argnames=("p", "method", "error_method", "n_bits", "per_channel", "compat", "f32_start"),
)
def _search_weights_batch(
    xs,
    ws,
    layouts,
    min_threshold,
    *,
    p,
    method,
    error_method,
    n_bits,
    per_channel,
    compat,
    f32_start,
) -> SearchResult:
    """:func:`_search_weights` over a stack of padded tensors ``xs[T, C, N]`` (``ws`` alike,
    ``layouts`` with a leading ``T`` axis)."""
    search = functools.partial(
        _search_weights,
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        compat=compat,
        f32_start=f32_start,
    )

    # One tensor after the other inside the compiled program (lax.map, not vmap): each keeps
    # its own early stop and its working set in cache (2.3x faster on resnet18's kernels).
    def one(args):
        x, w, layout = args
        return search(x, w, p, min_threshold, layout)

    return jax.lax.map(one, (xs, ws, layouts))


@functools.partial(
    jit,
    static_argnames=(
        "p",
        "method",
        "error_method",
        "n_bits",
        "per_channel",
        "compat",
        "f32_starts",
        "mesh",
    ),
)
def _search_groups(
    xs, ws, layouts, p, min_threshold, *, f32_starts, mesh, **static
) -> list[SearchResult]:
    """:func:`_search_weights_batch` for every shape group, compiled as ONE program: XLA's
    fixed cost per executable is about half of a group's compile time (measured 2.5 s vs
    4.8 s for six resnet18 groups). With a ``mesh`` each group's tensors are split over its
    devices (``runtime.mesh``)."""
    out = []
    for x, w, lay, f in zip(xs, ws, layouts, f32_starts, strict=True):
        run = functools.partial(_search_weights_batch, p=p, f32_start=f, **static)
        out.append(split_leading(run, mesh, 3, 1)(x, w, lay, min_threshold))
    return out


def _bucket_shape(shape: tuple[int, int], per_channel: bool) -> tuple[int, int]:
    """The padded ``(C, N)`` search layout of a ``(C, N)`` tensor (``C = 1`` per tensor)."""
    c, n = shape
    return (bucket(c) if per_channel else 1), bucket(n)


def _stack_padded(rows: list[np.ndarray], shape: tuple[int, ...], dtype) -> np.ndarray:
    """``(T, *shape)`` zeros with each ``(C, N)`` array in its top-left corner."""
    out = np.zeros((len(rows),) + shape, dtype)
    for t, r in enumerate(rows):
        out[t, : r.shape[0], : r.shape[1]] = r
    return out


def _layout(
    real: tuple[int, ...], padded: tuple[int, ...], compat: bool, flat: bool, exact: bool
) -> _Layout:
    """:class:`_Layout` (host arrays) of a ``real`` ``(C, N)`` tensor padded to ``padded``;
    with ``exact`` (every tensor of the group unpadded) no summation plans."""
    (c, n), (cb, nb) = real, padded
    lay = _Layout(np.int32(n), np.int32(c))
    if not compat or exact:
        return lay
    return lay._replace(
        row_plan=_npsum.sum_plan(n, nb),
        chan_plan=_npsum.sum_plan(c, cb),
        flat_plan=_npsum.sum_plan_2d(c, n, cb, nb) if flat else None,
    )


def _real_channels(res: SearchResult, t: int, c: int) -> SearchResult:
    """Tensor ``t`` of a group's stacked result, its ``c`` real channels only (host arrays)."""
    cands = res.candidates[t]
    ranges = cands.ndim == res.errors[t].ndim + 1
    return SearchResult(
        res.param[t, :c],
        res.loss[t, :c],
        res.errors[t, ..., :c],
        cands[..., :c, :] if ranges else cands[..., :c],
    )


class _Prepared:
    """A validated tensor in the ``(C, N)`` search layout."""

    def __init__(
        self,
        tensor: Any,
        hessian: Any,
        *,
        per_channel: bool,
        channel_axis: int,
        error_method: ErrorMethod,
        compat: bool,
        fn: str,
        group_size: int | None = None,
    ) -> None:
        x = as_float_array(tensor, "tensor", fn)
        self.shape = tuple(x.shape)
        self.dtype = np.dtype(x.dtype)
        ndim = max(len(self.shape), 1)
        x = np.asarray(x).reshape(self.shape or (1,))
        axis = check_axis(channel_axis, ndim, "channel_axis", fn) if per_channel else None
        self.axis = axis  # None: per tensor
        if axis is not None:
            x = np.moveaxis(x, axis, 0)
        self.x2d = x.reshape(x.shape[0] if per_channel else 1, -1)
        self.groups = _groups_of(self.x2d.shape, group_size, self.shape, fn)  # None: ungrouped
        self.w2d: np.ndarray | None = None  # sqrt(hessian) in the (C, N) layout, HMSE only
        if error_method is ErrorMethod.HMSE:
            if hessian is None:
                raise ValueError(
                    f"{fn}: error_method='hmse' needs hessian= (per-element scores, the "
                    "tensor's shape)"
                )
            h = np.asarray(as_float_array(hessian, "hessian", fn))
            if tuple(h.shape) != self.shape:
                raise ValueError(
                    f"{fn}: hessian shape {tuple(h.shape)} does not match the tensor's shape "
                    f"{self.shape}"
                )
            if np.any(h < 0):
                raise ValueError(f"{fn}: hessian scores must be >= 0, found negative scores")
            h = h.reshape(self.shape or (1,))
            if axis is not None and not compat:
                h = np.moveaxis(h, axis, 0)
            # compat: [quirk] MCT pairs scores in their original order (reshaped along axis 0).
            self.w2d = np.sqrt(h.astype(np.float64 if compat else np.float32)).reshape(
                self.x2d.shape
            )
        if self.groups is not None:  # each (channel, group) is a row of the search
            self.x2d = self.x2d.reshape(-1, self.x2d.shape[1] // self.groups)
            if self.w2d is not None:
                self.w2d = self.w2d.reshape(self.x2d.shape)

    def out_shape(self, per_channel: bool) -> tuple[int, ...]:
        if self.groups is not None:
            return (-1, self.groups)
        if not per_channel or self.axis is None:
            return ()
        shape = [1] * len(self.shape)
        shape[self.axis] = -1
        return tuple(shape)


def check_group_size(
    group_size: Any, *, per_channel: bool, error_method: ErrorMethod, compat: bool, fn: str
) -> int | None:
    """``group_size`` checked against the other options: ``None``, or a positive int with
    ``per_channel``, not KL, not ``mct_compat``.

    KL is refused: it compares 2048-bin histograms of a row with its quantized histogram, and
    a group of ``g`` (32..128) values fills at most ``g`` bins, so the divergence measures
    the binning, not the clipping error; it would also leave the fixed tile programs.
    """
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral):
        raise TypeError(f"{fn}: group_size must be an int or None, got {type(group_size).__name__}")
    if group_size < 1:
        raise ValueError(f"{fn}: group_size must be a positive int, got {group_size}")
    if compat:
        raise ValueError(
            f"{fn}: group_size={group_size} is not available with mct_compat=True (MCT 2.6.1 "
            "has per-tensor and per-channel weights only)"
        )
    if not per_channel:
        raise ValueError(
            f"{fn}: group_size={group_size} needs per_channel=True (groups split each output "
            "channel)"
        )
    if error_method is ErrorMethod.KL:
        raise ValueError(
            f"{fn}: error_method='kl' has no per-group mode: a group of {group_size} values "
            "fills at most that many of KL's 2048 histogram bins, so the divergence does not "
            "measure the clipping error; use mse, mae, lp, hmse or noclipping"
        )
    return int(group_size)


def _groups_of(
    x2d_shape: tuple[int, int], group_size: int | None, shape: tuple[int, ...], fn: str
) -> int | None:
    """Groups per channel row of a ``(C, N)`` layout (``None`` without ``group_size``)."""
    if group_size is None:
        return None
    n = x2d_shape[1]
    if len(shape) < 2 or n % group_size:
        raise ValueError(
            f"{fn}: group_size={group_size} does not divide the input size {n} of a tensor of "
            f"shape {shape} (the product of its axes other than channel_axis)"
        )
    return n // group_size


def _finish(
    res: SearchResult, prep: _Prepared, *, method, error_method, per_channel, compat, return_errors
):
    """Reshape a search result to the tensor's layout and apply the final range rules."""
    shape = prep.out_shape(per_channel)
    param = np.asarray(res.param)
    extra = {}
    if return_errors:
        extra = dict(errors=jax.device_put(res.errors), candidates=jax.device_put(res.candidates))
    if method is not QuantizationMethod.UNIFORM:
        t = param.reshape(shape) if per_channel else param.reshape(())
        return QParams(threshold=jax.device_put(t), signed=True, **extra)
    a, b = param[:, 0].copy(), param[:, 1].copy()
    if compat:
        # [quirk] MCT's per-tensor NOCLIPPING range is a pair of scalars, for which the rule is
        # applied unconditionally; for arrays only where the range has zero width.
        same = (a == a) if (error_method is ErrorMethod.NOCLIPPING and not per_channel) else a == b
        a[same & (a > 0)] = 0
        b[same & (b < 0)] = 0
    else:
        # A zero-width range has no grid: widen it to include 0 (all-zero: [0, 2^-16]).
        same = a == b
        a[same] = np.minimum(a[same], 0)
        b[same] = np.maximum(b[same], 0)
        b = np.where(a == b, a + MIN_THRESHOLD, b)
    if not per_channel:
        a, b = a.reshape(()), b.reshape(())
    else:
        a, b = a.reshape(shape), b.reshape(shape)
    return QParams(range_min=jax.device_put(a), range_max=jax.device_put(b), signed=True, **extra)


def weights_qparams(
    tensor,
    *,
    n_bits: int = 8,
    method="symmetric",
    error_method="mse",
    per_channel: bool = True,
    channel_axis: int = 0,
    p: float = 2.0,
    hessian=None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    return_errors: bool = False,
    group_size: int | None = None,
) -> QParams:
    """Choose the quantization parameters of a weight tensor by minimising an error metric.

    Args:
      tensor: float array, any rank (torch layout: output channels on axis 0 for conv/linear).
      n_bits: bit width, 1..16.
      method: ``QuantizationMethod`` or its name: ``"power_of_two"``, ``"symmetric"``,
        ``"uniform"``.
      error_method: ``ErrorMethod`` or its name: ``"noclipping"``, ``"mse"``, ``"mae"``,
        ``"kl"``, ``"lp"``, ``"hmse"``.
      per_channel: one parameter per slice along ``channel_axis`` (else one for the tensor).
      channel_axis: the channel axis (``per_channel`` only).
      p: exponent of ``"lp"``.
      hessian: per-element Hessian scores, ``tensor``'s shape, ``>= 0`` (``"hmse"`` only).
        HMSE minimises ``mean(hessian * (x - q)^2)`` (per channel when ``per_channel``).
      mct_compat: reproduce MCT 2.6.1 exactly, quirks included, in float64.
      min_threshold: floor of every threshold.
      return_errors: also return every candidate's error (``QParams.errors``/``candidates``;
        their channel axis has one entry per row of the search: ``C * G`` with groups).
      group_size: jq only: one parameter per group of ``group_size`` consecutive inputs of each
        output channel (per-group granularity, as llm-compressor's / compressed-tensors'
        ``group_size``). The inputs of a channel are the tensor's other axes flattened in
        order after moving ``channel_axis`` to the front: a Linear weight ``(out, in)``
        groups along ``in``; a torch conv kernel ``(out, in, kh, kw)`` along its flattened
        ``in x kh x kw``. Must divide that size. Every method and error method but KL (a
        group fills too few histogram bins); not with ``mct_compat`` (MCT has no per-group
        mode). Each (channel, group) is searched as a channel of the ``(C * G, group_size)``
        matrix: the same results, on the same fixed tile programs (no new compiled program
        per shape).

    Returns:
      ``QParams``: ``threshold`` (power-of-two, symmetric) or ``range_min``/``range_max``
      (uniform), shaped ``(1, .., C, .., 1)`` per channel, ``()`` per tensor, or
      ``(C, G)`` with ``group_size`` (``G = inputs / group_size``; pass ``group_size`` and
      ``channel_axis`` to :func:`jq.fake_quant` too); ``signed=True``.

    Raises:
      ValueError / TypeError: bad input, naming the argument (a ``group_size`` that does not
        divide the input size, or with KL, ``mct_compat`` or ``per_channel=False``).

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
      >>> qp = jq.weights_qparams(w, method="symmetric", error_method="mse")
      >>> qp.threshold.shape  # one threshold per output channel (axis 0)
      (4, 1, 1, 1)
      >>> [round(float(t), 3) for t in qp.threshold.ravel()]
      [2.421, 2.276, 2.225, 1.72]
      >>> wq = jq.fake_quant(w, qp, n_bits=8)
      >>> wq.shape, wq.dtype
      ((4, 3, 3, 3), dtype('float32'))
      >>> lin = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
      >>> qg = jq.weights_qparams(lin, n_bits=4, group_size=32)
      >>> qg.threshold.shape  # (out_channels, in / group_size)
      (8, 2)
      >>> jq.fake_quant(lin, qg, n_bits=4, group_size=32).shape
      (8, 64)

    Reference: MCT 2.6.1's ``power_of_two_selection_tensor``, ``symmetric_selection_tensor``,
    ``uniform_selection_tensor``.
    """
    return weights_qparams_batch(
        [tensor],
        n_bits=n_bits,
        method=method,
        error_method=error_method,
        per_channel=per_channel,
        channel_axis=channel_axis,
        p=p,
        hessians=None if hessian is None else [hessian],
        mct_compat=mct_compat,
        min_threshold=min_threshold,
        return_errors=return_errors,
        group_size=group_size,
        _fn="weights_qparams",
    )[0]


def weights_qparams_batch(
    tensors: Sequence,
    *,
    n_bits: int = 8,
    method="symmetric",
    error_method="mse",
    per_channel: bool = True,
    channel_axis: int | Sequence[int] = 0,
    p: float = 2.0,
    hessians: Sequence | None = None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    return_errors: bool = False,
    mesh: Any = None,
    group_size: int | None = None,
    _fn: str = "weights_qparams_batch",
    _exact_shapes: bool = False,
) -> list[QParams]:
    """:func:`weights_qparams` for many tensors in one compiled call.

    In the default mode (every error method but KL, tensors up to 4M elements) the tensors'
    rows are packed into fixed-size tiles and searched by a fixed set of compiled programs
    whatever the shapes and options (:mod:`.tiled_weights`); with ``mct_compat=True`` (and for
    KL) tensors of the same bucketed layout are stacked and searched one after the other with
    ``lax.map``, every layout in the same compiled program. Results equal the single calls.

    Args:
      tensors: list of float arrays.
      channel_axis: one axis for all, or one per tensor.
      hessians: ``None`` or one score array per tensor (``"hmse"``).
      mesh: jq only: a ``jax.sharding.Mesh`` whose devices split the tensors of each search
        layout between them (same results); ``None``: one device.
      group_size: one for all tensors (see :func:`weights_qparams`); results ``(C, G)``.
      Other arguments as in :func:`weights_qparams`.

    Returns:
      One ``QParams`` per tensor, in order.
    """
    fn = _fn
    ensure_compilation_cache()
    n_bits, method, error_method, p, min_threshold = parse_options(
        n_bits, method, error_method, p, min_threshold, fn
    )
    group_size = check_group_size(
        group_size,
        per_channel=per_channel,
        error_method=error_method,
        compat=mct_compat,
        fn=fn,
    )
    preps = _prepare_all(
        tensors,
        channel_axis,
        hessians,
        per_channel=per_channel,
        error_method=error_method,
        compat=mct_compat,
        fn=fn,
        group_size=group_size,
    )
    mesh = check_mesh(mesh, fn)
    if not mct_compat and tiled([prep.x2d for prep in preps], error_method):
        devices = None if mesh is None else list(mesh.devices.flat)
        options = (n_bits, method, error_method, per_channel, p, min_threshold)
        return _tiled_call(preps, *options, return_errors, devices)
    groups = _group(preps, per_channel=per_channel, compat=mct_compat, exact=_exact_shapes)
    static = dict(
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        compat=mct_compat,
    )
    with x64(mct_compat):
        outs = _search_stacked(preps, groups, p, min_threshold, static, _exact_shapes, mesh)
    with x64(mct_compat):
        return _unstack(outs, preps, groups, static, return_errors)


def _tiled_call(
    preps, n_bits, method, error_method, per_channel, p, min_threshold, return_errors, devices
) -> list[QParams]:
    """The default mode's route: every tensor searched on tiles (:mod:`.tiled_weights`)."""
    hmse = error_method is ErrorMethod.HMSE
    results = search_tiled(
        [prep.x2d.astype(np.float32) for prep in preps],
        [cast(np.ndarray, prep.w2d) for prep in preps] if hmse else None,
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        p=p,
        min_threshold=min_threshold,
        return_errors=return_errors,
        devices=devices,
    )
    options = dict(method=method, error_method=error_method, per_channel=per_channel)
    return [
        _finish(res, prep, compat=False, return_errors=return_errors, **options)
        for res, prep in zip(results, preps, strict=True)
    ]


_GroupKey = tuple[tuple[int, ...], bool]  # (padded (C, N) search layout, float32 start)


def _prepare_all(
    tensors: Sequence[Any],
    channel_axis: int | Sequence[int],
    hessians: Sequence[Any] | None,
    *,
    per_channel: bool,
    error_method: ErrorMethod,
    compat: bool,
    fn: str,
    group_size: int | None = None,
) -> list[_Prepared]:
    """One :class:`_Prepared` per tensor (checks the list and its per-tensor arguments)."""
    if isinstance(tensors, (np.ndarray, jax.Array)) or not isinstance(tensors, Sequence):
        raise TypeError(f"{fn}: tensors must be a list of arrays, got {type(tensors).__name__}")
    axes = channel_axis if isinstance(channel_axis, Sequence) else [channel_axis] * len(tensors)
    hess = hessians if hessians is not None else [None] * len(tensors)
    if len(axes) != len(tensors) or len(hess) != len(tensors):
        raise ValueError(f"{fn}: channel_axis / hessians must have one entry per tensor")
    return [
        _Prepared(
            t,
            h,
            per_channel=per_channel,
            channel_axis=a,
            error_method=error_method,
            compat=compat,
            fn=fn,
            group_size=group_size,
        )
        for t, h, a in zip(tensors, hess, axes, strict=True)
    ]


def _group(
    preps: list[_Prepared], *, per_channel: bool, compat: bool, exact: bool
) -> dict[_GroupKey, list[int]]:
    """Indices of the tensors sharing a search layout (bucketed, or exact with ``exact``) and a
    start precision: each group is searched as one stack."""
    groups: dict[_GroupKey, list[int]] = {}
    for i, prep in enumerate(preps):
        f32_start = bool(compat and prep.dtype == np.float32)
        shape = prep.x2d.shape if exact else _bucket_shape(prep.x2d.shape, per_channel)
        groups.setdefault((tuple(shape), f32_start), []).append(i)
    return groups


def _search_stacked(
    preps: list[_Prepared],
    groups: dict[_GroupKey, list[int]],
    p: float,
    min_threshold: float,
    static: dict[str, Any],
    exact: bool,
    mesh: Mesh | None = None,
) -> list[SearchResult]:
    """Stack every group's padded tensors, scores and layouts and search them all in one
    compiled call (:func:`_search_groups`); host results, one per group (``exact``: the
    groups are unpadded, see :func:`_group`; ``mesh``: stacks padded to a multiple of its
    devices, whose extra entries the caller ignores)."""
    compat = static["compat"]
    dtype = np.float64 if compat else np.float32
    hmse = static["error_method"] is ErrorMethod.HMSE
    flat = hmse and static["per_channel"] and compat
    xs, ws, layouts = [], [], []
    for (shape, _), members in groups.items():
        length = padded_length(len(members), mesh)
        x = _stack_padded([preps[i].x2d for i in members], shape, dtype)
        xs.append(jax.device_put(pad_leading(x, length)))
        w_rows = [cast(np.ndarray, preps[i].w2d) for i in members]  # set where used: HMSE
        w = pad_leading(_stack_padded(w_rows, shape, dtype), length) if hmse else None
        ws.append(None if w is None else jax.device_put(w))
        lays = [_layout(preps[i].x2d.shape, shape, compat, flat, exact) for i in members]
        lay = jax.tree_util.tree_map(lambda *a: np.stack(a), *lays)
        layouts.append(jax.device_put(pad_leading(lay, length)))
    return jax.device_get(
        _search_groups(
            xs,
            ws,
            layouts,
            p,
            jnp.asarray(min_threshold, dtype),
            f32_starts=tuple(k[1] for k in groups),
            mesh=mesh,
            **static,
        )
    )


def _unstack(
    outs: list[SearchResult],
    preps: list[_Prepared],
    groups: dict[_GroupKey, list[int]],
    static: dict[str, Any],
    return_errors: bool,
) -> list[QParams]:
    """Each tensor's :class:`QParams` from its group's stacked result, in the input order."""
    results: dict[int, QParams] = {}
    for key, res in zip(groups, outs, strict=True):
        for j, i in enumerate(groups[key]):
            one = _real_channels(res, j, preps[i].x2d.shape[0])
            results[i] = _finish(
                one,
                preps[i],
                method=static["method"],
                error_method=static["error_method"],
                per_channel=static["per_channel"],
                compat=static["compat"],
                return_errors=return_errors,
            )
    return [results[i] for i in range(len(preps))]
