"""Layer ops, the ones that carry a weight: ``constant``, ``linear``, ``matmul``, ``conv``,
``conv_transpose``, ``embedding``, ``embedding_bag``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ._broadcast import per_channel
from .registry import Params, register_op

Pads = Sequence[tuple[int, int]]


@register_op("constant")
def constant(params: Params) -> jax.Array:
    """A stored tensor, ``params["value"]``; no inputs."""
    return params["value"]


@register_op("linear")
def linear(params: Params, x: jax.Array) -> jax.Array:
    """``x @ weight.T + bias``: x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    y = jnp.matmul(x, params["weight"].T)
    if "bias" in params:
        y = y + jnp.reshape(params["bias"], (1,) * (y.ndim - 1) + (-1,))
    return y


@register_op("matmul")
def matmul(params: Params, a: jax.Array, b: jax.Array) -> jax.Array:
    """``torch.matmul`` semantics: 1-D operands, batched and broadcast batch dims (bmm)."""
    del params
    return jnp.matmul(a, b)


def _spatial_dn(nd: int) -> tuple[str, str, str]:
    sp = "DHW"[-nd:] if nd <= 3 else None
    if sp is None:
        raise ValueError(f"conv: {nd}-d convolution is not supported (1 to 3 spatial dims)")
    return ("NC" + sp, "OI" + sp, "NC" + sp)


def conv_windows(
    x: jax.Array,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
) -> Iterator[tuple[tuple[int, ...], jax.Array]]:
    """``(tap, window)`` per kernel tap in row-major order: the strided slice of zero-padded
    ``x`` (N, C, *spatial) that tap multiplies, (N, C, *spatial_out)."""
    xp = lax.pad(
        x, jnp.array(0, x.dtype), ((0, 0, 0), (0, 0, 0)) + tuple((lo, hi, 0) for lo, hi in padding)
    )
    out = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(xp.shape[2:], kernel, stride, dilation, strict=True)
    ]
    for tap in itertools.product(*(range(k) for k in kernel)):
        start = [t * d for t, d in zip(tap, dilation, strict=True)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, stride, strict=True)]
        yield tap, lax.slice(xp, [0, 0, *start], [*xp.shape[:2], *limit], [1, 1, *stride])


def _depthwise(
    x: jax.Array, w: jax.Array, stride: Sequence[int], padding: Pads, dilation: Sequence[int]
) -> jax.Array:
    """Depthwise convolution (one filter per channel) as a sum over kernel taps of strided
    slices times per-channel weights.

    XLA:CPU lowers feature-grouped convolutions poorly: 210 ms against torch's 5.5 ms for a
    3x3 depthwise conv on (8, 144, 56, 56), one thread; this form fuses into one loop and takes
    5.5 ms. The loop is over the (static, small) kernel taps, not over channels.
    """
    nd = w.ndim - 2
    y: jax.Array | None = None
    for tap, window in conv_windows(x, w.shape[2:], stride, padding, dilation):
        term = window * jnp.reshape(w[(slice(None), 0) + tap], (1, -1) + (1,) * nd)
        y = term if y is None else y + term
    assert y is not None  # a kernel has at least one tap
    return y


@register_op("conv")
def conv(
    params: Params,
    x: jax.Array,
    *,
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> jax.Array:
    """N-d convolution (cross-correlation), PyTorch semantics.

    Args:
      params: weight (out, in/groups, *kernel); optional bias (out,).
      x: (N, in, *spatial).
      stride, dilation: one int per spatial dim.
      padding: one ``(lo, hi)`` pair per spatial dim (zeros).
      groups: feature groups (``groups == in`` is depthwise).

    Returns:
      (N, out, *spatial_out).
    """
    w = params["weight"]
    if groups > 1 and groups == x.shape[1] == w.shape[0] and w.shape[1] == 1:
        y = _depthwise(x, w, stride, padding, dilation)
    else:
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=tuple(stride),
            padding=tuple((lo, hi) for lo, hi in padding),
            rhs_dilation=tuple(dilation),
            feature_group_count=groups,
            dimension_numbers=_spatial_dn(w.ndim - 2),
        )
    if "bias" in params:
        y = y + per_channel(params["bias"], y.ndim)
    return y


