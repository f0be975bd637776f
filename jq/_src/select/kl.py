"""KL-divergence error metric for one candidate range.

MCT 2.6.1's ``_kl_error_histogram`` (histograms) and ``_kl_error_function`` (tensors), in
``core/common/quantization/quantization_params_generation/error_functions.py``. Their steps: the
slice ``[i0, i1)`` of bins inside ``[lo, hi]`` (``_get_bins_indices_from_range``); the float
distribution P, with the clipped tails added to its end bins (``_compute_clipped_counts``); the
quantized distribution Q (the non-empty bins of each group sharing one quantized value share the
group's mass); both smoothed (``_smooth_distribution``); then ``sum(P * log(P / Q))``.

Written for one candidate and one histogram; ``jax.vmap`` it over candidates, channels and
tensors. No Python loop runs over data: the "distinct quantized value" groups of Q are a
``segment_sum`` keyed on the integer grid level of each quantized edge (equal quantized values
<=> equal levels), and the slice ``[i0, i1)`` is a mask, so every shape is static.

Two modes:

``mct_compat=True`` reproduces MCT 2.6.1's ``_kl_error_histogram`` / ``_kl_error_function``
(run it under ``jax.enable_x64``): float64 distributions, the ``+1e-6`` float32 addition, the
float32 smoothing (correction computed in float64, added into float32), NumPy's float32 ``log``
(its SIMD kernel, reproduced operation by operation) and NumPy's pairwise float32 summation
order. Sums NumPy takes over the slice (totals, clipped tails, the final KL sum) use NumPy's
pairwise order too; group masses use a sequential ``segment_sum`` (NumPy sums a group pairwise:
identical for integer counts and for groups of fewer than 8 bins, else a float64 ulp apart).
Measured against MCT's own functions: bit-identical on the random cases of
``tests/select/test_kl.py`` (integer and interpolated float counts, n_bits 2-8).
Where MCT raises an ``AssertionError`` (``lo >= hi`` on a valid range; smoothing that leaves a
non-positive entry), compat mode returns ``+inf`` and ``NaN`` respectively; the caller checks
``hi <= lo`` itself when it must raise as MCT does.

Default mode (``mct_compat=False``) computes in one precision throughout, the dtype of
``edges`` (float32 in jq's default mode), and fixes MCT's defects:

Default-mode fixes:

1. *A range covering fewer bins than the grid has levels (``2^n_bits``) scores +inf, not ~0.*
   MCT returns 0.0 when ``i0 == i1`` (the range lies inside one bin), and with ``i1 - i0 == 1``
   both distributions are ``[1]`` so KL is 0 as well. Zero is the best possible score, so the
   smallest candidates win: this is why MCT's power-of-two KL search collapses activation
   thresholds to about one bin width (2^-10 .. 2^-6 on real layers). More generally, when a
   range covers only a few bins, almost all mass is clipped into its two end bins, which the
   grid represents exactly, so KL stays near 0 (4-bit signed layers of resnet18 collapsed to
   three-bin ranges). A range must give every grid level at least one bin (``min(2^n_bits,
   n_bins)`` bins, at least 2), TensorRT's entropy calibration rule (its search starts at 128
   of 2048 bins for int8).
2. *No ``+1e-6`` in the group average.* MCT divides a group's mass by ``(#positive + 1e-6)`` in
   float32, which skews groups of different sizes by ~1e-6 relative and makes a lossless
   candidate (every group a single bin, no clipping) score a float32-noise value instead of
   0. jq divides by the exact count (an empty group has no mass and gets 0).
3. *Lossless candidates score exactly 0 and noise cannot go below 0.* The two distributions are
   normalised and smoothed by identical arithmetic, so a candidate whose quantized histogram
   equals the float one gives bit-identical P and Q (KL exactly 0), and the result is clamped
   at 0 (KL >= 0). Ties among such candidates are then decided by the search's tie rule, not by
   float32 rounding noise (MCT's float32 smoothing gives +-1e-8 there).
4. *``lo >= hi`` scores +inf* instead of raising an ``AssertionError`` (the tensor form already
   returns +inf for it in MCT).

Kept as in MCT (design, not defects): clipped tail mass is added to P's end bins but not to Q
(MXNet/TensorRT's calibration rule: it is what penalises clipping); each distribution is
smoothed with its own epsilon; the bin containing ``hi`` is left out of the slice while the bin
containing ``lo`` is kept (a one-bin asymmetry, within histogram resolution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import npsum as _npsum
from .npsum import round_f32, slice_sum
from .quantizers import uniform_quantize

# --------------------------------------------------------------------------------------------
# NumPy's float32 log, reproduced for compat mode

# NumPy's float32 log kernel constants (npy_simd_data.h), as float32.
_LOG_P = (
    0.0,
    9.999999999999998702752e-01,
    2.112677543073053063722e00,
    1.480000633576506585156e00,
    3.808837741388407920751e-01,
    2.589979117907922693523e-02,
)
_LOG_Q = (
    1.0,
    2.612677543073109236779e00,
    2.453006071784736363091e00,
    9.864942958519418960339e-01,
    1.546476374983906719538e-01,
    5.875095259398222e-03,  # NPY_COEFF_Q5_LOGf, bit pattern 0x3BC083DF
)


def np_log_f32(x: jax.Array) -> jax.Array:
    """NumPy's float32 ``log`` (its SIMD kernel: P5/Q5 rational approximation with FMAs).

    Computed in float64 on float32 values (needs ``jax_enable_x64``): each float32 operation is
    the float64 one rounded by :func:`round_f32`; an FMA is ``a * b + c`` (``a * b`` is exact in
    float64) rounded once more to float32 (a 2^-29-rare double rounding). Positive finite
    inputs only (the KL arguments); others follow IEEE ``log``.

    Args:
      x: float32 values (any float dtype; rounded to float32 first).

    Returns:
      float64 array holding the float32 results.
    """
    f32, f64, i32 = jnp.float32, jnp.float64, jnp.int32
    x32 = x.astype(f32)
    bits = jax.lax.bitcast_convert_type(x32, i32)
    e = (jax.lax.shift_right_logical(bits, i32(23)) - i32(126)).astype(f64)
    m = jax.lax.bitcast_convert_type((bits & i32(0x007FFFFF)) | i32(0x3F000000), f32).astype(f64)
    small = m <= float(np.float32(0.70710678118654752440))
    m = jnp.where(small, m + m, m)
    e = jnp.where(small, e - 1, e)
    y = m - 1  # exact: m in [0.5, 2)
    p = [float(np.float32(c)) for c in _LOG_P]
    q = [float(np.float32(c)) for c in _LOG_Q]
    num = round_f32(p[5] * y + p[4])
    for c in (p[3], p[2], p[1], p[0]):
        num = round_f32(num * y + c)
    den = round_f32(q[5] * y + q[4])
    for c in (q[3], q[2], q[1], q[0]):
        den = round_f32(den * y + c)
    out = round_f32(e * float(np.float32(0.693147180559945309417)) + round_f32(num / den))
    regular = (x32 > 0) & (x32 < jnp.inf)
    return jnp.where(regular, out, jnp.log(x32).astype(f64))


# --------------------------------------------------------------------------------------------
# KL


def _group_ids(q_level: jax.Array, n_bins: int, n_levels: int) -> tuple[jax.Array, int]:
    """Segment ids of the bins' groups: the level itself, or run ids when levels outnumber bins.

    Levels of sorted edges under a monotone quantizer are non-decreasing, so equal levels are
    contiguous and run ids group the same bins with at most ``n_bins`` segments.
    """
    level = q_level[:n_bins]
    level = jnp.where(jnp.isnan(level), 0, level)
    if n_levels <= n_bins:
        return jnp.clip(level, 0, n_levels - 1).astype(jnp.int32), n_levels
    new_run = jnp.concatenate([jnp.ones(1, bool), level[1:] != level[:-1]])
    return jnp.cumsum(new_run.astype(jnp.int32)) - 1, n_bins


def kl_hist(
    q_level: ArrayLike,
    edges: ArrayLike,
    counts: ArrayLike,
    lo: jax.Array | float,
    hi: jax.Array | float,
    *,
    n_levels: int,
    mct_compat: bool = False,
) -> jax.Array:
    """KL divergence between a histogram and its quantized version over ``[lo, hi]``.

    MCT 2.6.1's ``_kl_error_histogram`` (``error_functions.py``).

    One candidate; vmap over candidates / channels / tensors. Not jitted (a building block).

    Args:
      q_level: ``(B+1,)`` integer grid level (as float) of each quantized edge,
        e.g. ``uniform_quantize(edges, a, b, n_bits)[1]``; equal levels <=> equal quantized values.
      edges: ``(B+1,)`` sorted histogram edges.
      counts: ``(B,)`` non-negative counts.
      lo, hi: scalar validity range of the candidate.
      n_levels: number of grid levels, ``2**n_bits`` (static).
      mct_compat: reproduce MCT 2.6.1 (float64 + float32 arithmetic; needs x64), else the
        default mode with the fixes listed in the module docstring.

    Returns:
      Scalar KL (float64 in compat mode, ``edges``' dtype otherwise); ``+inf`` when no edge is
      ``>= lo`` or none ``< hi``, or the range holds no counts; compat: ``0.0`` when the range
      falls inside one bin (MCT's quirk), ``+inf`` for ``lo >= hi`` (MCT asserts), ``NaN``
      where MCT's smoothing asserts.

    Examples:
      >>> import jax
      >>> import numpy as np
      >>> from jq._src.select.kl import kl_hist
      >>> from jq._src.select.quantizers import uniform_quantize
      >>> edges = np.linspace(-1.0, 1.0, 9, dtype=np.float32)
      >>> counts = np.array([1, 2, 4, 8, 8, 4, 2, 1], np.float32)
      >>> @jax.jit
      ... def kl_2bit(t):  # the 2-bit grid of [-t, t]
      ...     _, level = uniform_quantize(edges, -t, t, 2)
      ...     return kl_hist(level, edges, counts, -t, t, n_levels=4)
      >>> round(float(kl_2bit(1.0)), 4), round(float(kl_2bit(0.5)), 4)
      (0.0691, 0.0673)
    """
    edges = jnp.asarray(edges)
    counts = jnp.asarray(counts)
    q_level = jnp.asarray(q_level)
    n_bins = counts.shape[0]
    if edges.shape != (n_bins + 1,) or q_level.shape != (n_bins + 1,):
        raise ValueError(
            f"kl_hist: expected edges and q_level of shape ({n_bins + 1},) for {n_bins} counts, "
            f"got {edges.shape} and {q_level.shape}"
        )
    if mct_compat:
        return _kl_compat(q_level, edges, counts, lo, hi, n_levels)
    return _kl_default(q_level, edges, counts, lo, hi, n_levels)


def _slice(edges, lo, hi):
    """Validity, ``i0``, ``i1`` of the slice (MCT's ``_is_range_valid``,
    ``_get_bins_indices_from_range``; edges sorted)."""
    valid = jnp.any(edges >= lo) & jnp.any(edges < hi)
    i0 = jnp.maximum(jnp.sum(edges < lo).astype(jnp.int32) - 1, 0)
    i1 = jnp.sum(edges < hi).astype(jnp.int32) - 1
    return valid, i0, i1


def _kl_compat(q_level, edges, counts, lo, hi, n_levels):
    f64 = jnp.float64
    edges = edges.astype(f64)
    counts = counts.astype(f64)
    n_bins = counts.shape[0]
    k = jnp.arange(n_bins)
    valid, i0, i1 = _slice(edges, lo, hi)
    length = i1 - i0
    inside = (k >= i0) & (k < i1)
    c = jnp.where(inside, counts, 0.0)
    has_mass = jnp.any(c != 0)

    # P: clipped tails onto its end bins (MCT's _compute_clipped_counts).
    left = slice_sum(counts, 0, i0)
    right = slice_sum(counts, i1, n_bins - i1)
    acc = c + jnp.where(k == i0, left, 0.0)
    acc = acc + jnp.where(k == i1 - 1, right, 0.0)
    p = _npsum.div(acc, slice_sum(acc, i0, length))

    # Q: each positive bin of a group gets mass / (#positive + 1e-6); the +1e-6 is float32.
    ids, n_seg = _group_ids(q_level, n_bins, n_levels)
    positive = inside & (counts > 0)
    mass = jax.ops.segment_sum(c, ids, n_seg)
    n_pos = jax.ops.segment_sum(positive.astype(f64), ids, n_seg)  # exact small integers
    share = mass / round_f32(n_pos + float(np.float32(1e-6)))
    qbc = jnp.where(positive, share[ids], 0.0)
    q = _npsum.div(qbc, slice_sum(qbc, i0, length))

    def smooth(dist):
        nonzero = inside & (dist != 0)
        eps = jnp.min(jnp.where(nonzero, dist, jnp.inf)) / (2.0 * length)
        n_nonzero = jnp.sum(nonzero).astype(f64)  # float32 counts in MCT: exact integers
        n_zero = length.astype(f64) - n_nonzero
        reduce = eps * n_zero / n_nonzero
        out = round_f32(round_f32(dist) + jnp.where(nonzero, -reduce, eps))
        ok = (eps > 0) & jnp.all(jnp.where(inside, out > 0, True))
        return out, ok

    ps, p_ok = smooth(p)
    qs, q_ok = smooth(q)
    ratio = jnp.where(inside, round_f32(ps / qs), 1.0)
    terms = jnp.where(inside, round_f32(ps * np_log_f32(ratio)), 0.0)
    kl = slice_sum(terms, i0, length, float32=True)

    kl = jnp.where(p_ok & q_ok, kl, jnp.nan)
    kl = jnp.where(has_mass, kl, jnp.inf)
    kl = jnp.where(length == 0, 0.0, kl)
    kl = jnp.where(lo < hi, kl, jnp.inf)
    return jnp.where(valid, kl, jnp.inf)


def _kl_default(q_level, edges, counts, lo, hi, n_levels):
    dtype = jnp.result_type(edges.dtype, counts.dtype)
    edges = edges.astype(dtype)
    counts = counts.astype(dtype)
    n_bins = counts.shape[0]
    k = jnp.arange(n_bins)
    valid, i0, i1 = _slice(edges, lo, hi)
    length = i1 - i0
    inside = (k >= i0) & (k < i1)
    c = jnp.where(inside, counts, 0)
    has_mass = jnp.any(c > 0)

    left = jnp.sum(jnp.where(k < i0, counts, 0))
    right = jnp.sum(jnp.where(k >= i1, counts, 0))
    acc = c + jnp.where(k == i0, left, 0)
    acc = acc + jnp.where(k == i1 - 1, right, 0)

    ids, n_seg = _group_ids(q_level, n_bins, n_levels)
    positive = inside & (counts > 0)
    mass = jax.ops.segment_sum(c, ids, n_seg)
    n_pos = jax.ops.segment_sum(positive.astype(dtype), ids, n_seg)
    share = mass / jnp.maximum(n_pos, 1)
    qbc = jnp.where(positive, share[ids], 0)

    def normalize_smooth(w):
        # Identical arithmetic for P and Q: equal inputs give bit-equal outputs.
        dist = w / jnp.sum(w)
        nonzero = inside & (dist != 0)
        eps = jnp.min(jnp.where(nonzero, dist, jnp.inf)) / (2 * length).astype(dtype)
        n_nonzero = jnp.sum(nonzero).astype(dtype)
        reduce = eps * (length.astype(dtype) - n_nonzero) / n_nonzero
        return jnp.where(nonzero, dist - reduce, eps)

    ps = normalize_smooth(acc)
    qs = normalize_smooth(qbc)
    ratio = jnp.where(inside, ps / qs, 1)
    terms = jnp.where(inside, ps * jnp.log(ratio), 0)
    kl = jnp.maximum(jnp.sum(terms), 0)

    inf = jnp.asarray(jnp.inf, dtype)
    kl = jnp.where(has_mass, kl, inf)
    kl = jnp.where(length < max(2, min(n_levels, n_bins)), inf, kl)
    kl = jnp.where(lo < hi, kl, inf)
    return jnp.where(valid, kl, inf)


def kl_tensor_from_hist(
    edges: ArrayLike,
    counts: ArrayLike,
    lo: jax.Array | float,
    hi: jax.Array | float,
    *,
    n_bits: int,
    mct_compat: bool = False,
) -> jax.Array:
    """The tensor KL (MCT 2.6.1's ``_kl_error_function``) from a precomputed histogram of the
    float tensor (row).

    The histogram does not depend on the candidate, so a search computes it once per channel
    (``histogram(x_row, n_bins=2048)``) and vmaps this over candidates. The quantized edges are
    always on the *uniform* grid ``U(edges; lo, hi, n_bits)``, as in MCT.

    Args:
      edges: ``(B+1,)`` edges; counts: ``(B,)`` counts.
      lo, hi: scalar candidate range (``[-t, t]`` for threshold methods, ``[a, b]`` uniform).
      n_bits: bit width of the uniform grid (static).
      mct_compat: see :func:`kl_hist`.

    Returns:
      Scalar KL; ``+inf`` when ``hi <= lo`` (both modes, as MCT).
    """
    edges = jnp.asarray(edges)
    _, level = uniform_quantize(edges, lo, hi, n_bits)
    level = jnp.where(hi > lo, level, 0)
    kl = kl_hist(level, edges, counts, lo, hi, n_levels=2**n_bits, mct_compat=mct_compat)
    return jnp.where(hi > lo, kl, jnp.inf)
