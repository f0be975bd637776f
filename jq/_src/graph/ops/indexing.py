"""Ops that select values by position or condition: ``where``, ``select_n``, ``index``,
``gather``, ``scatter``, ``index_put``, ``masked_scatter``.

They exist for what current transformer and vision models compute on their activations:
padding masks read per sample (``index``, ``where``) and torch's gathers and scatters. Masks
that depend on no input are folded to constants at conversion and need none of them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._broadcast import to_rank
from .registry import Params, register_op


@register_op("where")
def where(
    params: Params, cond: jax.Array, *xs: jax.Array, x_scalar: Any = None, y_scalar: Any = None
) -> jax.Array:
    """``torch.where(cond, x, y)``, broadcast: ``x`` / ``y`` are inputs after ``cond`` in that
    order, or Python scalars (``x_scalar`` / ``y_scalar``) when not given as inputs."""
    rest = list(xs)
    x = rest.pop(0) if x_scalar is None else x_scalar
    y = rest.pop(0) if y_scalar is None else y_scalar
    dtype = jnp.result_type(x, y)
    c, a, b = to_rank([jnp.asarray(v) for v in (cond, x, y)])
    return jnp.where(c, a.astype(dtype), b.astype(dtype))


@register_op("select_n")
def select_n(params: Params, which: jax.Array, *cases: jax.Array) -> jax.Array:
    """``cases[which]`` elementwise (``which`` boolean or integer, the cases' shape)."""
    return lax.select_n(which, *cases)


def _key(
    x: jax.Array, indices: tuple[jax.Array, ...], positions: tuple[bool, ...]
) -> tuple[Any, ...]:
    """The indexing key of ``index`` / ``index_put``: the next index (broadcast together,
    modulo the axis size) on each axis ``positions`` marks, a full slice elsewhere."""
    it = iter(to_rank(indices) if indices else ())
    return tuple(
        jnp.remainder(next(it), x.shape[axis]) if taken else slice(None)
        for axis, taken in enumerate(positions)
    )


@register_op("index")
def index(
    params: Params, x: jax.Array, *indices: jax.Array, positions: tuple[bool, ...]
) -> jax.Array:
    """Advanced indexing ``x[i0, :, i2, ...]`` (NumPy/torch rules): ``positions[k]`` says
    whether axis ``k`` takes the next integer index input (broadcast together) or a full slice.
    Indices are taken modulo the axis size (torch's negative indices)."""
    return x[_key(x, indices, positions)]


def _grid(index: jax.Array, axis: int) -> tuple[jax.Array, ...]:
    """Full advanced-indexing key: ``index`` on ``axis``, iotas (of index's shape) elsewhere."""
    return tuple(
        index if d == axis else jax.lax.broadcasted_iota(jnp.int32, index.shape, d)
        for d in range(index.ndim)
    )


@register_op("gather")
def gather(params: Params, x: jax.Array, index: jax.Array, *, axis: int) -> jax.Array:
    """``torch.gather``: ``out[i][j] = x[index[i][j]][j]`` for ``axis=0`` (any rank); index
    may be smaller than ``x`` on the other axes."""
    return x[_grid(index, axis)]


_SCATTER_IDENTITY = {"sum": 0, "mean": 0, "prod": 1}


@register_op("scatter")
def scatter(
    params: Params,
    x: jax.Array,
    index: jax.Array,
    src: jax.Array | None = None,
    *,
    axis: int,
    reduce: str | None = None,
    include_self: bool = True,
    value: Any = None,
) -> jax.Array:
    """``torch.scatter`` / ``scatter_add`` / ``scatter_reduce`` along ``axis``: writes
    ``src[i][j]`` (or the scalar ``value``) to ``x[index[i][j]][j]`` for ``axis=0``.

    ``reduce``: None (last write wins; torch leaves duplicate indices unspecified), ``"sum"``,
    ``"prod"``, ``"mean"``, ``"amax"`` or ``"amin"``; ``include_self=False`` leaves ``x``'s
    values out of the reduction at the written positions.
    """
    key = _grid(index, axis)
    if src is None:
        upd = jnp.full(index.shape, value, x.dtype)
    else:
        upd = src[tuple(slice(0, n) for n in index.shape)].astype(x.dtype)
    if reduce is None:
        return x.at[key].set(upd)
    base = x
    if not include_self:
        ident: Any = _SCATTER_IDENTITY.get(reduce)
        if ident is None:  # amax / amin: the first write replaces x
            finfo = jnp.finfo(x.dtype)  # type: ignore[no-untyped-call]
            ident = finfo.min if reduce == "amax" else finfo.max
        base = x.at[key].set(jnp.asarray(ident, x.dtype))
    if reduce in ("sum", "mean"):
        out = base.at[key].add(upd)
        if reduce == "mean":
            count = jnp.zeros(x.shape, x.dtype).at[key].add(1) + (1 if include_self else 0)
            out = jnp.where(count > 0, out / jnp.maximum(count, 1), x)
        return out
    if reduce == "prod":
        return base.at[key].multiply(upd)
    if reduce == "amax":
        return base.at[key].max(upd)
    if reduce == "amin":
        return base.at[key].min(upd)
    raise ValueError(f"scatter: reduce must be None, sum, prod, mean, amax or amin, got {reduce!r}")


@register_op("index_put")
def index_put(
    params: Params,
    x: jax.Array,
    values: jax.Array,
    *indices: jax.Array,
    positions: tuple[bool, ...],
    accumulate: bool = False,
) -> jax.Array:
    """``x[i0, :, i2, ...] = values`` (``accumulate``: ``+=``, duplicates summed): ``positions``
    as for ``index``; ``values`` broadcasts to the indexed shape."""
    key = _key(x, indices, positions)
    shape = jax.eval_shape(lambda a: a[key], x).shape
    v = jnp.broadcast_to(values.astype(x.dtype), shape)
    return x.at[key].add(v) if accumulate else x.at[key].set(v)


@register_op("masked_scatter")
def masked_scatter(params: Params, x: jax.Array, mask: jax.Array, src: jax.Array) -> jax.Array:
    """``torch.masked_scatter``: where ``mask`` (broadcast to x) is True, the next element of
    ``src`` in row-major order; elsewhere ``x``."""
    m = jnp.broadcast_to(jnp.reshape(mask, (1,) * (x.ndim - mask.ndim) + mask.shape), x.shape)
    pos = jnp.cumsum(m.reshape(-1).astype(jnp.int32)) - 1
    taken = jnp.take(src.reshape(-1), jnp.clip(pos, 0, src.size - 1)).reshape(x.shape)
    return jnp.where(m, taken.astype(x.dtype), x)
