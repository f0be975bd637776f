"""Ops that resample spatial maps: ``resize`` (torch's ``interpolate``; the matrices from
:func:`resize_matrix`), ``grid_sample``, ``col2im`` (``fold``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .registry import Params, register_op


def resize_matrix(
    n_in: int, n_out: int, mode: str, align_corners: bool | None, scale: float | None = None
) -> np.ndarray:
    """(n_out, n_in) float64 matrix mapping one axis of length ``n_in`` to ``n_out`` as torch's
    ``interpolate`` does (``mode`` ``"nearest"``, ``"nearest-exact"`` or ``"linear"``;
    ``scale``: the user's scale factor, which torch uses for the source coordinate instead of
    ``n_in / n_out`` when given)."""
    out = np.arange(n_out, dtype=np.float64)
    ratio = (1.0 / scale) if scale else n_in / n_out
    m = np.zeros((n_out, n_in))
    if mode in ("nearest", "nearest-exact"):
        src = out * ratio if mode == "nearest" else (out + 0.5) * ratio
        m[np.arange(n_out), np.minimum(np.floor(src).astype(int), n_in - 1)] = 1.0
        return m
    if mode != "linear":
        raise ValueError(f"resize: mode must be nearest, nearest-exact or linear, got {mode!r}")
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((out + 0.5) * ratio - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


@register_op("resize")
def resize(
    params: Params,
    x: jax.Array,
    *,
    sizes: Sequence[int],
    mode: str,
    align_corners: bool | None = None,
    scales: Sequence[float] | None = None,
) -> jax.Array:
    """Resize the trailing ``len(sizes)`` axes of ``x`` (N, C, *spatial) to ``sizes`` with
    torch's ``interpolate`` rules (``mode``: ``"nearest"``, ``"nearest-exact"``, ``"linear"``
    per axis, i.e. bilinear/trilinear; ``scales``: the scale factors torch was given, or
    ``None``). One exact matrix product per axis."""
    lead = x.ndim - len(sizes)
    for k, n_out in enumerate(sizes):
        axis = lead + k
        scale = scales[k] if scales else None
        m = resize_matrix(x.shape[axis], n_out, mode, align_corners, scale)
        x = jnp.moveaxis(jnp.tensordot(x, jnp.asarray(m.T, x.dtype), axes=([axis], [0])), -1, axis)
    return x


@register_op("col2im")
def col2im(
    params: Params,
    x: jax.Array,
    *,
    output_size: tuple[int, int],
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    stride: tuple[int, int],
) -> jax.Array:
    """``torch.nn.functional.fold``: sum sliding blocks x (N, C*kh*kw, L) into (N, C, H, W)
    (``output_size`` (H, W)); the adjoint of ``unfold``. One strided add per kernel tap."""
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (
        output_size,
        kernel_size,
        dilation,
        padding,
        stride,
    )
    lh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    lw = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, c = x.shape[0], x.shape[1] // (kh * kw)
    cols = jnp.reshape(x, (n, c, kh, kw, lh, lw))
    out = jnp.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (lh - 1) + 1, sh)
            cols_ = slice(j * dw, j * dw + sw * (lw - 1) + 1, sw)
            out = out.at[:, :, rows, cols_].add(cols[:, :, i, j])
    return out[:, :, ph : ph + h, pw : pw + w]


def _unnormalize(g: jax.Array, size: int, align_corners: bool) -> jax.Array:
    if align_corners:
        return (g + 1) / 2 * (size - 1)
    return ((g + 1) * size - 1) / 2


@register_op("grid_sample")
def grid_sample(
    params: Params,
    x: jax.Array,
    grid: jax.Array,
    *,
    mode: str,
    padding_mode: str,
    align_corners: bool,
) -> jax.Array:
    """``torch.nn.functional.grid_sample`` in 2-d: x (N, C, H, W) sampled at grid (N, Ho, Wo,
    2) (x, y in [-1, 1]) -> (N, C, Ho, Wo); ``mode`` ``"bilinear"`` or ``"nearest"``,
    ``padding_mode`` ``"zeros"`` or ``"border"``."""
    n, c, h, w = x.shape
    px = _unnormalize(grid[..., 0], w, align_corners)
    py = _unnormalize(grid[..., 1], h, align_corners)
    if padding_mode == "border":
        px, py = jnp.clip(px, 0, w - 1), jnp.clip(py, 0, h - 1)
    flat = jnp.reshape(x, (n, c, h * w))

    def tap(iy: jax.Array, ix: jax.Array) -> jax.Array:
        """x at integer positions (N, Ho, Wo), zero outside."""
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        idx = jnp.clip(iy, 0, h - 1) * w + jnp.clip(ix, 0, w - 1)
        idx = jnp.broadcast_to(jnp.reshape(idx, (n, 1, -1)), (n, c, idx[0].size))
        vals = jnp.reshape(jnp.take_along_axis(flat, idx, axis=2), (n, c) + ix.shape[1:])
        return jnp.where(inside[:, None], vals, jnp.zeros((), x.dtype))

    if mode == "nearest":
        return tap(jnp.round(py).astype(jnp.int32), jnp.round(px).astype(jnp.int32))
    if mode != "bilinear":
        raise ValueError(f"grid_sample: mode must be bilinear or nearest, got {mode!r}")
    x0, y0 = jnp.floor(px), jnp.floor(py)
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy
