"""Quantize-dequantize a tensor with chosen parameters (what a deployed model computes)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..runtime.jit import jit
from .buckets import bucket
from .quantizers import affine_fake_quant, affine_grid
from .types import QParams
from .validate import check_n_bits


@functools.partial(jit, static_argnames=("n_bits",))
def _fake_quant(x, threshold, range_min, range_max, signed, *, n_bits):
    if threshold is not None:
        grid = affine_grid(n_bits, threshold=threshold.astype(x.dtype), signed=signed)
    else:  # the deployed uniform quantizer: the range is first widened to include 0
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

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> x = np.array([0.1, -0.5, 0.26, 1.0], np.float32)
      >>> qp = jq.QParams(threshold=np.float32(1.0), signed=True)
      >>> np.asarray(jq.fake_quant(x, qp, n_bits=3)).tolist()  # step 1/4, levels -4 .. 3
      [0.0, -0.5, 0.25, 0.75]
      >>> uniform = jq.QParams(range_min=np.float32(0.0), range_max=np.float32(1.5))
      >>> np.asarray(jq.fake_quant(x, uniform, n_bits=2)).tolist()  # step 1/2, levels 0 .. 3
      [0.0, 0.0, 0.5, 1.0]
    """
    fn = "fake_quant"
    n_bits = check_n_bits(n_bits, fn)
    if not isinstance(qparams, QParams):
        raise TypeError(f"{fn}: qparams must be a jq.QParams, got {type(qparams).__name__}")
    if not isinstance(x, jax.core.Tracer):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn}: x must have a floating dtype, got {x.dtype}")
    t, a, b = qparams.threshold, qparams.range_min, qparams.range_max
    if t is None and (a is None or b is None):
        raise ValueError(f"{fn}: qparams has neither threshold nor range_min/range_max")
    values = [v for v in (t, a, b, qparams.signed) if v is not None]
    if any(isinstance(v, jax.core.Tracer) for v in [x, *values]):
        return _fake_quant(x, *_as_arrays(t, a, b, qparams.signed), n_bits=n_bits)
    if t is not None and np.any(np.asarray(t) <= 0):
        raise ValueError(f"{fn}: thresholds must be > 0")
    if t is None:
        assert a is not None and b is not None  # checked above (narrows the types)
        if np.any(np.maximum(b, 0) - np.minimum(a, 0) <= 0):
            raise ValueError(f"{fn}: the range [range_min, range_max] has zero width")
    return _fake_quant_bucketed(x, t, a, b, qparams.signed, n_bits)


def _as_arrays(*values):
    return tuple(None if v is None else jax.device_put(v) for v in values)


def _channel_axis(x_shape: tuple[int, ...], params: list) -> int | None:
    """The one axis of ``x`` the parameters vary along (``-1``: none, per tensor), or ``None``
    when they broadcast some other way (then no bucketing)."""
    shapes = [np.shape(v) for v in params]
    if any(len(s) > len(x_shape) for s in shapes):
        return None
    try:
        shape = np.broadcast_shapes(*shapes, (1,) * len(x_shape))
    except ValueError:
        return None
    big = [i for i, s in enumerate(shape) if s != 1]
    if not big:
        return -1
    if len(big) == 1 and shape[big[0]] == x_shape[big[0]]:
        return big[0]
    return None


def _fake_quant_bucketed(x, t, a, b, signed, n_bits: int) -> jax.Array:
    """:func:`fake_quant` of concrete values on a ``(C, M)`` layout padded to size buckets, so
    that one compiled program serves every shape of a bucket (elementwise: padding is exact)."""
    shape = tuple(x.shape)
    params = [v for v in (t, a, b) if v is not None] + [signed]
    axis = _channel_axis(shape, params)
    if axis is None or not shape:
        return _fake_quant(jax.device_put(x), *_as_arrays(t, a, b, signed), n_bits=n_bits)
    xn = np.asarray(x)
    moved = np.moveaxis(xn, axis, 0) if axis >= 0 else xn.reshape(1, -1)
    c = moved.shape[0]
    x2d = moved.reshape(c, -1)
    cb, mb = (bucket(c) if axis >= 0 else 1), bucket(x2d.shape[1])
    xp = np.zeros((cb, mb), xn.dtype)
    xp[:c, : x2d.shape[1]] = x2d

    def per_row(v, fill):
        if v is None:
            return None
        row = np.broadcast_to(np.asarray(v), np.broadcast_shapes(np.shape(v), (1,) * len(shape)))
        row = np.moveaxis(row, axis, 0).reshape(-1) if axis >= 0 else row.reshape(1)
        row = np.broadcast_to(row, (c,))
        out = np.full((cb, 1), fill, row.dtype)
        out[:c, 0] = row
        return jax.device_put(out)

    out = _fake_quant(
        jax.device_put(xp),
        per_row(t, 1.0),
        per_row(a, -1.0),
        per_row(b, 1.0),
        per_row(signed, True),
        n_bits=n_bits,
    )
    y = np.asarray(out)[:c, : x2d.shape[1]].reshape(moved.shape)
    y = np.moveaxis(y, 0, axis) if axis >= 0 else y.reshape(shape)
    return jax.device_put(y)
