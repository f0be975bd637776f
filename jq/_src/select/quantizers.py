"""Quantize-dequantize functions. Pure, elementwise, broadcasting.

The search quantizers are MCT 2.6.1's ``fix_range_to_include_zero``, ``uniform_quantize_tensor``
and ``quantize_tensor`` (``core/common/quantization/quantizers/quantizers_helpers.py``); their
arithmetic follows MCT's order of operations (offset form, masks blended arithmetically) so that
float64 results match it bit for bit. The deployed form (:func:`affine_grid`,
:func:`affine_fake_quant`) is the arithmetic of ``torch.fake_quantize_per_*_affine``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .npsum import div, mul, mul_add

MIN_THRESHOLD = 2.0**-16


def pow2(n: Any) -> Any:
    """``2^n``: a Python int for a static ``n`` (the constant every earlier search used), an exact
    float (``ldexp``) for a traced one, so that one compiled search serves every bit width."""
    if isinstance(n, int):
        return 2**n
    return jnp.ldexp(jnp.ones((), jnp.float32), jnp.asarray(n, jnp.int32))


def zero_align(a: ArrayLike, b: ArrayLike, n_bits: Any) -> tuple[jax.Array, jax.Array]:
    """Shift ``[a, b]`` so that 0 is a grid point of the ``n_bits`` uniform grid.

    MCT 2.6.1's ``fix_range_to_include_zero`` (``quantizers_helpers.py``).

    Args:
      a, b: range bounds, broadcastable against each other.
      n_bits: bit width (static, or traced: see :func:`pow2`).

    Returns:
      ``(a', b')`` with the broadcast shape. As in MCT the three cases are blended with 0/1
      masks, so a zero-width range (``a == b``) gives NaN; callers that must not see NaN guard
      against it first.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    min_positive = a > 0
    max_negative = b < 0
    scale = div(b - a, pow2(n_bits) - 1)
    a_adj = mul(scale, jnp.round(a / scale))
    b_adj = b - a + a_adj
    mid = jnp.logical_and(~min_positive, ~max_negative)
    # MCT blends with 0/1 masks, so a NaN in the middle branch leaks through every branch.
    leak = jnp.isnan(a_adj) | jnp.isnan(b_adj)
    a_adj = jnp.where(leak, jnp.nan, jnp.where(mid, a_adj, jnp.where(max_negative, a, 0.0)))
    b_adj = jnp.where(leak, jnp.nan, jnp.where(mid, b_adj, jnp.where(min_positive, b, 0.0)))
    return a_adj, b_adj


