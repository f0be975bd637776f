"""Histograms of activations: a NumPy-rule histogram and mergeable, batch-by-batch states.

Three pieces (MCT 2.6.1 collects activation statistics with ``HistogramCollector`` and
``WeightedHistogramCollector``, ``core/common/collectors/``):

* :func:`histogram` -- ``np.histogram(x, bins=n_bins)`` in JAX: ``n_bins`` equal bins over
  ``[min x, max x]`` (``[v - 0.5, v + 0.5]`` for constant input), the last bin closed, the bin of
  each value chosen by NumPy's rule (scaled index, then corrected by comparisons against the
  edges), optional per-element weights summed per 65536-element block as NumPy does. For float64
  input (under ``jax.enable_x64``) edges and counts equal NumPy's bit for bit.
* :class:`HistogramState` (default mode) -- a fixed-size, mergeable state. Values are counted on
  a fine grid of ``8 * n_bins`` bins whose width is a power of two ``2**e`` and whose edges are
  multiples of ``2**e``. When the running range outgrows the grid, ``e`` grows and neighbouring
  bins are merged exactly (bin ``j`` at width ``2**e`` lies inside bin ``j >> s`` at width
  ``2**(e+s)``). ``e`` and the grid offset are functions of the running ``[min, max]`` only, so
  the fine counts are the counts of all data on one canonical grid: **for unweighted data the
  state, and therefore the finalized histogram, does not depend on the order or grouping of the
  batches, bit for bit** (while a fine bin holds fewer than 2**24 values in float32, 2**53 in
  float64; at any count with ``integer_counts=True``, two int32 words per bin, which the PTQ
  statistics use). Weighted counts are order-invariant up to the rounding of the per-bin sums.
  :func:`histogram_finalize` returns ``n_bins`` bins over ``[global min, global max]`` (NumPy
  edges), re-binning the fine counts by linear interpolation of the cumulative count; the
  cumulative count at each output edge is exact up to the mass of the one fine bin that
  straddles it (fine width ``< 2 (max - min) / (8 n_bins - 4)``, under a quarter of an output
  bin; relative resolution is floored at ``2**-30 * max|x|`` so indices fit int32).
* :class:`MCTHistogramState` (``mct_compat=True``) -- MCT 2.6.1's ``HistogramCollector`` /
  ``WeightedHistogramCollector`` bit for bit: each batch is cast to float64 and histogrammed over
  its own ``[min, max]`` (by the jitted :func:`histogram`); batches are kept and merged on
  read onto ``linspace(global min edge, global max edge, n_bins + 1)`` by interpolating each
  batch's cumulative count (``np.interp``) and summing the differences in batch order.

Weights (HMSE activation histograms): ``None`` or all-zero weights become ones (MCT's rule, both
modes). Default mode broadcasts weights against ``x`` by NumPy rules; compat mode reproduces
MCT's checks (leading-padded shape check, then trailing-padded reshape and broadcast).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ..runtime.jit import jit
from . import npsum as _npsum
from .buckets import bucket

_NP_BLOCK = 65536  # np.histogram's block size (weights are summed per block, then added)
_OVERSAMPLE = 8  # fine bins per output bin in the default-mode state
_E_MIN = -120  # smallest fine-bin exponent: bins never narrower than 2**-120
_MAG_BITS = 30  # |x| / 2**e < 2**30 so fine-bin indices fit int32


# --------------------------------------------------------------------------------------------
# validation


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_n_bins(n_bins, fn: str) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"{fn}: n_bins must be an int, got {n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"{fn}: n_bins must be >= 1, got {n_bins}")
    return int(n_bins)


def _as_float(x, fn: str, name: str, dtype=None) -> jax.Array:
    if not _is_tracer(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{fn}: {name} must be real, got dtype {x.dtype}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)) and (
        x.dtype != jnp.bool_
    ):
        raise TypeError(f"{fn}: {name} must be a real numeric array, got dtype {x.dtype}")
    if dtype is None:
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jax.device_put(x)  # float64 becomes float32 unless x64 is enabled
        dtype = jnp.dtype(jnp.result_type(float))
    if _is_tracer(x):
        return jnp.asarray(x, dtype=dtype)
    # Convert on the host: an eager conversion compiles one small program per shape.
    return jax.device_put(np.asarray(x).astype(dtype, copy=False))


def _check_values(x: jax.Array, fn: str, name: str, *, nonnegative: bool = False) -> None:
    """Eager checks (skipped for traced values, which cannot raise)."""
    if x.size == 0:
        raise ValueError(f"{fn}: {name} is empty; a histogram needs at least one value")
    if _is_tracer(x):
        return
    xv = np.asarray(x)
    if np.isnan(xv).any():
        raise ValueError(f"{fn}: {name} contains NaN; histogram range would not be finite")
    if np.isinf(xv).any():
        raise ValueError(f"{fn}: {name} contains inf; histogram range would not be finite")
    if nonnegative and (xv < 0).any():
        raise ValueError(f"{fn}: {name} has negative values; weights must be >= 0")


# --------------------------------------------------------------------------------------------
# NumPy-rule building blocks (traceable)


def _outer_edges(x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    if mask is None:
        first, last = jnp.min(x), jnp.max(x)
    else:
        first, last = jnp.min(jnp.where(mask, x, jnp.inf)), jnp.max(jnp.where(mask, x, -jnp.inf))
    return widen_constant(first, last)


def widen_constant(first: jax.Array, last: jax.Array) -> tuple[jax.Array, jax.Array]:
    """NumPy's histogram range of data in ``[first, last]``: ``[v - 0.5, v + 0.5]`` when
    constant."""
    same = first == last
    return jnp.where(same, first - 0.5, first), jnp.where(same, last + 0.5, last)


def _bin_index(x: jax.Array, edges: jax.Array, first, last, n_bins: int) -> jax.Array:
    """NumPy's bin rule: scaled index, then corrected against the edges; last bin closed."""
    f = ((x - first) / (last - first)) * n_bins
    idx = jnp.clip(f, 0, n_bins).astype(jnp.int32)  # x in [first, last] so f >= 0: trunc == floor
    idx = jnp.where(idx == n_bins, n_bins - 1, idx)
    idx = jnp.where(x < edges[idx], idx - 1, idx)
    idx = jnp.where((x >= edges[idx + 1]) & (idx != n_bins - 1), idx + 1, idx)
    return jnp.clip(idx, 0, n_bins - 1)


