"""Activation ops: ``relu``, ``relu6``, ``hardtanh``, ``leaky_relu``, ``gelu``, ``silu``,
``hardswish``, ``hardsigmoid``, ``sigmoid``, ``tanh``, ``softmax``, ``log_softmax``, ``elu``,
``softplus``, ``mish``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .registry import Params, register_op


@register_op("relu")
def relu(params: Params, x: jax.Array) -> jax.Array:
    """``max(x, 0)``."""
    return jnp.maximum(x, 0)


@register_op("hardtanh")
def hardtanh(params: Params, x: jax.Array, *, min_val: float, max_val: float) -> jax.Array:
    """``clip(x, min_val, max_val)``."""
    return jnp.clip(x, min_val, max_val)


@register_op("relu6")
def relu6(params: Params, x: jax.Array) -> jax.Array:
    """``clip(x, 0, 6)``: ``hardtanh`` with fixed bounds, kept as its own name because PTQ
    target platforms treat ReLU6 as a known activation."""
    return hardtanh(params, x, min_val=0.0, max_val=6.0)


@register_op("leaky_relu")
def leaky_relu(params: Params, x: jax.Array, *, negative_slope: float) -> jax.Array:
    """``x if x >= 0 else negative_slope * x``."""
    return jnp.where(x >= 0, x, negative_slope * x)


@register_op("gelu")
def gelu(params: Params, x: jax.Array, *, approximate: str = "none") -> jax.Array:
    """GELU, exact (erf, ``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@register_op("silu")
def silu(params: Params, x: jax.Array) -> jax.Array:
    """``x * sigmoid(x)``."""
    return jax.nn.silu(x)


@register_op("hardsigmoid")
def hardsigmoid(params: Params, x: jax.Array) -> jax.Array:
    """``relu6(x + 3) / 6``."""
    return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


@register_op("hardswish")
def hardswish(params: Params, x: jax.Array) -> jax.Array:
    """``x * relu6(x + 3) / 6``."""
    return x * hardsigmoid(params, x)


@register_op("sigmoid")
def sigmoid(params: Params, x: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


@register_op("tanh")
def tanh(params: Params, x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


@register_op("softmax")
def softmax(params: Params, x: jax.Array, *, axis: int) -> jax.Array:
    """Softmax along ``axis``."""
    return jax.nn.softmax(x, axis=axis)


@register_op("elu")
def elu(
    params: Params,
    x: jax.Array,
    *,
    alpha: float = 1.0,
    scale: float = 1.0,
    input_scale: float = 1.0,
) -> jax.Array:
    """``scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1))``: torch's ELU, and SELU
    and CELU with their constants."""
    neg = alpha * jnp.expm1(input_scale * jnp.minimum(x, 0))
    return scale * jnp.where(x > 0, x, neg)


@register_op("softplus")
def softplus(
    params: Params, x: jax.Array, *, beta: float = 1.0, threshold: float = 20.0
) -> jax.Array:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold`` (torch)."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)


@register_op("mish")
def mish(params: Params, x: jax.Array) -> jax.Array:
    """``x * tanh(softplus(x))``."""
    return x * jnp.tanh(softplus(params, x))


@register_op("log_softmax")
def log_softmax(params: Params, x: jax.Array, *, axis: int) -> jax.Array:
    """``log(softmax(x))`` along ``axis``, computed stably."""
    return jax.nn.log_softmax(x, axis=axis)
