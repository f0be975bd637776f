"""Threshold / range selection for activations from histograms.

MCT 2.6.1's ``power_of_two_selection_histogram``, ``symmetric_selection_histogram`` and
``uniform_selection_histogram`` (``core/common/quantization/quantization_params_generation/``),
with the outlier filter and signedness rules of ``qparams_activations_computation.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from ..runtime.cache import ensure_compilation_cache
from ..runtime.jit import jit
from ..runtime.mesh import check_mesh, split_leading
from . import metrics as _metrics
from .enums import ErrorMethod, QuantizationMethod
from .kl import kl_hist
from .options import parse_options, x64
from .packing import first_rows, padded_rows
from .quantizers import (
    MIN_THRESHOLD,
    pot,
    threshold_quantize_levels,
    uniform_quantize,
)
from .search import LossFn, SearchResult, pot_search, symmetric_search, uniform_search
from .types import QParams
from .validate import check_histogram

POT_CANDIDATES = 20
SYMMETRIC_ROUNDS, SYMMETRIC_DEC_FREQ = 20, 4
UNIFORM_ROUNDS, UNIFORM_GRID = 30, 12


def auto_signed(edges: jax.Array, counts: jax.Array) -> jax.Array:
    """jq's one signedness rule: signed iff a non-empty bin's left edge is negative."""
    return jnp.any((edges[:-1] < 0) & (counts > 0))


def _mct_signed(
    edges: jax.Array,
    counts: jax.Array,
    method: QuantizationMethod,
    error_method: ErrorMethod,
) -> jax.Array:
    """MCT's three auto-signedness rules [quirk], per selection function: power-of-two (and
    no-clipping symmetric) histograms read every edge, the others the non-empty bins' left edges
    (MCT 2.6.1's ``*_selection_histogram``)."""
    if method is QuantizationMethod.POWER_OF_TWO or error_method is ErrorMethod.NOCLIPPING:
        if method is not QuantizationMethod.UNIFORM:
            return jnp.any(edges < 0)  # every edge, empty bins included
    return auto_signed(edges, counts)


def outlier_filter(edges: jax.Array, counts: jax.Array, z_threshold: ArrayLike) -> jax.Array:
    """MCT's z-score filter on left edges (MCT 2.6.1's ``z_score_filter``,
    ``outlier_filter.py``); ``z_threshold = inf`` is a no-op."""
    x = edges[:-1]
    total = jnp.sum(counts)
    mu = jnp.sum(counts * x) / total
    sigma = jnp.sqrt(jnp.sum(counts * (x - mu) ** 2) / total)
    return jnp.where(jnp.abs(x - mu) / sigma > z_threshold, 0, counts)


def kl_range_asserts(edges: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """True where MCT's KL asserts ``first_bin <= last_bin`` and fails (a range with lo >= hi)."""
    ge = edges >= lo
    lt = edges < hi
    k_lo = jnp.argmax(ge)
    i1 = edges.shape[0] - 1 - jnp.argmax(lt[::-1])
    return jnp.any(ge) & jnp.any(lt) & (jnp.maximum(k_lo - 1, 0) > i1)


def _loss_fn(
    edges: jax.Array,
    counts: jax.Array,
    signed: jax.Array,
    p: float,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    compat: bool,
) -> LossFn:
    """Per-candidate histogram loss: ``(1,)`` thresholds or ``(1, 2)`` ranges -> ``(1,)``."""

    def loss(param: jax.Array) -> jax.Array:
        if method is QuantizationMethod.UNIFORM:
            lo, hi = param[0, 0], param[0, 1]
            q, level = uniform_quantize(edges, lo, hi, n_bits, exact=compat)
        else:
            t = param[0]
            q, level = threshold_quantize_levels(edges, t, n_bits, signed, exact=compat)
            if compat and method is QuantizationMethod.POWER_OF_TWO:
                lo, hi = -t, t  # [quirk] POT evaluates KL on [-t, t] even when unsigned
            else:
                lo, hi = jnp.where(signed, -t, 0.0), t
        if error_method is ErrorMethod.KL:
            value = kl_hist(level, edges, counts, lo, hi, n_levels=2**n_bits, mct_compat=compat)
            if not compat:
                value = jnp.where(kl_range_asserts(edges, lo, hi) | (hi <= lo), jnp.inf, value)
        elif error_method is ErrorMethod.MAE:
            value = _metrics.hist_mae(edges, q, counts, exact=compat)
        elif error_method is ErrorMethod.LP:
            value = _metrics.hist_lp(edges, q, counts, p, exact=compat)
        else:  # MSE; HMSE is the MSE formula on a Hessian-weighted histogram
            value = _metrics.hist_mse(edges, q, counts, exact=compat)
        return value[None]

    return loss


def _search_activation(
    edges: jax.Array,
    counts: jax.Array,
    signed_in: jax.Array,
    p: float,
    min_threshold: jax.Array,
    z_threshold: jax.Array,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    compat: bool,
) -> tuple[SearchResult, jax.Array, jax.Array]:
    """Search one histogram. ``signed_in``: -1 auto, 0 unsigned, 1 signed.

    Returns ``(SearchResult, signed, mct_would_assert)``.
    """
    counts = outlier_filter(edges, counts.astype(edges.dtype), z_threshold)
    if compat:
        auto = _mct_signed(edges, counts, method, error_method)
    else:
        auto = auto_signed(edges, counts)
    signed = jnp.where(signed_in < 0, auto, signed_in > 0)
    nonempty = counts > 0
    right_abs_max = jnp.max(jnp.where(nonempty, jnp.abs(edges[1:]), -jnp.inf))
    loss_fn = _loss_fn(
        edges,
        counts,
        signed,
        p,
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        compat=compat,
    )
    empty = jnp.zeros((0, 1), edges.dtype)
    no_assert = jnp.asarray(False)
    if method is QuantizationMethod.POWER_OF_TWO:
        if error_method is ErrorMethod.NOCLIPPING:
            t = pot(right_abs_max, min_threshold)[None]
            return SearchResult(t, jnp.zeros(1, t.dtype), empty, empty), signed, no_assert
        t0 = 2 * pot(jnp.max(jnp.abs(edges)), min_threshold)[None]  # all edges, as MCT
        res = pot_search(loss_fn, t0, n_cand=POT_CANDIDATES, compat=compat)
        return res._replace(param=jnp.maximum(res.param, min_threshold)), signed, no_assert
    if method is QuantizationMethod.SYMMETRIC:
        x0 = jnp.maximum(right_abs_max, min_threshold)[None]
        if error_method is ErrorMethod.NOCLIPPING:
            return SearchResult(x0, jnp.zeros(1, x0.dtype), empty, empty), signed, no_assert
        res = symmetric_search(
            loss_fn,
            x0,
            rounds=SYMMETRIC_ROUNDS,
            dec_freq=SYMMETRIC_DEC_FREQ,
            per_channel=False,
            compat=compat,
        )
        return res._replace(param=jnp.maximum(res.param, min_threshold)), signed, no_assert
    lo = jnp.min(jnp.where(nonempty, edges[:-1], jnp.inf))
    hi = jnp.max(jnp.where(nonempty, edges[1:], -jnp.inf))
    start = jnp.stack([lo, hi])[None]
    if error_method is ErrorMethod.NOCLIPPING:
        return SearchResult(start, jnp.zeros(1, start.dtype), empty, empty), signed, no_assert
    res = uniform_search(
        loss_fn,
        start,
        grid=UNIFORM_GRID,
        rounds=UNIFORM_ROUNDS,
        per_channel=False,
        compat=compat,
    )
    asserts = no_assert
    if error_method is ErrorMethod.KL:
        cands = res.candidates.reshape(-1, 2)
        hit = jax.vmap(lambda c: kl_range_asserts(edges, c[0], c[1]))(cands)
        asserts = jnp.any(hit & ~jnp.isnan(cands[:, 0])) | kl_range_asserts(edges, lo, hi)
    return res, signed, asserts


@functools.partial(jit, static_argnames=("p", "method", "error_method", "n_bits", "compat", "mesh"))
def _search_activation_batch(
    edges: jax.Array,
    counts: jax.Array,
    signed_in: jax.Array,
    min_threshold: jax.Array,
    z_threshold: jax.Array,
    *,
    p: float,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    compat: bool,
    mesh: Mesh | None = None,
) -> tuple[SearchResult, jax.Array, jax.Array]:
    """:func:`_search_activation` over ``edges[L, B+1]``, ``counts[L, B]``, ``signed_in[L]``
    (with a ``mesh``, the ``L`` histograms split over its devices)."""
    search = functools.partial(
        _search_activation,
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        compat=compat,
    )

    def batch(
        e: jax.Array, c: jax.Array, s: jax.Array, mt: jax.Array, zt: jax.Array
    ) -> tuple[SearchResult, jax.Array, jax.Array]:
        out: tuple[SearchResult, jax.Array, jax.Array] = jax.vmap(
            search, in_axes=(0, 0, 0, None, None, None)
        )(e, c, s, p, mt, zt)
        return out

    run = split_leading(batch, mesh, 3, 2)
    res: tuple[SearchResult, jax.Array, jax.Array] = run(
        edges, counts, signed_in, min_threshold, z_threshold
    )
    return res


def activation_qparams_batch(
    bins: ArrayLike,
    counts: ArrayLike,
    *,
    n_bits: int = 8,
    method: QuantizationMethod | str = "power_of_two",
    error_method: ErrorMethod | str = "mse",
    p: float = 2.0,
    is_signed: bool | Sequence[bool] | np.ndarray | None = None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    z_threshold: float = float("inf"),
    return_errors: bool = False,
    mesh: Any = None,
    _fn: str = "activation_qparams_batch",
) -> QParams:
    """:func:`activation_qparams` for ``L`` histograms in one compiled, vmapped call.

    Args:
      bins: ``(L, B+1)`` edges; counts: ``(L, B)``.
      is_signed: ``None`` (auto), a bool, or ``L`` bools.
      mesh: jq only: a ``jax.sharding.Mesh`` whose devices split the histograms between them
        (same results); ``None``: one device.
      Other arguments as in :func:`activation_qparams`.

    Returns:
      ``QParams`` whose fields have a leading ``L`` axis.
    """
    fn = _fn
    ensure_compilation_cache()
    n_bits, method, error_method, p, min_threshold = parse_options(
        n_bits, method, error_method, p, min_threshold, fn
    )
    bins, counts = check_histogram(bins, counts, fn)
    if bins.ndim != 2:
        raise ValueError(f"{fn}: bins must be 2-D (L, B+1), got shape {tuple(bins.shape)}")
    if not (isinstance(z_threshold, (int, float)) and z_threshold > 0):
        raise ValueError(f"{fn}: z_threshold must be a number > 0, got {z_threshold!r}")
    n_hist = bins.shape[0]
    signed_in = _signed_in(is_signed, n_hist, fn)
    dtype = np.float64 if mct_compat else np.float32
    static = dict(method=method, error_method=error_method, n_bits=n_bits, compat=mct_compat)
    # Histograms per call padded to a bucket (copies of the first; searches are independent
    # per histogram), so one compiled search serves every count of histograms; with a mesh,
    # to a multiple of its devices too, each searching its share.
    mesh = check_mesh(mesh, fn)
    rows = padded_rows(n_hist, mesh)
    with x64(mct_compat):
        res, signed, asserts = _search_activation_batch(
            jnp.asarray(np.asarray(bins)[rows], dtype),
            jnp.asarray(np.asarray(counts)[rows], dtype),
            jax.device_put(signed_in[rows]),
            jnp.asarray(min_threshold, dtype),
            jnp.asarray(z_threshold, dtype),
            p=p,
            mesh=mesh,
            **static,
        )
        res, signed, asserts = jax.device_get((res, signed, asserts))
    res, signed, asserts = first_rows((res, signed, asserts), n_hist)
    if mct_compat and np.any(asserts):
        _raise_mct_assert(asserts, fn)
    return _qparams(res, signed, method, return_errors)


def _signed_in(is_signed: Any, n_hist: int, fn: str) -> np.ndarray:
    """``(L,)`` int32 signedness request per histogram: -1 auto (``None``), 0 unsigned, 1 signed."""
    if is_signed is None:
        return np.full(n_hist, -1, np.int32)
    signed_arr = np.asarray(is_signed)
    if signed_arr.dtype != bool:
        raise TypeError(f"{fn}: is_signed must be None or bool, got {is_signed!r}")
    return np.broadcast_to(signed_arr, (n_hist,)).astype(np.int32)


def _raise_mct_assert(asserts: np.ndarray, fn: str) -> None:
    """The error for histograms on which MCT 2.6.1's uniform KL search asserts."""
    bad = np.flatnonzero(asserts).tolist()
    raise ValueError(
        f"{fn}: uniform KL search evaluates an empty range (min >= max) on histogram(s) "
        f"{bad}; MCT 2.6.1 fails here with an AssertionError. The data are one-signed and "
        "too narrow for its candidate grid; use mct_compat=False (such candidates count as "
        "+inf) or another error method."
    )


def _qparams(
    res: SearchResult, signed: np.ndarray, method: QuantizationMethod, return_errors: bool
) -> QParams:
    """The batch's :class:`QParams` (device arrays) from the host search result."""
    extra = {}
    if return_errors:
        extra = dict(errors=jax.device_put(res.errors), candidates=jax.device_put(res.candidates))
    signed = jax.device_put(signed)
    if method is QuantizationMethod.UNIFORM:
        return QParams(
            range_min=jax.device_put(res.param[:, 0, 0]),
            range_max=jax.device_put(res.param[:, 0, 1]),
            signed=signed,
            **extra,
        )
    return QParams(threshold=jax.device_put(res.param[:, 0]), signed=signed, **extra)


def activation_qparams(
    bins: ArrayLike,
    counts: ArrayLike,
    *,
    n_bits: int = 8,
    method: QuantizationMethod | str = "power_of_two",
    error_method: ErrorMethod | str = "mse",
    p: float = 2.0,
    is_signed: bool | None = None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    z_threshold: float = float("inf"),
    return_errors: bool = False,
) -> QParams:
    """Choose an activation's quantization parameters from its histogram.

    Args:
      bins: ``(B+1,)`` sorted histogram edges (as MCT's collector / :func:`jq.histogram` give).
      counts: ``(B,)`` non-negative counts, not all zero. For ``"hmse"`` pass the
        Hessian-weighted histogram; the MSE formula is applied to it.
      n_bits, method, error_method, p, min_threshold: as in :func:`jq.weights_qparams`.
      is_signed: ``None`` chooses from the data (signed iff a non-empty bin starts below 0).
      mct_compat: reproduce MCT 2.6.1 exactly, quirks included, in float64.
      z_threshold: z-score outlier filter on bins (MCT's ``z_threshold``; ``inf`` = off).
      return_errors: also return the error of every candidate.

    Returns:
      ``QParams`` with a scalar ``threshold`` (power-of-two, symmetric) or scalar
      ``range_min``/``range_max`` (uniform), and ``signed``.

    Raises:
      ValueError / TypeError: bad input, naming the argument; with ``mct_compat=True``, the
        uniform-KL case where MCT raises.

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
      >>> bins, counts = jq.histogram(x, n_bins=256)
      >>> qp = jq.activation_qparams(bins, counts, method="power_of_two", error_method="mse")
      >>> float(qp.threshold), bool(qp.signed)
      (4.0, True)

    Reference: MCT 2.6.1's ``power_of_two_selection_histogram``,
    ``symmetric_selection_histogram``, ``uniform_selection_histogram``.
    """
    fn = "activation_qparams"
    bins_a, counts_a = check_histogram(bins, counts, fn)
    if bins_a.ndim != 1:
        raise ValueError(f"{fn}: bins must be 1-D (B+1,), got shape {tuple(bins_a.shape)}")
    if is_signed is not None and not isinstance(is_signed, (bool, np.bool_)):
        raise TypeError(f"{fn}: is_signed must be None or bool, got {is_signed!r}")
    batch = activation_qparams_batch(
        np.asarray(bins_a)[None],
        np.asarray(counts_a)[None],
        n_bits=n_bits,
        method=method,
        error_method=error_method,
        p=p,
        is_signed=is_signed,
        mct_compat=mct_compat,
        min_threshold=min_threshold,
        z_threshold=z_threshold,
        return_errors=return_errors,
        _fn=fn,
    )
    # Index on the host: an eager jax index would compile one small program per shape.
    one: QParams = jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[0]), batch)
    return one
