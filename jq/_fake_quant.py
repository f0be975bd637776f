"""Quantize-dequantize a tensor with chosen parameters (what a deployed model computes)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._quantizers import affine_fake_quant, affine_grid
from ._types import QParams
from ._validate import check_n_bits


@functools.partial(jax.jit, static_argnames=("n_bits",))
def _fake_quant(x, threshold, range_min, range_max, signed, *, n_bits):
    if threshold is not None:
        grid = affine_grid(n_bits, threshold=threshold.astype(x.dtype), signed=signed)
    else:  # the inference form (§1.4): the range is first widened to include 0
        grid = affine_grid(
            n_bits, range_min=range_min.astype(x.dtype), range_max=range_max.astype(x.dtype)
        )
    return affine_fake_quant(x, *grid)


def fake_quant(x, qparams: QParams, *, n_bits: int = 8) -> jax.Array:
    """Quantize then dequantize ``x`` on the grid of ``qparams``.

    Args:
      x: float array, any shape.
      qparams: a ``QParams`` (per-channel parameters broadcast against ``x``).
      n_bits: bit width the parameters were chosen for.

    Returns:
      ``x``'s shape and dtype, every value on the quantization grid: ``k * t / 2^(n-1)``,
      ``k`` in ``[-2^(n-1), 2^(n-1) - 1]`` (signed threshold), ``k * t / 2^n``, ``k`` in
      ``[0, 2^n - 1]`` (unsigned), or the zero-aligned ``2^n``-level grid of the range.
      Rounding as a deployed quantizer (``torch.fake_quantize_*``): ``round(x * (1/step))``,
      half to even.

    Raises:
      ValueError: ``qparams`` has neither a threshold nor a range, or a non-positive
        threshold / zero-width range (checked when the values are concrete).

    Example:
      >>> xq = jq.fake_quant(x, jq.weights_qparams(x), n_bits=8)
    """
    fn = "fake_quant"
    n_bits = check_n_bits(n_bits, fn)
    if not isinstance(qparams, QParams):
        raise TypeError(f"{fn}: qparams must be a jq.QParams, got {type(qparams).__name__}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn}: x must have a floating dtype, got {x.dtype}")
    t, a, b = qparams.threshold, qparams.range_min, qparams.range_max
    if t is None and (a is None or b is None):
        raise ValueError(f"{fn}: qparams has neither threshold nor range_min/range_max")
    concrete = not any(isinstance(v, jax.core.Tracer) for v in (t, a, b) if v is not None)
    if concrete and t is not None and bool(jnp.any(jnp.asarray(t) <= 0)):
        raise ValueError(f"{fn}: thresholds must be > 0")
    if concrete and t is None and bool(jnp.any(jnp.maximum(b, 0) - jnp.minimum(a, 0) <= 0)):
        raise ValueError(f"{fn}: the range [range_min, range_max] has zero width")
    t = None if t is None else jnp.asarray(t)
    a = None if a is None else jnp.asarray(a)
    b = None if b is None else jnp.asarray(b)
    return _fake_quant(x, t, a, b, jnp.asarray(qparams.signed), n_bits=n_bits)
