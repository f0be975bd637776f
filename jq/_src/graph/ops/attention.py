"""Products of activations: ``scaled_dot_product_attention``, ``masked_softmax``, ``einsum``,
``dot_general`` (attention's matmuls, no kernel)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._broadcast import same_rank
from .registry import Params, register_op


@register_op("scaled_dot_product_attention")
def scaled_dot_product_attention(
    params: Params,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
) -> jax.Array:
    """``softmax(q @ k^T * scale + mask) @ v`` (torch's F.scaled_dot_product_attention).

    Args:
      q: (..., L, E); k: (..., S, E); v: (..., S, Ev); batch dims broadcast.
      mask: optional, broadcastable to (..., L, S): boolean (True = attend) or additive.
      is_causal: mask out keys after the query position.
      scale: default ``1 / sqrt(E)``.

    Returns:
      (..., L, Ev).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k = same_rank(q, k)
    s = jnp.einsum("...le,...se->...ls", q, k) * scale
    if is_causal:
        lq, ls = s.shape[-2:]
        s = jnp.where(jnp.tril(jnp.ones((lq, ls), bool)), s, -jnp.inf)
    if mask is not None:
        s, mask = same_rank(s, mask)
        s = jnp.where(mask, s, -jnp.inf) if mask.dtype == jnp.bool_ else s + mask
    p, v = same_rank(jax.nn.softmax(s, axis=-1), v)
    return jnp.einsum("...ls,...se->...le", p, v)


@register_op("masked_softmax")
def masked_softmax(
    params: Params, x: jax.Array, mask: jax.Array, *, axis: int, fill: Any
) -> jax.Array:
    """``softmax(where(mask, x, fill), axis)``; ``mask`` broadcasts to ``x`` (same rank)."""
    x, mask = jnp.broadcast_arrays(x, mask)
    return jax.nn.softmax(jnp.where(mask, x, jnp.asarray(fill, x.dtype)), axis=axis)


@register_op("einsum")
def einsum(params: Params, *operands: jax.Array, equation: str) -> jax.Array:
    """``torch.einsum(equation, *operands)`` of activations (no kernel)."""
    return jnp.einsum(equation, *operands)


@register_op("dot_general")
def dot_general(params: Params, a: jax.Array, b: jax.Array, *, dimension_numbers: Any) -> jax.Array:
    """``lax.dot_general(a, b, dimension_numbers)`` of two activations (no kernel)."""
    return lax.dot_general(a, b, dimension_numbers)
