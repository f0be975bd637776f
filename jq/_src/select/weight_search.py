"""The search maths for one weight tensor: its loss per candidate and the search from MCT's
start (MCT 2.6.1's ``power_of_two_selection_tensor``, ``symmetric_selection_tensor`` and
``uniform_selection_tensor``, ``core/common/quantization/quantization_params_generation/``),
on a padded ``(C, N)`` layout whose real extent is a runtime :class:`Layout`, so one compiled
search serves every tensor of a bucket. The candidate searches are :mod:`.search`'s.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from . import metrics as _metrics
from . import npsum as _npsum
from .enums import ErrorMethod, QuantizationMethod
from .histogram import _histogram_impl
from .kl import kl_tensor_from_hist
from .metrics import Mean
from .quantizers import absmax_factor, pot, threshold_quantize, uniform_quantize
from .search import LossFn, SearchResult, pot_search, symmetric_search, uniform_search
from .tiled_weights import SYMMETRIC_ROUNDS, UNIFORM_ROUNDS

KL_BINS = 2048
POT_CANDIDATES = 10
UNIFORM_GRID = 8
CANDIDATE_BATCH = 1  # candidates evaluated per step of lax.map (see _search.evaluate)
MCT_UNIFORM_KL_BITS = 8  # [quirk] MCT never forwards n_bits to the uniform-weights KL


class Layout(NamedTuple):
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


def _masked(x2d: jax.Array, layout: Layout) -> jax.Array:
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


def _means(layout: Layout, cols: jax.Array, compat: bool) -> tuple[Mean, Mean, Mean | None]:
    """``(row mean (C, N) -> (C,), channel mean (C,) -> (), flat mean)`` over real values:
    NumPy's order in compat mode (the layout's plans), a masked sum over ``n`` otherwise."""
    return _numpy_means(layout) if compat else _masked_means(layout, cols)


def _numpy_means(layout: Layout) -> tuple[Mean, Mean, Mean]:
    """:func:`_means` in NumPy's summation order (compat mode): over the real elements by the
    layout's plans, or by static-length sums when it has none (an exact-shape search)."""
    row_plan, chan_plan, flat_plan = layout.row_plan, layout.chan_plan, layout.flat_plan
    if row_plan is None or chan_plan is None:  # exact shapes: static sums, faster than plans
        return _npsum.mean, _npsum.mean, _npsum.mean

    def row(v: jax.Array) -> jax.Array:
        return _npsum.planned_mean(v, row_plan, layout.n.astype(v.dtype))

    def chan(v: jax.Array) -> jax.Array:
        return _npsum.planned_mean(v, chan_plan, layout.c.astype(v.dtype))

    def flat(v: jax.Array) -> jax.Array:
        assert flat_plan is not None  # built for MCT's per-channel HMSE, its only user
        nc = (layout.n * layout.c).astype(v.dtype)
        return _npsum.planned_mean(v, flat_plan, nc)

    return row, chan, flat


def _masked_means(layout: Layout, cols: jax.Array) -> tuple[Mean, Mean, None]:
    """:func:`_means` as masked sums over the real elements (default mode; no flat mean)."""

    def row(v: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(cols, v, 0), axis=-1) / layout.n.astype(v.dtype)

    def chan(v: jax.Array) -> jax.Array:
        real = jnp.arange(v.shape[-1]) < layout.c
        return jnp.sum(jnp.where(real, v, 0), axis=-1) / layout.c.astype(v.dtype)

    return row, chan, None