def uniform_quantize(
    x: ArrayLike, a: ArrayLike, b: ArrayLike, n_bits: int, *, exact: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Uniform quantize-dequantize on the zero-aligned grid of ``[a, b]``.

    MCT 2.6.1's ``uniform_quantize_tensor`` (``quantizers_helpers.py``).

    Args:
      x: values, any shape.
      a, b: range, broadcastable against ``x``.
      n_bits: bit width (static).
      exact: MCT's offset form ``delta * round((clip(x) - a') / delta) + a'``, bit for bit
        (compat mode). ``False``: ``clip(round((x - a') / delta))`` with a reciprocal step,
        the form integer quantizers compute: the same grid, ~2x cheaper, and it may differ by
        an ulp at rounding ties (default-mode searches).

    Returns:
      ``(q, level)``: dequantized values (``x``'s shape and dtype) and the integer grid level,
      counted from the bottom of the grid, as float (equal values of ``q`` share a level).
    """
    a, b = zero_align(a, b, n_bits)
    steps = pow2(n_bits) - 1
    if not exact:
        return uniform_quantize_aligned(x, a, b, steps)
    delta = div(b - a, steps)
    # Divide by a full-shape operand: XLA rewrites ``x / broadcast(d)`` as ``x * (1 / d)``, an
    # ulp off NumPy's quotient for about a quarter of the elements, which flips exact rounding
    # ties (the minimum of a symmetric float32 start lies on one).
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(delta))
    delta_full = jax.lax.optimization_barrier(  # type: ignore[no-untyped-call]
        jnp.broadcast_to(delta, shape)
    )
    level = jnp.round((jnp.clip(x, a, b) - a) / delta_full)
    return mul_add(delta, level, a), level


def uniform_quantize_aligned(x: Any, a: Any, b: Any, steps: Any) -> tuple[jax.Array, jax.Array]:
    """:func:`uniform_quantize`'s default-mode arithmetic on an already zero-aligned ``[a, b]``
    with ``steps = 2^n - 1`` levels above the bottom: ``(q, level)``."""
    level = jnp.clip(jnp.round((x - a) * (steps / (b - a))), 0, steps)
    return level * ((b - a) / steps) + a, level


def threshold_range(t: jax.Array, n_bits: int, signed: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The ``[a, b]`` range of the threshold grid: ``[-t*signed, t - t/2^(n-signed)]``
    (the range MCT 2.6.1's ``quantize_tensor`` passes on)."""
    # Python powers of two keep delta exact (a traced ``2.0 ** k`` may go through exp/log).
    delta = jnp.where(signed, t / 2.0 ** (n_bits - 1), t / 2.0**n_bits)
    return jnp.where(signed, -t, jnp.zeros_like(t)), t - delta


def threshold_quantize_levels(
    x: jax.Array, t: jax.Array, n_bits: int, signed: ArrayLike, *, exact: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Threshold (power-of-two / symmetric) quantize-dequantize, ``Q(x; t, n, signed)``.

    MCT 2.6.1's ``quantize_tensor`` (``quantizers_helpers.py``).

    Args:
      x: values, any shape.
      t: threshold, broadcastable against ``x``.
      n_bits: bit width (static).
      signed: bool (may be traced).
      exact: as in :func:`uniform_quantize`; ``False`` computes ``clip(round(x / step)) * step``
        with ``step = t / 2^(n - signed)``.

    Returns:
      ``(q, level)`` as :func:`uniform_quantize`.
    """
    if exact:
        return uniform_quantize(x, *threshold_range(t, n_bits, signed), n_bits)
    signed = jnp.asarray(signed)
    levels = jnp.where(signed, pow2(n_bits - 1), pow2(n_bits)).astype(jnp.result_type(x))
    low = jnp.where(signed, -levels, 0)
    k = jnp.clip(jnp.round(x * (levels / t)), low, levels - 1)
    return k * (t / levels), k - low


def threshold_quantize(
    x: jax.Array, t: jax.Array, n_bits: int, signed: ArrayLike, *, exact: bool = True
) -> jax.Array:
    """The dequantized values of :func:`threshold_quantize_levels` (``x``'s shape)."""
    return threshold_quantize_levels(x, t, n_bits, signed, exact=exact)[0]


def pot(v: jax.Array, min_threshold: ArrayLike = MIN_THRESHOLD) -> jax.Array:
    """Smallest power of two ``>= max(v, min_threshold)``: ``2^ceil(log2(max(v, m)))``.

    Computed exactly with ``frexp`` (``v = f * 2^e``, ``f`` in ``[0.5, 1)``) rather than through a
    floating ``log2``, which may land a hair above an exact power of two.
    """
    v = jnp.maximum(v, min_threshold)
    f, e = jnp.frexp(v)
    e = jnp.where(f == 0.5, e - 1, e)
    return jnp.ldexp(jnp.ones_like(v), e)


def absmax_factor(n_bits: int, uniform: bool) -> float:
    """Expansion factor of the positive maximum: ``2^(n-1)/(2^(n-1)-1)``, 1 for uniform.

    As in MCT 2.6.1's ``get_tensor_max`` (``quantizers_helpers.py``): the threshold grid tops out
    at ``t - t/2^(n-1)``, so the factor keeps the positive maximum representable.
    """
    if uniform:
        return 1.0
    if n_bits == 1:
        return 0.0
    return float(2 ** (n_bits - 1) / (2 ** (n_bits - 1) - 1))


def affine_grid(
    n_bits: int,
    *,
    threshold: jax.Array | None = None,
    signed: ArrayLike = True,
    range_min: jax.Array | None = None,
    range_max: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(scale, q_min, q_max)`` of the deployed quantizer for a threshold or a range.

    The quantizers MCT 2.6.1 exports (``mct_quantizers``' inferable POT / symmetric / uniform
    quantizers, run by ``torch.fake_quantize_per_*_affine``).

    Threshold quantizers: ``scale = t / 2^(n - signed)`` (exact), levels ``[-2^(n-1),
    2^(n-1) - 1]`` signed or ``[0, 2^n - 1]`` unsigned. Ranges: widened to include 0 and
    zero-aligned (:func:`zero_align`), ``scale = (b - a) / (2^n - 1)``, zero point
    ``round(-a / scale)`` folded into the level bounds. Shapes broadcast; float32 in, float32 out.
    """
    if threshold is not None:
        t = jnp.asarray(threshold)
        signed = jnp.asarray(signed)
        levels = jnp.where(signed, 2.0 ** (n_bits - 1), 2.0**n_bits).astype(t.dtype)
        scale = t / levels
        q_min = jnp.broadcast_to(jnp.where(signed, -levels, 0).astype(t.dtype), scale.shape)
        return scale, q_min, jnp.broadcast_to(levels - 1, scale.shape)
    a = jnp.minimum(jnp.asarray(range_min), 0)
    b = jnp.maximum(jnp.asarray(range_max), 0)
    a, b = zero_align(a, b, n_bits)
    a, b = jnp.minimum(a, 0), jnp.maximum(b, 0)
    steps = 2**n_bits - 1
    scale = (b - a) / steps
    zero_point = jnp.round(-a / scale)
    return scale, -zero_point, steps - zero_point


def affine_fake_quant(
    x: jax.Array, scale: jax.Array, q_min: jax.Array, q_max: jax.Array
) -> jax.Array:
    """``clip(round(x * (1 / scale)), q_min, q_max) * scale``: ``torch.fake_quantize_*``'s
    arithmetic (float32 reciprocal of the scale, round half to even), with the zero point folded
    into the level bounds. For threshold grids this equals ``threshold_quantize(exact=False)``.
    """
    return jnp.clip(jnp.round(x * (1 / scale)), q_min, q_max) * scale