def _histogram_impl(
    x: jax.Array,
    weights: jax.Array | None,
    n_bins: int,
    mask: jax.Array | None = None,
    bounds: tuple[jax.Array, jax.Array] | None = None,
):
    """``np.histogram(x[mask], n_bins, weights=weights[mask])``; ``mask`` (``x``'s shape or
    broadcastable, default all) marks the real values of a padded ``x``. ``bounds``: the
    outer edges to use (a shard of a batch histograms on the whole batch's range)."""
    x = x.ravel()
    if mask is not None:
        mask = jnp.broadcast_to(mask, x.shape)
    first, last = _outer_edges(x, mask) if bounds is None else bounds
    edges = _npsum.linspace(first, last, n_bins + 1)
    if mask is not None:
        x = jnp.where(mask, x, first)
    idx = _bin_index(x, edges, first, last, n_bins)
    if weights is None:
        ones = jnp.ones(idx.shape, jnp.int32) if mask is None else mask.astype(jnp.int32)
        counts = jax.ops.segment_sum(ones, idx, n_bins)
        return edges, counts.astype(x.dtype)
    w = weights.ravel()
    if mask is not None:  # padding sits after the real values, so NumPy's blocks are kept
        w = jnp.where(mask, w, 0)
    n = x.shape[0]
    n_blocks = -(-n // _NP_BLOCK)
    # NumPy: per 65536-element block, bincount (a sequential float64 sum), cast to the weights'
    # dtype, added to the running counts. Reproduced block by block for bit parity.
    acc_dtype = jnp.promote_types(w.dtype, jnp.float64 if jax.enable_x64.value else w.dtype)
    block = jnp.arange(n, dtype=jnp.int32) // _NP_BLOCK
    sums = jax.ops.segment_sum(w.astype(acc_dtype), idx + block * n_bins, n_blocks * n_bins)
    sums = sums.reshape(n_blocks, n_bins).astype(w.dtype)

    def add(acc, s):
        return acc + s, None

    counts, _ = jax.lax.scan(add, jnp.zeros(n_bins, w.dtype), sums)
    return edges, counts


@functools.partial(jit, static_argnames=("n_bins",))
def _histogram_jit(x, weights, n, n_bins):
    """:func:`_histogram_impl` of the first ``n`` values of a padded flat ``x`` (``weights``
    alike)."""
    return _histogram_impl(x, weights, n_bins, jnp.arange(x.shape[0]) < n)


def _broadcast(w, shape):
    """``broadcast_to`` on the host for concrete values (an eager jax op compiles per shape)."""
    if _is_tracer(w):
        return jnp.broadcast_to(w, shape)
    return jax.device_put(np.broadcast_to(np.asarray(w), shape))


def _pad_flat(x, w=None):
    """``(x, w, n)``: concrete ``x`` (and ``w``, ``x``'s shape) flattened and zero-padded to a
    size bucket, ``n`` the real size; so one compiled histogram serves every size of a bucket.
    Traced values are returned flat and unpadded."""
    n = int(np.prod(x.shape))
    if _is_tracer(x) or (w is not None and _is_tracer(w)):
        return x.ravel(), (None if w is None else w.ravel()), n
    size = bucket(n)

    def pad(a):
        a = np.asarray(a).ravel()
        return jax.device_put(np.concatenate([a, np.zeros(size - n, a.dtype)]))

    return pad(x), (None if w is None else pad(w)), n


def histogram(
    x: ArrayLike, *, n_bins: int = 2048, weights: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array]:
    """Histogram of ``x`` with NumPy's rule: ``n_bins`` equal bins over ``[min x, max x]``.

    Equivalent to ``np.histogram(x, bins=n_bins, weights=weights)``; bit for bit for float64
    input under ``jax.enable_x64``. Constant input gets the range ``[v - 0.5, v + 0.5]``.

    Args:
      x: values, any shape (flattened); real dtype (integers are cast to the default float).
      n_bins: number of bins (static), >= 1.
      weights: optional per-element weights, broadcastable to ``x`` (NumPy rules); the counts
        take their dtype.

    Returns:
      ``(edges, counts)``: ``(n_bins + 1,)`` edges and ``(n_bins,)`` counts (float; the dtype of
      ``x``, or of ``weights`` when given).

    Raises:
      ValueError: empty ``x``, NaN/inf values (checked when ``x`` is concrete), ``n_bins < 1``.
      TypeError: complex or non-numeric ``x``, non-integer ``n_bins``.

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> edges, counts = jq.histogram(np.arange(10.0), n_bins=4)
      >>> edges.tolist()
      [0.0, 2.25, 4.5, 6.75, 9.0]
      >>> counts.tolist()
      [3.0, 2.0, 2.0, 3.0]
    """
    fn = "jq.histogram"
    n_bins = _check_n_bins(n_bins, fn)
    x = _as_float(x, fn, "x")
    _check_values(x, fn, "x")
    w = None
    if weights is not None:
        w = _as_float(weights, fn, "weights")
        _check_values(w, fn, "weights")
        try:
            w = _broadcast(w, x.shape)
        except ValueError as err:
            raise ValueError(
                f"{fn}: weights of shape {w.shape} do not broadcast to x's shape {x.shape}"
            ) from err
    xp, wp, n = _pad_flat(x, w)
    return _histogram_jit(xp, wp, n, n_bins)


# --------------------------------------------------------------------------------------------
# default mode: fixed-size state on a power-of-two grid


class HistogramState(NamedTuple):
    """Mergeable histogram state (default mode); a pytree, returnable from ``jax.jit``.

    Fine bin ``r`` covers ``[(offset + r) * 2**exponent, (offset + r + 1) * 2**exponent)``.

    Attributes:
      counts: ``(8 * n_bins,)`` fine counts (float), or, for a state made with
        ``integer_counts=True``, ``(2, 8 * n_bins)`` int32 words of exact counts
        ``counts[0] + 2**16 * counts[1]`` (``counts[0] < 2**16``): exact up to 2**46 values
        in all, however they are batched, sharded or merged.
      minimum, maximum: running min / max of the data (``+inf`` / ``-inf`` when empty).
      exponent: int32 scalar, log2 of the fine-bin width.
      offset: int32 scalar, index of the first fine bin on the ``2**exponent`` grid.
    """

    counts: jax.Array
    minimum: jax.Array
    maximum: jax.Array
    exponent: jax.Array
    offset: jax.Array


class MCTHistogramState(NamedTuple):
    """MCT-compatible collector state: the per-batch histograms, merged lazily on finalize.

    Attributes:
      n_bins: number of bins per batch histogram.
      bins: tuple of ``(n_bins + 1,)`` float64 edges, one per batch.
      counts: tuple of ``(n_bins,)`` counts, one per batch.
    """

    n_bins: int
    bins: tuple = ()
    counts: tuple = ()


def _pow2(k: jax.Array, dtype) -> jax.Array:
    """Exact ``2.0**k`` for int ``k`` in ``[-126, 127]`` (built from the exponent bits)."""
    if jnp.dtype(dtype) == jnp.float64:
        bits = (k.astype(jnp.int64) + 1023) << 52
        return jax.lax.bitcast_convert_type(bits, jnp.float64)
    bits = (k.astype(jnp.int32) + 127) << 23
    return jax.lax.bitcast_convert_type(bits, jnp.float32).astype(dtype)


def _ceil_log2(v: jax.Array) -> jax.Array:
    """Exact ``ceil(log2(v))`` for ``v > 0`` (frexp: ``v = m 2**k``, ``m`` in [0.5, 1))."""
    m, k = jnp.frexp(v)
    return jnp.where(m == 0.5, k - 1, k).astype(jnp.int32)


def _grid_exponent(lo, hi, n_fine: int, prev) -> jax.Array:
    """Canonical fine-bin exponent of the range ``[lo, hi]``: a non-decreasing function of it.

    ``2**e >= (hi - lo) / (n_fine - 4)`` keeps the range inside ``n_fine - 2`` bins;
    ``2**e >= 2**-30 max(|lo|, |hi|)`` keeps indices inside int32.
    """
    span = (hi - lo) / (n_fine - 4)
    e_span = jnp.where(span > 0, _ceil_log2(jnp.where(span > 0, span, 1.0)), _E_MIN)
    amag = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
    _, k = jnp.frexp(jnp.where(amag > 0, amag, 1.0))
    e_mag = jnp.where(amag > 0, k.astype(jnp.int32) - _MAG_BITS, _E_MIN)
    return jnp.maximum(jnp.maximum(e_span, e_mag), jnp.maximum(prev, _E_MIN)).astype(jnp.int32)


def _fine_index(x: jax.Array, e: jax.Array) -> jax.Array:
    return jnp.floor(x * _pow2(-e, x.dtype)).astype(jnp.int32)


_WORD = 16  # integer counts: low words hold 16 bits, so 2**14 summed low words fit int32


def _is_integer(counts: jax.Array) -> bool:
    return jnp.issubdtype(counts.dtype, jnp.integer)


def _carry(words: jax.Array) -> jax.Array:
    """Integer count words ``(2, n)`` with the low words' overflow moved to the high words."""
    lo, hi = words[0], words[1]
    return jnp.stack([lo & ((1 << _WORD) - 1), hi + (lo >> _WORD)])


def _add_counts(counts: jax.Array, new: jax.Array) -> jax.Array:
    """``counts`` plus per-bin ``new`` counts (``(n,)``, int32 or float, like ``counts``)."""
    if not _is_integer(counts):
        return counts + new
    return _carry(counts + jnp.stack([new & ((1 << _WORD) - 1), new >> _WORD]))


def _n_fine(counts: jax.Array) -> int:
    return counts.shape[-1]


def float_counts(state: HistogramState) -> jax.Array:
    """``(8 * n_bins,)`` fine counts of ``state`` in its float dtype (integer words combined)."""
    c = state.counts
    if not _is_integer(c):
        return c
    dtype = state.minimum.dtype
    return c[1].astype(dtype) * float(1 << _WORD) + c[0].astype(dtype)


def _rebin(state: HistogramState, e: jax.Array, offset: jax.Array) -> jax.Array:
    """Counts of ``state`` moved exactly onto the grid ``(e, offset)``, ``e >= state.exponent``."""
    n_fine = _n_fine(state.counts)
    shift = jnp.clip(e - state.exponent, 0, 31)
    absolute = state.offset + jnp.arange(n_fine, dtype=jnp.int32)
    target = jax.lax.shift_right_arithmetic(absolute, shift.astype(jnp.int32)) - offset
    # An empty state has zero counts, so wherever its bins land is harmless; out-of-range
    # targets (only possible for zero counts) are dropped by segment_sum.
    if _is_integer(state.counts):  # at most 2**14 low words per bin: no int32 overflow
        return _carry(jax.ops.segment_sum(state.counts.T, target, n_fine).T)
    return jax.ops.segment_sum(state.counts, target, n_fine)


def _state_update(
    state: HistogramState, x: jax.Array, w: jax.Array | None, n: jax.Array | None = None
) -> HistogramState:
    """Add ``x`` (the first ``n`` values of a padded ``x``, default all) to ``state``."""
    x = x.ravel().astype(state.minimum.dtype)
    real = None if n is None else jnp.arange(x.shape[0]) < n
    if real is not None:
        x = jnp.where(real, x, x[0])  # padding takes a real value, then weight 0
    lo = jnp.minimum(state.minimum, jnp.min(x))
    hi = jnp.maximum(state.maximum, jnp.max(x))
    return _state_add(state, x, w, real, lo, hi)


def _state_add(state: HistogramState, x, w, real, lo, hi, reduce=None) -> HistogramState:
    """``state`` with ``x`` counted on the canonical grid of the range ``[lo, hi]`` (which holds
    ``x`` and the state's data). ``reduce`` sums the new per-bin counts over shards (a
    ``psum``), so every shard ends with the state of all shards' data."""
    n_fine = _n_fine(state.counts)
    e, offset = regrid(state.exponent, lo, hi, n_fine)
    counts = _rebin(state, e, offset)
    if w is None:
        vals = jnp.ones(x.shape, jnp.int32 if _is_integer(counts) else counts.dtype)
    else:
        if _is_integer(counts):
            raise TypeError("weighted data need a float-count histogram state")
        vals = w.ravel().astype(counts.dtype)
    if real is not None:
        vals = jnp.where(real, vals, 0)
    new = fine_counts(x, vals, e, offset, n_fine)
    if reduce is not None:
        new = reduce(new)  # int32 per-bin sums: exact while a call adds < 2**31 per bin
    return HistogramState(_add_counts(counts, new), lo, hi, e, offset)


def regrid(exponent: jax.Array, lo, hi, n_fine: int) -> tuple[jax.Array, jax.Array]:
    """``(exponent, offset)`` of the canonical fine grid of ``[lo, hi]`` for a state whose grid
    had ``exponent``."""
    e = _grid_exponent(lo, hi, n_fine, exponent)
    return e, _fine_index(lo, e)


def fine_counts(x: jax.Array, vals: jax.Array, e, offset, n_fine: int) -> jax.Array:
    """``(n_fine,)`` per-fine-bin sums of ``vals`` over ``x`` on the grid ``(e, offset)``."""
    return jax.ops.segment_sum(vals, _fine_index(x, e) - offset, n_fine)


def add_fine_counts(state: HistogramState, new: jax.Array, lo, hi, e, offset) -> HistogramState:
    """``state`` moved onto the grid ``(e, offset)`` of ``[lo, hi]`` plus fine counts ``new``."""
    return HistogramState(_add_counts(_rebin(state, e, offset), new), lo, hi, e, offset)


def _state_merge(a: HistogramState, b: HistogramState) -> HistogramState:
    lo = jnp.minimum(a.minimum, b.minimum)
    hi = jnp.maximum(a.maximum, b.maximum)
    e = _grid_exponent(lo, hi, _n_fine(a.counts), jnp.maximum(a.exponent, b.exponent))
    offset = jnp.where(jnp.isfinite(lo), _fine_index(jnp.where(jnp.isfinite(lo), lo, 0), e), 0)
    counts = _rebin(a, e, offset) + _rebin(b, e, offset)
    return HistogramState(_carry(counts) if _is_integer(counts) else counts, lo, hi, e, offset)


def _interp_left(x: jax.Array, xp: jax.Array, fp: jax.Array) -> jax.Array:
    """Piecewise-linear cumulative count strictly below ``x`` (``xp`` non-decreasing)."""
    n = xp.shape[0]
    j = jnp.searchsorted(xp, x, side="left") - 1  # xp[j] < x <= xp[j + 1]
    jc = jnp.clip(j, 0, n - 2)
    x0, x1 = xp[jc], xp[jc + 1]
    width = jnp.where(x1 > x0, x1 - x0, 1)
    inner = fp[jc] + (fp[jc + 1] - fp[jc]) * ((x - x0) / width)
    out = jnp.where(j < 0, fp[0], jnp.where(j >= n - 1, fp[-1], inner))
    return out


def _state_finalize(state: HistogramState, n_bins: int):
    lo, hi = state.minimum, state.maximum
    same = lo == hi
    first = jnp.where(same, lo - 0.5, lo)
    last = jnp.where(same, hi + 0.5, hi)
    edges = _npsum.linspace(first, last, n_bins + 1)
    n_fine = _n_fine(state.counts)
    width = _pow2(state.exponent, lo.dtype)
    fine_edges = (state.offset + jnp.arange(n_fine + 1, dtype=jnp.int32)).astype(lo.dtype) * width
    # The data lie in [lo, hi]: clip the fine edges to it so no mass is spread outside.
    fine_edges = jnp.clip(fine_edges, lo, hi)
    counts = float_counts(state)
    cum = jnp.concatenate([jnp.zeros(1, counts.dtype), jnp.cumsum(counts)])
    total = cum[-1]
    c = _interp_left(edges, fine_edges, cum)
    c = c.at[-1].set(total)  # the last bin is closed
    return edges, jnp.maximum(jnp.diff(c), 0)


_state_update_jit = jit(_state_update)
_state_merge_jit = jit(_state_merge)
_state_finalize_jit = jit(_state_finalize, static_argnames=("n_bins",))


# --------------------------------------------------------------------------------------------
# compat mode: MCT's collector


def _interp_numpy(x: jax.Array, xp: jax.Array, fp: jax.Array) -> jax.Array:
    """``np.interp(x, xp, fp)`` with NumPy's arithmetic (``slope * (x - xp[j]) + fp[j]``)."""
    n = xp.shape[0]
    j = jnp.searchsorted(xp, x, side="right") - 1  # xp[j] <= x < xp[j + 1]
    jc = jnp.clip(j, 0, n - 2)
    slope = (fp[jc + 1] - fp[jc]) / (xp[jc + 1] - xp[jc])
    inner = _npsum.mul(slope, x - xp[jc]) + fp[jc]
    inner = jnp.where(xp[jc] == x, fp[jc], inner)
    return jnp.where(j < 0, fp[0], jnp.where(j >= n - 1, fp[-1], inner))


def _seq_cumsum(c: jax.Array) -> jax.Array:
    """Sequential cumulative sum (``np.cumsum``'s order; XLA's cumsum reassociates)."""

    def step(acc, v):
        acc = acc + v
        return acc, acc

    _, out = jax.lax.scan(step, jnp.zeros((), c.dtype), c)
    return out


@jit
def _mct_cumulative(c: jax.Array) -> jax.Array:
    """``np.hstack([0, np.cumsum(c)])`` in ``c``'s dtype (float32 stays float32), as float64."""
    return jnp.concatenate([jnp.zeros(1, c.dtype), _seq_cumsum(c)]).astype(jnp.float64)


@functools.partial(jit, static_argnames=("n_bins",))
def _mct_merge(bins: jax.Array, cums: jax.Array, n_bins: int):
    merged_bins = _npsum.linspace(jnp.min(bins), jnp.max(bins), n_bins + 1)

    def rebin(b, cum):
        return jnp.diff(_interp_numpy(merged_bins, b, cum))

    per_batch = jax.vmap(rebin)(bins, cums)

    def add(acc, r):
        return acc + r, None

    merged, _ = jax.lax.scan(add, jnp.zeros(n_bins, jnp.float64), per_batch)
    return merged_bins, merged


def _mct_weights(x: np.ndarray, weights, fn: str) -> np.ndarray | None:
    """MCT's WeightedHistogramCollector weight rules (None / all-zero -> ones, its shape checks)."""
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.size and not np.isfinite(w).all():
        raise ValueError(f"{fn}: weights contain NaN or inf")
    if np.all(w == 0):
        return None
    if w.ndim > x.ndim:
        raise ValueError(
            f"{fn}: weights with shape {w.shape} have more dimensions than x with shape {x.shape}"
        )
    padded = (1,) * (x.ndim - w.ndim) + w.shape
    for i, (sx, sw) in enumerate(zip(x.shape, padded, strict=True)):
        if not (sx == sw or sw == 1):
            raise ValueError(
                f"{fn}: weights with shape {padded} cannot be broadcast to x with shape "
                f"{x.shape}: dimension {i} ({sw} vs {sx})"
            )
    trailing = w.shape + (1,) * (x.ndim - w.ndim)  # MCT reshapes with trailing ones
    try:
        return np.broadcast_to(w.reshape(trailing), x.shape)
    except ValueError as err:
        raise ValueError(
            f"{fn}: weights with shape {w.shape} (MCT pads trailing dimensions: {trailing}) "
            f"cannot be broadcast to x with shape {x.shape}"
        ) from err


# --------------------------------------------------------------------------------------------
# public state API


def histogram_init(
    n_bins: int = 2048, *, mct_compat: bool = False, dtype=None, integer_counts: bool = False
) -> HistogramState | MCTHistogramState:
    """An empty histogram state.

    Args:
      n_bins: bins of the finalized histogram (default 2048, MCT's).
      mct_compat: ``True`` for MCT's collector (per-batch histograms merged on read).
      dtype: float dtype of the default-mode state (default: JAX's default float).
      integer_counts: default mode: count in exact integers (two int32 words per fine bin,
        up to 2**46 values in all) instead of ``dtype`` floats (exact below 2**24 values per
        fine bin in float32). Such a state takes no weights.

    Returns:
      :class:`HistogramState` (default) or :class:`MCTHistogramState` (compat).

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> s = jq.histogram_init(16)
      >>> for batch in (np.arange(8.0), np.arange(4.0, 12.0)):
      ...     s = jq.histogram_update(s, batch)
      >>> edges, counts = jq.histogram_finalize(s)
      >>> float(edges[0]), float(edges[-1]), float(np.sum(counts))
      (0.0, 11.0, 16.0)
    """
    fn = "jq.histogram_init"
    n_bins = _check_n_bins(n_bins, fn)
    if mct_compat:
        return MCTHistogramState(n_bins)
    dtype = jnp.dtype(dtype if dtype is not None else jnp.result_type(float))
    if not jnp.issubdtype(dtype, jnp.floating) or dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    n_fine = _OVERSAMPLE * n_bins
    return HistogramState(
        counts=jnp.zeros((2, n_fine), jnp.int32) if integer_counts else jnp.zeros(n_fine, dtype),
        minimum=jnp.asarray(jnp.inf, dtype),
        maximum=jnp.asarray(-jnp.inf, dtype),
        exponent=jnp.asarray(_E_MIN, jnp.int32),
        offset=jnp.asarray(0, jnp.int32),
    )


def histogram_update(
    state: HistogramState | MCTHistogramState, x: ArrayLike, weights: ArrayLike | None = None
) -> HistogramState | MCTHistogramState:
    """Add a batch to a histogram state; returns the new state (the old one is unchanged).

    Args:
      state: from :func:`histogram_init` or a previous update.
      x: batch of values, any shape.
      weights: optional per-element weights (HMSE); ``None`` or all zeros mean ones (MCT's rule).
        Default mode: NumPy broadcasting, must be >= 0. Compat mode: MCT's shape rules.

    Returns:
      The updated state.

    Raises:
      ValueError: empty ``x``, NaN/inf in ``x`` or ``weights``, negative or non-broadcastable
        weights.
    """
    fn = "jq.histogram_update"
    if isinstance(state, MCTHistogramState):
        with jax.enable_x64(True):
            xa = _as_float(x, fn, "x", jnp.float64)
            _check_values(xa, fn, "x")
            xn = np.asarray(xa)
            mct_w = _mct_weights(xn, weights, fn)
            if mct_w is None:
                mct_w = np.ones_like(xn)  # MCT: ones_like(x), float64 counts
            xp, wp, n = _pad_flat(xa, mct_w)
            edges, counts = _histogram_jit(xp, wp, n, state.n_bins)
        return state._replace(bins=state.bins + (edges,), counts=state.counts + (counts,))
    if not isinstance(state, HistogramState):
        raise TypeError(f"{fn}: state must come from jq.histogram_init, got {type(state)}")
    xa = _as_float(x, fn, "x", state.minimum.dtype)
    _check_values(xa, fn, "x")
    w = None
    if weights is not None:
        if _is_integer(state.counts):
            raise TypeError(
                f"{fn}: a state made with integer_counts=True takes no weights; "
                "use a float-count state (the default) for weighted data"
            )
        w = _as_float(weights, fn, "weights", state.minimum.dtype)
        _check_values(w, fn, "weights", nonnegative=True)
        if not _is_tracer(w) and not np.any(np.asarray(w) != 0):
            w = None
        else:
            try:
                w = _broadcast(w, xa.shape)
            except ValueError as err:
                raise ValueError(
                    f"{fn}: weights of shape {w.shape} do not broadcast to x's shape {xa.shape}"
                ) from err
    xp, wp, n = _pad_flat(xa, w)
    return _state_update_jit(state, xp, wp, n)


def histogram_merge(a: HistogramState, b: HistogramState) -> HistogramState:
    """Combine two default-mode states (e.g. from different hosts); commutative, associative.

    For unweighted data the result equals, bit for bit, the state built from all batches of
    both in any order.

    Raises:
      TypeError: compat states (MCT has no merge of collectors) or mismatched sizes.
    """
    fn = "jq.histogram_merge"
    if not (isinstance(a, HistogramState) and isinstance(b, HistogramState)):
        raise TypeError(f"{fn}: both arguments must be default-mode HistogramState values")
    same = a.counts.shape == b.counts.shape and a.counts.dtype == b.counts.dtype
    if not same or a.minimum.dtype != b.minimum.dtype:
        raise TypeError(
            f"{fn}: states differ in size or dtype: {a.counts.shape} {a.counts.dtype} "
            f"{a.minimum.dtype} vs {b.counts.shape} {b.counts.dtype} {b.minimum.dtype}"
        )
    return _state_merge_jit(a, b)


def histogram_finalize(
    state: HistogramState | MCTHistogramState, *, n_bins: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The histogram of all data added to ``state``.

    Args:
      state: a state with at least one batch.
      n_bins: default mode only: bins of the result (default: the ``n_bins`` of
        :func:`histogram_init`).

    Returns:
      ``(edges, counts)``, ``(n_bins + 1,)`` and ``(n_bins,)``. Default mode: edges
      ``linspace(min, max)`` (NumPy rule). Compat mode: MCT's merged histogram, float64.

    Raises:
      ValueError: no batch was added.
    """
    fn = "jq.histogram_finalize"
    if isinstance(state, MCTHistogramState):
        if not state.bins:
            raise ValueError(f"{fn}: the state is empty; call jq.histogram_update first")
        nb = len(state.bins)
        pad = (1 << (nb - 1).bit_length()) - nb  # bucket batch counts to limit recompiles
        with jax.enable_x64(True):
            bins = jnp.stack(list(state.bins) + [state.bins[0]] * pad)
            cum_list = [_mct_cumulative(c) for c in state.counts]
            cums = jnp.stack(cum_list + [jnp.zeros_like(cum_list[0])] * pad)
            return _mct_merge(bins, cums, state.n_bins)
    if not isinstance(state, HistogramState):
        raise TypeError(f"{fn}: state must come from jq.histogram_init, got {type(state)}")
    if not _is_tracer(state.minimum) and not bool(jnp.isfinite(state.minimum)):
        raise ValueError(f"{fn}: the state is empty; call jq.histogram_update first")
    if n_bins is None:
        n_bins = _n_fine(state.counts) // _OVERSAMPLE
    n_bins = _check_n_bins(n_bins, fn)
    return _state_finalize_jit(state, n_bins)
