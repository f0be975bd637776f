"""Normalization ops: ``batch_norm`` (inference form), ``layer_norm``, ``group_norm``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ._broadcast import per_channel
from .registry import Params, register_op


@register_op("batch_norm")
def batch_norm(params: Params, x: jax.Array, *, eps: float) -> jax.Array:
    """Inference batch norm over axis 1: ``(x - mean) / sqrt(var + eps) * weight + bias``."""
    scale = lax.rsqrt(params["running_var"] + eps)
    if "weight" in params:
        scale = scale * params["weight"]
    shift = -params["running_mean"] * scale
    if "bias" in params:
        shift = shift + params["bias"]
    return x * per_channel(scale, x.ndim) + per_channel(shift, x.ndim)


def _affine(params: Params, y: jax.Array, axes_shape: tuple[int, ...]) -> jax.Array:
    if "weight" in params:
        y = y * jnp.reshape(params["weight"], axes_shape)
    if "bias" in params:
        y = y + jnp.reshape(params["bias"], axes_shape)
    return y


@register_op("layer_norm")
def layer_norm(
    params: Params, x: jax.Array, *, normalized_shape: Sequence[int], eps: float
) -> jax.Array:
    """Normalize over the last ``len(normalized_shape)`` axes (biased variance), then affine."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    xc = x - mean
    var = jnp.mean(xc * xc, axis=axes, keepdims=True)
    y = xc * lax.rsqrt(var + eps)
    return _affine(params, y, (1,) * (x.ndim - len(axes)) + tuple(normalized_shape))


@register_op("group_norm")
def group_norm(params: Params, x: jax.Array, *, num_groups: int, eps: float) -> jax.Array:
    """Group norm of x (N, C, *spatial): statistics per (sample, group of C/num_groups)."""
    n, c = x.shape[:2]
    g = jnp.reshape(x, (n, num_groups, -1))
    mean = jnp.mean(g, axis=2, keepdims=True)
    gc = g - mean
    var = jnp.mean(gc * gc, axis=2, keepdims=True)
    y = jnp.reshape(gc * lax.rsqrt(var + eps), x.shape)
    return _affine(params, y, (1, c) + (1,) * (x.ndim - 2))
