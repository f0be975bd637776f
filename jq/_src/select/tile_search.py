"""Default-mode weight searches on fixed-size tiles: one compiled program per quantizer method
and tile shape, for every tensor shape, error method, bit width and granularity.

The searches of :mod:`.weights` (MCT 2.6.1's power-of-two, symmetric and uniform tensor
searches) rewritten over a :class:`~.tiles.Tile`: every per-row reduction is two masked sums
per tile row and a segment sum over row slots, and each tensor keeps its own early stop
(the mean improvement over its own rows). Everything but the method and the tile's shape is
a runtime operand (:class:`Options`): the error method (``lax.switch``), ``n_bits``, ``p``,
``min_threshold``, the round counts of per-channel or per-tensor searches. Results equal the
bucketed default-mode search's up to float32 summation order.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..runtime.jit import jit
from . import metrics as _metrics
from . import npsum as _npsum
from .enums import ErrorMethod, QuantizationMethod
from .quantizers import pot, threshold_quantize, uniform_quantize_aligned, zero_align
from .search import (
    BOTTOM_FACTOR,
    DEC_FACTOR,
    DEC_RANGE_BOTTOM,
    DEC_RANGE_UPPER,
    TOLERANCE,
    UPPER_FACTOR,
    SearchResult,
    argmin_first,
    scaler_grid,
)

# The error methods a tile search evaluates, in ``lax.switch`` order (KL is not tiled).
KINDS = (
    ErrorMethod.NOCLIPPING,
    ErrorMethod.MSE,
    ErrorMethod.MAE,
    ErrorMethod.LP,
    ErrorMethod.HMSE,
)
MAX_ROUNDS = 40  # the longest search (symmetric per tensor): the error record's length
SYMMETRIC_CANDIDATES = 30
POT_CANDIDATES = 10
UNIFORM_GRID = 8


class Options(NamedTuple):
    """Runtime options of a tile search (scalars; one program serves every value).

    Attributes:
      kind: int32, index of the error method in :data:`KINDS`.
      n_bits: int32 bit width.
      p: float32 exponent of LP.
      min_threshold: float32 floor of thresholds.
      absmax_factor: float32 ``2^(n-1) / (2^(n-1) - 1)`` (``quantizers.absmax_factor``).
      rounds: int32 rounds of the iterative searches.
      dec_freq: int32 rounds between narrowings of the symmetric search.
    """

    kind: Any
    n_bits: Any
    p: Any
    min_threshold: Any
    absmax_factor: Any
    rounds: Any
    dec_freq: Any


BLOCK = 2**18  # elements per block: skipped once its rows' tensors have stopped


class _Rows(NamedTuple):
    """A tile as the program sees it: values, weights and the row maps (see ``tiles.Tile``)."""

    x: jax.Array
    w: jax.Array
    row: jax.Array
    cols: jax.Array
    n: jax.Array
    tensor: jax.Array
    channels: jax.Array
    active: jax.Array

    def slots(self) -> int:
        return self.n.shape[0]

    def blocks(self) -> tuple[jax.Array, ...]:
        """``(x, w, row, cols)`` split into blocks of :data:`BLOCK` elements, each with a
        leading block axis."""
        r, width = self.x.shape
        b = max(1, min(r, BLOCK // width))
        parts = (self.x, self.w, self.row, self.cols)
        return tuple(v.reshape((r // b, b) + v.shape[1:]) for v in parts)

    def row_extreme(self, fill: float, op) -> jax.Array:
        """``(M,)`` min (``op=jnp.min``, ``fill=inf``) or max of each row slot's values."""
        part = op(jnp.where(_real(self.x, self.cols), self.x, fill), axis=1)
        seg = jax.ops.segment_min if op is jnp.min else jax.ops.segment_max
        return seg(part, self.row, self.slots())

    def tensor_mean(self, v: jax.Array) -> jax.Array:
        """``(M,)`` per row slot: the mean of ``v`` over its tensor's rows."""
        s = jax.ops.segment_sum(jnp.where(self.active, v, 0), self.tensor, self.slots())
        return (s / self.channels)[self.tensor]


def _real(x: jax.Array, cols: jax.Array) -> jax.Array:
    """``(B, L)`` mask of the real (not padding) values."""
    return jnp.arange(x.shape[1])[None, :] < cols[:, None]


