"""Reductions and scans: ``mean``, ``reduce_sum`` / ``_max`` / ``_min`` / ``_prod``,
``argmax``, ``argmin``, ``cumsum``, ``cumprod``, ``sort``, ``topk``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .registry import Params, register_op


@register_op("mean")
def mean(params: Params, x: jax.Array, *, axis: Sequence[int], keepdims: bool) -> jax.Array:
    """Mean over ``axis`` (tuple of ints)."""
    return jnp.mean(x, axis=tuple(axis), keepdims=keepdims)


def _reduce(name: str, fn: Callable[..., jax.Array]) -> None:
    def op(params: Params, x: jax.Array, *, axes: Sequence[int]) -> jax.Array:
        del params
        return fn(x, axis=tuple(axes))

    op.__doc__ = f"``{name}`` over ``axes`` (a tuple; the axes are removed)."
    register_op(name)(op)


_REDUCE_FNS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("reduce_sum", jnp.sum),
    ("reduce_max", jnp.max),
    ("reduce_min", jnp.min),
    ("reduce_prod", jnp.prod),
)
for _name, _fn in _REDUCE_FNS:
    _reduce(_name, _fn)
del _name, _fn


@register_op("argmax")
def argmax(params: Params, x: jax.Array, *, axis: int, index_dtype: str) -> jax.Array:
    """Index of the largest entry along ``axis`` (removed), as ``index_dtype``."""
    return lax.argmax(x, axis, jax.dtypes.canonicalize_dtype(index_dtype))


@register_op("argmin")
def argmin(params: Params, x: jax.Array, *, axis: int, index_dtype: str) -> jax.Array:
    """Index of the smallest entry along ``axis`` (removed), as ``index_dtype``."""
    return lax.argmin(x, axis, jax.dtypes.canonicalize_dtype(index_dtype))


@register_op("cumsum")
def cumsum(params: Params, x: jax.Array, *, axis: int, dtype: str | None = None) -> jax.Array:
    """Running sum along ``axis`` (``dtype``: of the result; booleans sum as integers)."""
    out_dtype = jax.dtypes.canonicalize_dtype(dtype) if dtype else None
    if out_dtype is None and x.dtype == jnp.bool_:
        out_dtype = jax.dtypes.canonicalize_dtype("int64")
    return jnp.cumsum(x, axis=axis, dtype=out_dtype)


@register_op("cumprod")
def cumprod(params: Params, x: jax.Array, *, axis: int, dtype: str | None = None) -> jax.Array:
    """Running product along ``axis`` (``dtype``: of the result)."""
    return jnp.cumprod(x, axis=axis, dtype=jax.dtypes.canonicalize_dtype(dtype) if dtype else None)


@register_op("sort")
def sort(
    params: Params, x: jax.Array, *, axis: int, descending: bool = False, indices: bool = False
) -> jax.Array:
    """``torch.sort`` along ``axis``: the sorted values, or (``indices=True``) the int32
    positions they came from (a stable sort: ties keep their order)."""
    if indices:
        return jnp.argsort(x, axis=axis, stable=True, descending=descending).astype(jnp.int32)
    return jnp.sort(x, axis=axis, descending=descending)


@register_op("topk")
def topk(
    params: Params, x: jax.Array, *, k: int, axis: int, largest: bool = True, indices: bool = False
) -> jax.Array:
    """``torch.topk``: the ``k`` largest (or smallest) entries along ``axis``, sorted, or
    (``indices=True``) their int32 positions."""
    moved = jnp.moveaxis(x, axis, -1)
    vals, idx = jax.lax.top_k(moved if largest else -moved, k)
    out = idx.astype(jnp.int32) if indices else (vals if largest else -vals)
    return jnp.moveaxis(out, -1, axis)
