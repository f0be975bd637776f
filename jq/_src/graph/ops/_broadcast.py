"""Explicit broadcasting for ops that run under ``jax_numpy_rank_promotion="raise"``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .registry import OpFn, Params


def per_channel(v: jax.Array, ndim: int) -> jax.Array:
    """``v`` (C,) shaped (1, C, 1, ...) to broadcast over axis 1 of a rank-``ndim`` array."""
    return jnp.reshape(v, (1, -1) + (1,) * (ndim - 2))


def same_rank(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Prepend unit axes so ``a`` and ``b`` broadcast under rank-promotion 'raise'."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim < b.ndim:
        a = jnp.reshape(a, (1,) * (b.ndim - a.ndim) + a.shape)
    elif b.ndim < a.ndim:
        b = jnp.reshape(b, (1,) * (a.ndim - b.ndim) + b.shape)
    return a, b


def to_rank(xs: Sequence[jax.Array]) -> list[jax.Array]:
    """Prepend unit axes so all of ``xs`` have the same rank (rank promotion is 'raise')."""
    rank = max(x.ndim for x in xs)
    return [jnp.reshape(x, (1,) * (rank - x.ndim) + x.shape) for x in xs]


def binary(fn: Callable[[Any, Any], jax.Array], doc: str) -> OpFn:
    """A binary op: ``fn`` of two broadcast tensors, or of a tensor and the ``scalar`` attr
    (``reverse=True`` puts the scalar on the left)."""

    def op(
        params: Params,
        x: jax.Array,
        y: jax.Array | None = None,
        *,
        scalar: Any = None,
        reverse: bool = False,
    ) -> jax.Array:
        if y is None:
            return fn(scalar, x) if reverse else fn(x, scalar)
        return fn(*same_rank(x, y))

    op.__doc__ = doc
    return op
