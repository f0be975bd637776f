"""Pooling ops: ``max_pool``, ``avg_pool`` (torch's divisor rules, also
:func:`avg_pool_divisor`), ``adaptive_avg_pool`` (channels-first), and ``reduce_window``
(pooling on any layout, as JAX programs write it)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .registry import Params, register_op


def _pool_pads(
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> list[tuple[int, int]]:
    """``(lo, hi)`` padding per spatial dim, with the extra high padding of ``ceil_mode``."""
    pads = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True):
        span = n + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= n + p:  # torch: the last window must start inside
            out -= 1
        pads.append((p, (out - 1) * s + d * (k - 1) + 1 - n - p))
    return pads


@register_op("max_pool")
def max_pool(
    params: Params,
    x: jax.Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> jax.Array:
    """N-d max pooling of x (N, C, *spatial); padding is -inf; torch ``ceil_mode`` rule."""
    pads = _pool_pads(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    # A Python scalar init lets JAX pick reduce_window_max, which has a VJP (HMSE scores).
    init = -float("inf") if jnp.issubdtype(x.dtype, jnp.floating) else int(jnp.iinfo(x.dtype).min)  # type: ignore[no-untyped-call]
    out: jax.Array = lax.reduce_window(
        x,
        init,
        lax.max,
        (1, 1) + tuple(kernel_size),
        (1, 1) + tuple(stride),
        ((0, 0), (0, 0)) + tuple(pads),
        window_dilation=(1, 1) + tuple(dilation),
    )
    return out


def _window_counts(n: int, k: int, s: int, p: int, hi: int, include_pad: bool) -> np.ndarray:
    """Per output position, how many elements torch's avg_pool divides by (one dim)."""
    out = (n + p + hi - k) // s + 1
    starts = np.arange(out) * s - p
    lo_bound, hi_bound = (-p, n + p) if include_pad else (0, n)
    counts: np.ndarray = np.minimum(starts + k, hi_bound) - np.maximum(starts, lo_bound)
    return counts


@register_op("avg_pool")
def avg_pool(
    params: Params,
    x: jax.Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> jax.Array:
    """N-d average pooling of x (N, C, *spatial), torch's divisor rules.

    With ``count_include_pad`` the divisor counts zero padding but not the overhang that
    ``ceil_mode`` adds; ``divisor_override`` (int or None) replaces the divisor.
    """
    nd = len(kernel_size)
    pads = _pool_pads(x.shape[2:], kernel_size, stride, padding, (1,) * nd, ceil_mode)
    total: jax.Array = lax.reduce_window(
        x,
        0.0 if jnp.issubdtype(x.dtype, jnp.floating) else 0,
        lax.add,
        (1, 1) + tuple(kernel_size),
        (1, 1) + tuple(stride),
        ((0, 0), (0, 0)) + tuple(pads),
    )
    if divisor_override:
        return total / divisor_override
    counts = avg_pool_divisor(
        x.shape[2:],
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    return total / jnp.asarray(counts, x.dtype)[None, None]


def avg_pool_divisor(
    spatial: Sequence[int],
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    """What ``avg_pool`` divides each window's sum by: a float32 array of the output's
    spatial shape (torch's rules; no ``divisor_override``)."""
    nd = len(kernel_size)
    pads = _pool_pads(spatial, kernel_size, stride, padding, (1,) * nd, ceil_mode)
    counts = np.ones((), np.float32)
    for n, k, s, (p, hi) in zip(spatial, kernel_size, stride, pads, strict=True):
        c = _window_counts(n, k, s, p, hi, count_include_pad).astype(np.float32)
        counts = np.multiply.outer(counts, c)
    return counts


@register_op("adaptive_avg_pool")
def adaptive_avg_pool(
    params: Params, x: jax.Array, *, output_size: Sequence[int | None]
) -> jax.Array:
    """Adaptive average pooling of x (N, C, *spatial) to ``output_size`` (None keeps a dim).

    Window ``i`` of a dim of length n covers ``[floor(i*n/out), ceil((i+1)*n/out))``. Divisible
    sizes use a reshape-mean; others an averaging matrix (built at trace time).
    """
    nd = len(output_size)
    for j, size in enumerate(output_size):
        axis = x.ndim - nd + j
        n = x.shape[axis]
        out = n if size is None else size
        if n % out == 0:
            x = jnp.mean(
                jnp.reshape(x, x.shape[:axis] + (out, n // out) + x.shape[axis + 1 :]),
                axis=axis + 1,
            )
        else:
            i = np.arange(out)
            start, stop = (i * n) // out, -((-(i + 1) * n) // out)
            cols = np.arange(n)
            m = ((cols >= start[:, None]) & (cols < stop[:, None])) / (stop - start)[:, None]
            x = jnp.moveaxis(
                jnp.tensordot(x, jnp.asarray(m.T, x.dtype), axes=([axis], [0])), -1, axis
            )
    return x


@register_op("reduce_window")
def reduce_window(
    params: Params,
    x: jax.Array,
    *,
    computation: str,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> jax.Array:
    """Pooling on any layout: ``lax.reduce_window`` with max (padding -inf) or sum (zeros).

    Args:
      x: any rank; ``window``, ``strides``, ``base_dilation``, ``window_dilation`` one int per
        axis of x; ``padding`` one ``(lo, hi)`` per axis.
      computation: ``"max"`` or ``"sum"``.
    """
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    # Python scalar inits let JAX pick reduce_window_max / _sum, which have VJPs (HMSE scores).
    init: float | int
    if computation == "max":
        init = -float("inf") if floating else int(jnp.iinfo(x.dtype).min)  # type: ignore[no-untyped-call]
        reducer = lax.max
    elif computation == "sum":
        init, reducer = (0.0 if floating else 0), lax.add
    else:
        raise ValueError(f"reduce_window: computation must be 'max' or 'sum', got {computation!r}")
    out: jax.Array = lax.reduce_window(
        x,
        init,
        reducer,
        tuple(window),
        tuple(strides),
        tuple((lo, hi) for lo, hi in padding),
        tuple(base_dilation),
        tuple(window_dilation),
    )
    return out