def _error_fns(p: jax.Array):
    """The elementwise error ``(x, q, w) -> (B, L)`` of each method of :data:`KINDS`, in order
    (no clipping: 0). Chosen by ``lax.switch`` around a whole block's evaluation, so that each
    branch fuses into one loop with the quantizer and the sum (a switch around the elementwise
    error alone materialises it: 3-4x slower on resnet18's kernels)."""

    def lp(x, q, w):
        d = _metrics._absdiff(x, q)
        return lax.pow(d, p.astype(d.dtype))

    def hmse(x, q, w):
        wd = w * _metrics._absdiff(x, q)
        return wd * wd

    def mse(x, q, w):
        d = _metrics._absdiff(x, q)
        return d * d

    return [
        lambda x, q, w: jnp.zeros_like(x),
        mse,
        lambda x, q, w: _metrics._absdiff(x, q),
        lp,
        hmse,
    ]


def _losses(rows: _Rows, opts: Options, uniform: bool, cands: jax.Array, live: jax.Array):
    """Losses ``(K, M)`` of candidates ``(K, M)`` (thresholds) or ``(K, M, 2)`` (ranges) for
    every row slot; blocks holding no ``live`` row are skipped (their losses: 0)."""
    if uniform:
        a, b = zero_align(cands[..., 0], cands[..., 1], opts.n_bits)
        params: tuple[jax.Array, ...] = (a, b)
        steps = jnp.ldexp(jnp.float32(1), opts.n_bits) - 1
    else:
        params = (cands,)
    x, w, row, cols = rows.blocks()
    on = jnp.any(live[row], axis=1)
    k, bsize = cands.shape[0], x.shape[1]

    def block_sums(args):
        xb, wb, rb, cb, on_b = args

        def one(p):
            el = [v[rb][:, None] for v in p]

            def summed(error):
                def branch():
                    if uniform:
                        q = uniform_quantize_aligned(xb, el[0], el[1], steps)[0]
                    else:
                        q = threshold_quantize(xb, el[0], opts.n_bits, True, exact=False)
                    e = error(xb, q, wb)
                    return jnp.sum(jnp.where(_real(xb, cb), e, 0), axis=1)

                return branch

            return lax.switch(opts.kind, [summed(f) for f in _error_fns(opts.p)])

        skip = jnp.zeros((k, bsize), x.dtype)
        return lax.cond(on_b, lambda: lax.map(one, params), lambda: skip)

    sums = lax.map(block_sums, (x, w, row, cols, on))  # (NB, K, B)
    flat = jnp.moveaxis(sums, 1, -1).reshape(-1, k)
    loss = jax.ops.segment_sum(flat, row.reshape(-1), rows.slots()).T / rows.n[None, :]
    if uniform:
        loss = jnp.where(cands[..., 0] == cands[..., 1], jnp.inf, loss)
    return loss


class _State(NamedTuple):
    r: jax.Array
    live: jax.Array  # (M,) the row's tensor is still searching
    centre: jax.Array
    scale: jax.Array
    best_p: jax.Array
    best_l: jax.Array
    errors: jax.Array
    cands: jax.Array


def _iterate(rows: _Rows, losses_fn, x0, make_cands, n_cand, opts, shrink, keep_errors):
    """The round loop of the symmetric and uniform searches, each tensor stopping on its own
    (``search._iterate`` with one early stop per tensor of the tile)."""
    loss0 = losses_fn(x0[None], rows.active)[0]
    init_scale = jnp.asarray([BOTTOM_FACTOR, UPPER_FACTOR], x0.dtype)
    cand_shape = make_cands(x0, init_scale).shape
    record = MAX_ROUNDS if keep_errors else 1
    state = _State(
        r=jnp.int32(0),
        live=rows.active & (opts.kind != 0),
        centre=x0,
        scale=init_scale,
        best_p=x0,
        best_l=loss0,
        errors=jnp.full((record, n_cand) + loss0.shape, jnp.nan, loss0.dtype),
        cands=jnp.full((record,) + cand_shape, jnp.nan, x0.dtype),
    )

    def body(s: _State) -> _State:
        cands = make_cands(s.centre, s.scale)
        losses = losses_fn(cands, s.live)
        idx = argmin_first(losses, compat=False)
        centre = jnp.take_along_axis(cands, idx.reshape((1, -1) + (1,) * (cands.ndim - 2)), 0)[0]
        lc = jnp.take_along_axis(losses, idx[None], 0)[0]
        imp = s.live & (lc < s.best_l)
        diff = rows.tensor_mean(s.best_l - lc)
        stop = (diff > 0) & (diff < TOLERANCE)
        live_p = s.live.reshape(s.live.shape + (1,) * (centre.ndim - 1))
        imp_p = imp.reshape(live_p.shape)
        slot = jnp.minimum(s.r, record - 1)
        return _State(
            r=s.r + 1,
            live=s.live & ~stop,
            centre=jnp.where(live_p, centre, s.centre),
            scale=jnp.where(s.r % shrink[0] == 0, shrink[1](s.scale), s.scale),
            best_p=jnp.where(imp_p, centre, s.best_p),
            best_l=jnp.where(imp, lc, s.best_l),
            errors=s.errors.at[slot].set(jnp.where(s.live[None], losses, jnp.nan)),
            cands=s.cands.at[slot].set(jnp.where(live_p[None], cands, jnp.nan)),
        )

    s = lax.while_loop(lambda s: (s.r < opts.rounds) & jnp.any(s.live), body, state)
    loss = jnp.where(opts.kind == 0, 0.0, s.best_l)  # no clipping: the start, no loss
    return SearchResult(s.best_p, loss, s.errors, s.cands)