@register_op("conv_transpose")
def conv_transpose(
    params: Params,
    x: jax.Array,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> jax.Array:
    """N-d transposed convolution, PyTorch semantics (the gradient of ``conv``).

    Args:
      params: weight (in, out/groups, *kernel); optional bias (out,).
      x: (N, in, *spatial).
      stride, padding, output_padding, dilation: one int per spatial dim, meaning what they
        mean in ``torch.nn.ConvTranspose2d``.
      groups: feature groups.

    Returns:
      (N, out, *spatial_out), ``out_i = (in_i-1)*stride - 2*padding + dilation*(k-1)
      + output_padding + 1``.
    """
    w = params["weight"]
    nd = w.ndim - 2
    cin, cout_g, *k = w.shape
    # As a direct conv: swap in/out within each group and flip the kernel.
    w = jnp.reshape(w, (groups, cin // groups, cout_g, *k))
    w = jnp.swapaxes(w, 1, 2).reshape((groups * cout_g, cin // groups, *k))
    w = jnp.flip(w, axis=tuple(range(2, 2 + nd)))
    pads = tuple(
        (d * (kk - 1) - p, d * (kk - 1) - p + op)
        for kk, p, op, d in zip(k, padding, output_padding, dilation, strict=True)
    )
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(1,) * nd,
        padding=pads,
        lhs_dilation=tuple(stride),
        rhs_dilation=tuple(dilation),
        feature_group_count=groups,
        dimension_numbers=_spatial_dn(nd),
    )
    if "bias" in params:
        y = y + per_channel(params["bias"], y.ndim)
    return y


@register_op("embedding")
def embedding(params: Params, indices: jax.Array) -> jax.Array:
    """Rows of ``params["weight"]`` (num, dim) at integer ``indices``; returns (*indices, dim)."""
    return jnp.take(params["weight"], indices, axis=0)


@register_op("embedding_bag")
def embedding_bag(
    params: Params,
    indices: jax.Array,
    offsets: jax.Array,
    weights: jax.Array | None = None,
    *,
    mode: str,
    include_last_offset: bool,
    padding_idx: int | None,
) -> jax.Array:
    """``torch.nn.functional.embedding_bag`` of 1-d ``indices`` split into bags at
    ``offsets``: per bag the sum, mean or max (``mode``) of rows of ``params["weight"]``
    (num, dim), each row times its ``weights`` entry when given (sum only). Rows equal to
    ``padding_idx`` (None: none) are left out; an empty bag gives zeros. With
    ``include_last_offset`` the last offset ends the last bag (torch: ``len(indices)``).
    Returns (bags, dim)."""
    table = params["weight"]
    bags = offsets.shape[0] - (1 if include_last_offset else 0)
    bag = jnp.searchsorted(offsets, jnp.arange(indices.shape[0]), side="right") - 1
    keep = bag < bags
    if padding_idx is not None:
        keep = keep & (indices != padding_idx)
    bag = jnp.where(keep, bag, bags)  # a spare segment for what is left out
    rows = jnp.take(table, indices, axis=0)
    if weights is not None:
        rows = rows * weights[:, None]
    if mode == "max":
        out = jax.ops.segment_max(rows, bag, num_segments=bags + 1)[:bags]
        count = jax.ops.segment_sum(keep.astype(table.dtype), bag, num_segments=bags + 1)[:bags]
        return jnp.where(count[:, None] > 0, out, jnp.zeros((), table.dtype))
    out = jax.ops.segment_sum(rows, bag, num_segments=bags + 1)[:bags]
    if mode == "mean":
        count = jax.ops.segment_sum(keep.astype(table.dtype), bag, num_segments=bags + 1)[:bags]
        out = out / jnp.maximum(count, 1)[:, None]
    return out
