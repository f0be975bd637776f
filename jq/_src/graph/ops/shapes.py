"""Ops that move values without arithmetic: ``reshape``, ``permute``, ``expand``, ``cat``,
``slice``, ``select``, ``cast``, pads (``pad``, ``mode_pad``, ``pad_nd``), the ``lax``-shaped
``slice_nd`` and ``dynamic_slice``, and ``roll``, ``flip``, ``tile``, ``diagonal``,
``full_like``, ``arange``."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .registry import Params, register_op


@register_op("pad")
def pad(
    params: Params, x: jax.Array, *, padding: Sequence[tuple[int, int]], value: float = 0.0
) -> jax.Array:
    """Constant padding of the last ``len(padding)`` axes by ``(lo, hi)`` each (negative crops),
    ``torch.nn.functional.pad``'s ``"constant"`` mode."""
    lead = ((0, 0, 0),) * (x.ndim - len(padding))
    config = lead + tuple((int(lo), int(hi), 0) for lo, hi in padding)
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


@register_op("cat")
def cat(params: Params, *xs: jax.Array, axis: int) -> jax.Array:
    """Concatenate along ``axis``."""
    return jnp.concatenate(xs, axis=axis)


@register_op("reshape")
def reshape(params: Params, x: jax.Array, *, shape: Sequence[int]) -> jax.Array:
    """Reshape (row-major; one ``-1`` allowed). Also covers view, flatten, (un)squeeze."""
    return jnp.reshape(x, shape)


@register_op("permute")
def permute(params: Params, x: jax.Array, *, dims: Sequence[int]) -> jax.Array:
    """Permute axes (``transpose`` of two axes is a permute)."""
    return jnp.transpose(x, dims)


@register_op("expand")
def expand(
    params: Params,
    x: jax.Array,
    like: jax.Array | None = None,
    *,
    shape: Sequence[int],
    like_axes: Sequence[tuple[int, int]] = (),
) -> jax.Array:
    """Broadcast to ``shape`` (leading axes may be added). A ``-1`` keeps ``x``'s size on that
    axis, or, for an axis ``i`` of ``like_axes`` ``((i, j), ...)``, takes ``like.shape[j]``
    (a dynamic batch size read from another value, e.g. a class token expanded to the batch)."""
    target = list(shape)
    for i, j in like_axes:
        target[i] = typing.cast(jax.Array, like).shape[j]  # like_axes come with a `like` input
    lead = len(target) - x.ndim
    target = [x.shape[i - lead] if d == -1 else d for i, d in enumerate(target)]
    return jnp.broadcast_to(x, tuple(target))


@register_op("slice")
def slice_(
    params: Params, x: jax.Array, *, axis: int, start: int, stop: int, step: int
) -> jax.Array:
    """``x[..., start:stop:step, ...]`` on ``axis`` (normalized, non-negative bounds)."""
    return lax.slice_in_dim(x, start, stop, step, axis=axis)


@register_op("select")
def select(params: Params, x: jax.Array, *, axis: int, index: int) -> jax.Array:
    """``x[..., index, ...]`` on ``axis`` (the axis is removed)."""
    return lax.index_in_dim(x, index, axis=axis, keepdims=False)


@register_op("cast")
def cast(params: Params, x: jax.Array, *, dtype: str) -> jax.Array:
    """Convert to ``dtype`` (a numpy dtype name, e.g. ``"float32"``); 64-bit names map to
    32 bits unless ``jax_enable_x64`` is on."""
    return x.astype(jax.dtypes.canonicalize_dtype(dtype))


@register_op("slice_nd")
def slice_nd(
    params: Params,
    x: jax.Array,
    *,
    start: Sequence[int],
    limit: Sequence[int],
    strides: Sequence[int] | None,
) -> jax.Array:
    """``lax.slice``: ``x[start[0]:limit[0]:strides[0], ...]`` on every axis."""
    return lax.slice(x, start, limit, strides)


@register_op("dynamic_slice")
def dynamic_slice(
    params: Params, x: jax.Array, *indices: jax.Array, sizes: Sequence[int]
) -> jax.Array:
    """``lax.dynamic_slice(x, indices, sizes)``: one scalar index input per axis."""
    return lax.dynamic_slice(x, indices, sizes)


@register_op("pad_nd")
def pad_nd(
    params: Params, x: jax.Array, *, config: Sequence[tuple[int, int, int]], value: Any
) -> jax.Array:
    """``lax.pad`` with ``(lo, hi, interior)`` per axis and a constant ``value``."""
    return lax.pad(x, jnp.asarray(value, x.dtype), tuple((lo, hi, i) for lo, hi, i in config))


@register_op("mode_pad")
def mode_pad(
    params: Params, x: jax.Array, *, padding: Sequence[tuple[int, int]], mode: str
) -> jax.Array:
    """Pad the last ``len(padding)`` axes by ``(lo, hi)`` with ``mode`` ``"reflect"``
    (torch's reflection pad), ``"edge"`` (replication) or ``"wrap"`` (circular)."""
    if mode not in ("reflect", "edge", "wrap"):
        raise ValueError(f"mode_pad: mode must be reflect, edge or wrap, got {mode!r}")
    lead = ((0, 0),) * (x.ndim - len(padding))
    return jnp.pad(x, lead + tuple((int(lo), int(hi)) for lo, hi in padding), mode=mode)


@register_op("roll")
def roll(params: Params, x: jax.Array, *, shifts: Sequence[int], axes: Sequence[int]) -> jax.Array:
    """``torch.roll``: rotate ``x`` by ``shifts[k]`` along ``axes[k]``."""
    return jnp.roll(x, tuple(shifts), tuple(axes))


@register_op("flip")
def flip(params: Params, x: jax.Array, *, axes: Sequence[int]) -> jax.Array:
    """Reverse ``x`` along ``axes``."""
    return jnp.flip(x, tuple(axes))


@register_op("tile")
def tile(params: Params, x: jax.Array, *, reps: Sequence[int]) -> jax.Array:
    """``torch.Tensor.repeat``: ``x`` tiled ``reps`` times per axis (leading axes added)."""
    return jnp.tile(x, tuple(reps))


@register_op("diagonal")
def diagonal(
    params: Params, x: jax.Array, *, offset: int = 0, axis1: int = 0, axis2: int = 1
) -> jax.Array:
    """``torch.diagonal``: the diagonal of axes ``axis1``/``axis2``, as the last axis."""
    out: jax.Array = jnp.diagonal(x, offset, axis1, axis2)
    return out


@register_op("full_like")
def full_like(params: Params, x: jax.Array, *, value: Any, dtype: str | None = None) -> jax.Array:
    """A tensor of ``x``'s shape filled with ``value`` (``dtype``: a numpy name; x's if None)."""
    dt = jax.dtypes.canonicalize_dtype(dtype) if dtype else x.dtype
    return jnp.full(x.shape, value, dt)


@register_op("arange")
def arange(
    params: Params,
    like: jax.Array | None = None,
    *,
    start: int = 0,
    step: int = 1,
    length: int | None = None,
    axis: int = 0,
    dtype: str = "int32",
) -> jax.Array:
    """``start + step * [0, 1, ...]`` of ``length`` entries, or of ``like.shape[axis]`` entries
    when ``like`` is given (an index vector as long as the dynamic batch)."""
    n = like.shape[axis] if like is not None else length
    return start + step * jnp.arange(n, dtype=jax.dtypes.canonicalize_dtype(dtype))