def _shrink(scale: jax.Array) -> jax.Array:
    scale = scale * jnp.asarray(DEC_FACTOR, scale.dtype)
    return jnp.stack(
        [jnp.minimum(scale[0], DEC_RANGE_BOTTOM), jnp.maximum(scale[1], DEC_RANGE_UPPER)]
    )


@functools.partial(jit, static_argnames=("method", "keep_errors"))
def search_tile(rows: _Rows, opts: Options, *, method, keep_errors) -> SearchResult:
    """Search every row slot of a tile: ``(M,)`` thresholds or ``(M, 2)`` ranges, their
    losses, and (``keep_errors``) every round's candidates and losses ``(MAX_ROUNDS, K, M)``
    (rounds not run: NaN)."""
    uniform = method is QuantizationMethod.UNIFORM
    losses_fn = functools.partial(_losses, rows, opts, uniform)
    lo = rows.row_extreme(jnp.inf, jnp.min)
    hi = rows.row_extreme(-jnp.inf, jnp.max)
    lo, hi = jnp.where(rows.active, lo, -1.0), jnp.where(rows.active, hi, 1.0)
    if uniform:
        start = jnp.stack([lo, jnp.maximum(-lo, hi)], axis=1)
        scalers = jnp.asarray(scaler_grid(UNIFORM_GRID), start.dtype)

        def grid(centre, scale):
            del scale  # the uniform grid never narrows
            return centre[None, :, :] * scalers[:, None, :]

        n_cand = UNIFORM_GRID * UNIFORM_GRID
        return _iterate(rows, losses_fn, start, grid, n_cand, opts, (1, lambda s: s), keep_errors)
    absmax = jnp.maximum(-lo, hi * opts.absmax_factor)
    if method is QuantizationMethod.POWER_OF_TWO:
        return _pot(rows, losses_fn, absmax, opts, keep_errors)
    x0 = jnp.maximum(absmax, opts.min_threshold)

    def around(centre, scale):
        lo, hi = _npsum.mul(centre, scale[0]), _npsum.mul(centre, scale[1])
        return _npsum.linspace(lo, hi, SYMMETRIC_CANDIDATES)

    res = _iterate(
        rows,
        losses_fn,
        x0,
        around,
        SYMMETRIC_CANDIDATES,
        opts,
        (opts.dec_freq, _shrink),
        keep_errors,
    )
    return res._replace(param=jnp.maximum(res.param, opts.min_threshold))


def _pot(rows: _Rows, losses_fn, absmax, opts: Options, keep_errors: bool) -> SearchResult:
    """Power-of-two: ``pot(absmax)`` (no clipping) or the best of ``2 pot(absmax) / 2^i``."""
    t0 = 2 * pot(absmax, opts.min_threshold)
    scale = jnp.asarray(2.0 ** np.arange(POT_CANDIDATES), t0.dtype).reshape(-1, 1)
    cands = t0[None, :] / scale
    losses = losses_fn(cands, rows.active & (opts.kind != 0))
    idx = argmin_first(losses, compat=False)
    param = jnp.maximum(jnp.take_along_axis(cands, idx[None], 0)[0], opts.min_threshold)
    loss = jnp.take_along_axis(losses, idx[None], 0)[0]
    noclip = opts.kind == 0
    param = jnp.where(noclip, pot(absmax, opts.min_threshold), param)
    loss = jnp.where(noclip, 0.0, loss)
    if not keep_errors:
        cands, losses = cands[:1], losses[:1]
    return SearchResult(param, loss, losses, cands)