def _loss_fn(
    x2d: jax.Array,
    w2d: jax.Array | None,
    p: float,
    layout: Layout,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    per_channel: bool,
    compat: bool,
) -> LossFn:
    """Per-candidate loss ``params -> (C,)`` for a padded ``(C, N)`` tensor (MCT 2.6.1's
    ``get_threshold_selection_tensor_error_function``)."""
    uniform = method is QuantizationMethod.UNIFORM
    cols = _masked(x2d, layout)
    row_mean, _, flat_mean = _means(layout, cols, compat)

    def hist(row: jax.Array) -> tuple[jax.Array, jax.Array]:
        edges_counts: tuple[jax.Array, jax.Array] = _histogram_impl(row, None, KL_BINS, cols)
        return edges_counts

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
            def swapped(t: jax.Array) -> jax.Array:
                q = threshold_quantize(x2d, t[:, None], n_bits, True)
                e, c = jax.vmap(hist)(q)
                return kl_rows(e, c, -t, t)

            return swapped
        return lambda t: kl_rows(edges, counts, -t, t)

    def metric(x: jax.Array, q: jax.Array) -> jax.Array:
        if error_method is ErrorMethod.MAE:
            return _metrics.mae(x, q, exact=compat, mean=row_mean)
        if error_method is ErrorMethod.LP:
            return _metrics.lp(x, q, p, exact=compat, mean=row_mean)
        if error_method is ErrorMethod.HMSE:
            if compat and per_channel:  # [quirk] one global, normalised scalar
                e = _metrics.hmse_global_normalised(x, q, cast(jax.Array, w2d), mean=flat_mean)
                return jnp.broadcast_to(e, x.shape[:1])
            return _metrics.hmse(x, q, cast(jax.Array, w2d), exact=compat, mean=row_mean)
        return _metrics.mse(x, q, exact=compat, mean=row_mean)

    if uniform:

        def uniform_loss(r: jax.Array) -> jax.Array:
            q = uniform_quantize(x2d, r[:, 0:1], r[:, 1:2], n_bits, exact=compat)[0]
            loss = metric(x2d, q)
            if not compat:  # a zero-width candidate range has no grid
                loss = jnp.where(r[:, 0] == r[:, 1], jnp.inf, loss)
            return loss

        return uniform_loss
    return lambda t: metric(x2d, threshold_quantize(x2d, t[:, None], n_bits, True, exact=compat))


def search_weights(
    x2d: jax.Array,
    w2d: jax.Array | None,
    p: float,
    min_threshold: jax.Array,
    layout: Layout,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    per_channel: bool,
    compat: bool,
    f32_start: bool,
) -> SearchResult:
    """Search one padded ``(C, N)`` tensor; returns ``(C,)`` thresholds or ``(C, 2)`` ranges
    (padded channels' entries are meaningless; ``layout`` says which are real).

    ``f32_start`` (compat, float32 weights): MCT's uniform start ``[min, max]`` stays float32,
    so its quantization is float32 arithmetic [quirk] (HMSE's scores stay float64, as MCT's);
    the rest of the search is float64.
    """
    options: dict[str, Any] = dict(
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


def _f32_start_loss(
    x2d: jax.Array,
    w2d: jax.Array | None,
    p: float,
    layout: Layout,
    start: jax.Array,
    options: dict[str, Any],
) -> jax.Array:
    """The uniform start's loss with the tensor and the start range in float32 (MCT's own
    dtypes for float32 weights), as ``x2d``'s dtype."""
    # Only the tensor and its start range are float32 in MCT: HMSE's scores stay
    # float64 (``sqrt(mean(scores))``), so the weighted error is float64 [quirk].
    x32 = x2d.astype(jnp.float32)
    loss_fn32 = _loss_fn(x32, w2d, p, layout, **options)
    return loss_fn32(start.astype(jnp.float32)).astype(x2d.dtype)


def _pot_weights(
    loss_fn: LossFn,
    absmax: jax.Array,
    min_threshold: jax.Array,
    empty: jax.Array,
    error_method: ErrorMethod,
    compat: bool,
) -> SearchResult:
    """Power-of-two thresholds from the rows' ``absmax``: ``pot(absmax)`` (no clipping) or the
    best of the ``POT_CANDIDATES`` thresholds ``2 pot(absmax) / 2^i``, floored at
    ``min_threshold``."""
    if error_method is ErrorMethod.NOCLIPPING:
        return SearchResult(pot(absmax, min_threshold), jnp.zeros_like(absmax), empty, empty)
    t0 = 2 * pot(absmax, min_threshold)
    res = pot_search(loss_fn, t0, n_cand=POT_CANDIDATES, compat=compat, batch_size=CANDIDATE_BATCH)
    return res._replace(param=jnp.maximum(res.param, min_threshold))


def _symmetric_weights(
    loss_fn: LossFn,
    absmax: jax.Array,
    min_threshold: jax.Array,
    empty: jax.Array,
    chan_mean: Mean,
    error_method: ErrorMethod,
    per_channel: bool,
    compat: bool,
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
