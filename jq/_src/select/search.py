"""Candidate searches shared by weights and activations.

MCT 2.6.1's ``quantization_params_generation/qparams_search.py``: the power-of-two candidate
lists (``qparams_selection_tensor_search``, ``qparams_selection_histogram_search``), the
symmetric rounds (``qparams_symmetric_iterative_minimization``, ``search_fixed_range_intervals``)
and the uniform rounds (``iterative_uniform_dynamic_range_search``, ``search_dynamic_range``).

Each search takes a ``loss_fn`` mapping one candidate for every channel (thresholds ``(C,)`` or
ranges ``(C, 2)``) to per-channel losses ``(C,)``; the candidates of a round are evaluated with
``jax.vmap``. Rounds run in ``lax.while_loop``. With ``compat=True`` the selection arithmetic is
MCT's (0/1 blends that turn ``inf * 0`` into NaN, NaN-first ``argmin``); with ``compat=False``
NaN losses count as ``+inf`` and selection uses ``jnp.where``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import npsum as _npsum

LossFn = Callable[[jax.Array], jax.Array]

DEC_FACTOR = (1.02, 0.98)
BOTTOM_FACTOR, UPPER_FACTOR = 0.7, 1.2
DEC_RANGE_BOTTOM, DEC_RANGE_UPPER = 0.97, 1.03
TOLERANCE = 1e-11


class SearchResult(NamedTuple):
    """Outcome of a search.

    Attributes:
      param: chosen thresholds ``(C,)`` or ranges ``(C, 2)``.
      loss: its loss ``(C,)``.
      errors: every evaluated loss, ``(rounds, K, C)`` (``nan`` for rounds not run) or ``(K, C)``.
      candidates: the matching candidates, ``errors.shape`` (+ ``(2,)`` for ranges).
    """

    param: jax.Array
    loss: jax.Array
    errors: jax.Array
    candidates: jax.Array


def evaluate(loss_fn: LossFn, cands: jax.Array, batch_size: int | None) -> jax.Array:
    """Losses of all candidates ``cands[K, ...] -> (K, C)``.

    ``batch_size=None`` vmaps over all ``K`` at once (cheap losses: histograms). For losses over
    large tensors ``lax.map`` with a small ``batch_size`` is several times faster on CPU: a
    vmap over candidates materialises ``(K, C, N)`` intermediates instead of one fused pass per
    candidate (7x measured on a 512 x 4608 kernel).
    """
    if batch_size is None:
        return jax.vmap(loss_fn)(cands)
    losses: jax.Array = lax.map(loss_fn, cands, batch_size=batch_size)
    return losses


def argmin_first(losses: jax.Array, *, compat: bool) -> jax.Array:
    """Index of the minimum along axis 0; ties go to the first.

    ``compat``: NumPy's rule, a NaN counts as the minimum (first NaN wins). Otherwise NaN is
    ``+inf``.
    """
    is_nan = jnp.isnan(losses)
    idx = jnp.argmin(jnp.where(is_nan, jnp.inf, losses), axis=0)
    if compat:
        idx = jnp.where(jnp.any(is_nan, axis=0), jnp.argmax(is_nan, axis=0), idx)
    return idx


def _take(a: jax.Array, idx: jax.Array) -> jax.Array:
    """``a[idx[c], c, ...]`` for every channel ``c``; ``a``: ``(K, C, ...)``, ``idx``: ``(C,)``."""
    idx = idx.reshape((1, -1) + (1,) * (a.ndim - 2))
    return jnp.take_along_axis(a, idx, axis=0)[0]


def _blend(new: jax.Array, old: jax.Array, take: jax.Array, compat: bool) -> jax.Array:
    """MCT's ``new * take + old * (1 - take)`` (compat) or ``where(take, new, old)``.

    The compat form keeps NumPy's ``inf * 0 = NaN``: the result is NaN whenever the side not
    taken is not finite. (Spelled with ``where``: XLA simplifies ``x * bool`` to a select.)
    """
    picked = jnp.where(take, new, old)
    if compat:
        dropped_bad = jnp.where(take, ~jnp.isfinite(old), ~jnp.isfinite(new))
        picked = jnp.where(dropped_bad, jnp.nan, picked)
    return picked


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def pick(
    cands: jax.Array, losses: jax.Array, *, per_channel: bool, compat: bool
) -> tuple[jax.Array, jax.Array]:
    """Choose one candidate per channel (as MCT 2.6.1's ``search_fixed_range_intervals`` /
    ``search_dynamic_range`` do).

    Args:
      cands: ``(K, C)`` thresholds or ``(K, C, 2)`` ranges.
      losses: ``(K, C)``.
      per_channel: MCT picks per channel with a sequential 0/1 blend (in compat mode the blend's
        ``inf * 0 = NaN`` freezes a channel, [quirk]); per tensor with ``argmin``.

    Returns:
      ``(param, loss)``: ``(C,)`` (or ``(C, 2)``) and ``(C,)``.
    """
    if per_channel and compat:

        def step(
            carry: tuple[jax.Array, jax.Array], kl: tuple[jax.Array, jax.Array]
        ) -> tuple[tuple[jax.Array, jax.Array], None]:
            best_p, best_l = carry
            p_k, l_k = kl
            better = l_k < best_l
            # Parameters are finite, so the blend is exact for them: use where.
            best_p = jnp.where(_expand(better, p_k), p_k, best_p)
            return (best_p, _blend(l_k, best_l, better, True)), None

        (best_p, best_l), _ = lax.scan(step, (cands[0], losses[0]), (cands[1:], losses[1:]))
        return best_p, best_l
    idx = argmin_first(losses, compat=compat)
    return _take(cands, idx), _take(losses, idx)


def pot_search(
    loss_fn: LossFn, t0: jax.Array, *, n_cand: int, compat: bool, batch_size: int | None = None
) -> SearchResult:
    """Power-of-two search: candidates ``t0 / 2^i``, ``i = 0..n_cand-1``.

    MCT 2.6.1's ``qparams_selection_tensor_search`` / ``qparams_selection_histogram_search``
    (``qparams_search.py``).

    Args:
      loss_fn: ``(C,) -> (C,)``.
      t0: ``(C,)`` largest candidate (one octave above the no-clipping threshold).
      n_cand: number of candidates (static).
      batch_size: see :func:`evaluate`.

    Returns:
      ``SearchResult`` (``param`` not yet floored at ``min_threshold``); ties go to the larger.
    """
    scale = jnp.asarray(2.0 ** np.arange(n_cand), t0.dtype).reshape(-1, 1)
    cands = t0[None, :] / scale
    losses = evaluate(loss_fn, cands, batch_size)
    param, loss = pick(cands, losses, per_channel=False, compat=compat)
    return SearchResult(param, loss, losses, cands)


class _LoopState(NamedTuple):
    r: jax.Array
    stop: jax.Array
    centre: jax.Array
    scale: jax.Array
    best_p: jax.Array
    best_l: jax.Array
    errors: jax.Array
    cands: jax.Array


def _iterate(
    loss_fn: LossFn,
    x0: jax.Array,
    make_cands: Callable[[jax.Array, jax.Array], jax.Array],
    shrink: tuple[int, Callable[[jax.Array], jax.Array]],
    *,
    rounds: int,
    n_cand: int,
    per_channel: bool,
    compat: bool,
    loss0: jax.Array | None,
    batch_size: int | None,
    mean: Callable[[jax.Array], jax.Array] | None,
) -> SearchResult:
    """Common round loop of the symmetric and uniform searches (MCT 2.6.1's
    ``qparams_symmetric_iterative_minimization`` / ``iterative_uniform_dynamic_range_search``)."""
    if mean is None:
        mean = _npsum.mean if compat else jnp.mean
    loss0 = loss_fn(x0) if loss0 is None else loss0
    cand_shape = make_cands(x0, jnp.asarray([BOTTOM_FACTOR, UPPER_FACTOR], x0.dtype)).shape
    state = _LoopState(
        r=jnp.asarray(0),
        stop=jnp.asarray(False),
        centre=x0,
        scale=jnp.asarray([BOTTOM_FACTOR, UPPER_FACTOR], x0.dtype),
        best_p=x0,
        best_l=loss0,
        errors=jnp.full((rounds, n_cand) + loss0.shape, jnp.nan, loss0.dtype),
        cands=jnp.full((rounds,) + cand_shape, jnp.nan, x0.dtype),
    )

    def body(s: _LoopState) -> _LoopState:
        cands = make_cands(s.centre, s.scale)
        losses = evaluate(loss_fn, cands, batch_size)
        centre, lc = pick(cands, losses, per_channel=per_channel, compat=compat)
        prev = s.best_l
        imp = lc < prev
        best_p = jnp.where(_expand(imp, centre), centre, s.best_p)
        best_l = _blend(lc, prev, imp, compat)
        diff = mean(prev - lc)
        stop = (diff > 0) & (diff < TOLERANCE)
        scale = jnp.where(~stop & (s.r % shrink[0] == 0), shrink[1](s.scale), s.scale)
        return _LoopState(
            r=s.r + 1,
            stop=stop,
            centre=centre,
            scale=scale,
            best_p=best_p,
            best_l=best_l,
            errors=s.errors.at[s.r].set(losses),
            cands=s.cands.at[s.r].set(cands),
        )

    s = lax.while_loop(lambda s: (s.r < rounds) & ~s.stop, body, state)
    return SearchResult(s.best_p, s.best_l, s.errors, s.cands)


def _shrink_scale(scale: jax.Array) -> jax.Array:
    scale = scale * jnp.asarray(DEC_FACTOR, scale.dtype)
    return jnp.stack(
        [jnp.minimum(scale[0], DEC_RANGE_BOTTOM), jnp.maximum(scale[1], DEC_RANGE_UPPER)]
    )


def symmetric_search(
    loss_fn: LossFn,
    x0: jax.Array,
    *,
    rounds: int,
    dec_freq: int,
    per_channel: bool,
    compat: bool,
    n_cand: int = 30,
    loss0: jax.Array | None = None,
    batch_size: int | None = None,
    mean: Callable[[jax.Array], jax.Array] | None = None,
) -> SearchResult:
    """MCT's iterative symmetric threshold search.

    MCT 2.6.1's ``qparams_symmetric_iterative_minimization`` with
    ``search_fixed_range_intervals`` (``qparams_search.py``).

    Each round evaluates ``linspace(c * lo, c * hi, n_cand)`` around the previous round's pick
    ``c``; every ``dec_freq`` rounds the factors narrow towards ``(0.97, 1.03)``; the best so far
    changes only on strict improvement; a small positive mean improvement stops early.

    Args:
      loss_fn: ``(C,) -> (C,)``.
      x0: ``(C,)`` start (the no-clipping threshold).
      rounds, dec_freq, n_cand: static loop sizes.
      loss0: the start's loss, when it must be computed differently (default ``loss_fn(x0)``).
      batch_size: see :func:`evaluate`.
      mean: the mean over channels ``(C,) -> ()`` of the early-stop test (default NumPy's
        order in compat mode, else ``jnp.mean``); a padded search passes a masked one.
    """

    def make_cands(centre: jax.Array, scale: jax.Array) -> jax.Array:
        return _npsum.linspace(_npsum.mul(centre, scale[0]), _npsum.mul(centre, scale[1]), n_cand)

    return _iterate(
        loss_fn,
        x0,
        make_cands,
        (dec_freq, _shrink_scale),
        rounds=rounds,
        n_cand=n_cand,
        per_channel=per_channel,
        compat=compat,
        loss0=loss0,
        batch_size=batch_size,
        mean=mean,
    )


def scaler_grid(n: int) -> np.ndarray:
    """``(n*n, 2)`` pairs of ``linspace(0.7, 1.2, n)`` factors, min-factor major (the scalers
    of MCT 2.6.1's ``qparams_uniform_selection_tensor_search`` and
    ``qparams_uniform_selection_histogram_search``)."""
    g = np.linspace(BOTTOM_FACTOR, UPPER_FACTOR, n)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


def uniform_search(
    loss_fn: LossFn,
    start: jax.Array,
    *,
    grid: int,
    rounds: int,
    per_channel: bool,
    compat: bool,
    loss0: jax.Array | None = None,
    batch_size: int | None = None,
    mean: Callable[[jax.Array], jax.Array] | None = None,
) -> SearchResult:
    """MCT's iterative uniform range search: ranges ``(a * g_i, b * g_j)``.

    MCT 2.6.1's ``iterative_uniform_dynamic_range_search`` with ``search_dynamic_range``
    (``qparams_search.py``).

    Args:
      loss_fn: ``(C, 2) -> (C,)``.
      start: ``(C, 2)`` initial ``[min, max]`` ranges.
      grid: scaler grid size per axis (8 for tensors, 12 for histograms; static).
      loss0, batch_size, mean: as in :func:`symmetric_search`.
    """
    scalers = jnp.asarray(scaler_grid(grid), start.dtype)

    def make_cands(centre: jax.Array, scale: jax.Array) -> jax.Array:
        del scale  # the uniform grid never narrows
        return _npsum.mul(centre[None, :, :], scalers[:, None, :])

    return _iterate(
        loss_fn,
        start,
        make_cands,
        (1, lambda s: s),
        rounds=rounds,
        n_cand=grid * grid,
        per_channel=per_channel,
        compat=compat,
        loss0=loss0,
        batch_size=batch_size,
        mean=mean,
    )
