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


def fake_quant(
    x, qparams: QParams, *, n_bits: int = 8, group_size: int | None = None, channel_axis: int = 0
) -> jax.Array:
    """Quantize then dequantize ``x`` on the grid of ``qparams``.

    Args:
      x: float array, any shape.
      qparams: a ``QParams`` (per-channel parameters broadcast against ``x``; with
        ``group_size``, ``(C, G)`` per-group parameters as :func:`jq.weights_qparams` returns).
      n_bits: bit width the parameters were chosen for.
      group_size: jq only: ``qparams`` holds one parameter per group of ``group_size``
        consecutive inputs of each channel: ``x``'s axes other than ``channel_axis``,
        flattened in order after moving it to the front (``(out, in)``: along ``in``; torch
        conv ``(out, in, kh, kw)``: along ``in x kh x kw``).
      channel_axis: the channel axis of ``x`` (``group_size`` only).

    Returns:
      ``x``'s shape and dtype, every value on the quantization grid: ``k * t / 2^(n-1)``,
      ``k`` in ``[-2^(n-1), 2^(n-1) - 1]`` (signed threshold), ``k * t / 2^n``, ``k`` in
      ``[0, 2^n - 1]`` (unsigned), or the zero-aligned ``2^n``-level grid of the range.
      Rounding as a deployed quantizer (``torch.fake_quantize_*``): ``round(x * (1/step))``,
      half to even.

    Raises:
      ValueError: ``qparams`` has neither a threshold nor a range, or a non-positive
        threshold / zero-width range (checked when the values are concrete); with
        ``group_size``, parameters not shaped ``(C, inputs / group_size)``.

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
    if group_size is not None:
        rows, params = group_rows(x, [t, a, b, qparams.signed], group_size, channel_axis, fn)
        y = fake_quant(rows, QParams(*params), n_bits=n_bits)
        return ungroup_rows(y, tuple(x.shape), channel_axis)
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


def _moved_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)


def group_rows(x, params: list, group_size: int, channel_axis: int, fn: str):
    """``x`` as ``(C * G, group_size)`` rows (each a (channel, group)) and the per-group
    parameters ``(C, G)`` as ``(C * G, 1)`` columns (``None`` and scalars kept).

    Raises:
      TypeError / ValueError: a bad ``group_size`` / ``channel_axis``, or parameters not
        shaped ``(C, G)``.
    """
    import numbers

    from .validate import check_axis

    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral):
        raise TypeError(f"{fn}: group_size must be an int or None, got {type(group_size).__name__}")
    shape = tuple(x.shape)
    axis = check_axis(channel_axis, max(len(shape), 1), "channel_axis", fn)
    n = int(np.prod(shape)) // shape[axis] if len(shape) >= 2 else 0
    if group_size < 1 or len(shape) < 2 or n % group_size:
        raise ValueError(
            f"{fn}: group_size={group_size} must be a positive divisor of the input size "
            f"{n} of x (shape {shape}, channel_axis={channel_axis})"
        )
    c, g = shape[axis], n // group_size
    xp = jnp if isinstance(x, jax.Array | jax.core.Tracer) else np
    rows = xp.moveaxis(x, axis, 0).reshape(c * g, group_size)

    def column(v):
        if v is None or np.ndim(v) == 0:
            return v
        if tuple(np.shape(v)) != (c, g):
            raise ValueError(
                f"{fn}: per-group parameters must be shaped (channels, groups) = {(c, g)} for "
                f"x of shape {shape} with group_size={group_size}, got {tuple(np.shape(v))}"
            )
        vp = jnp if isinstance(v, jax.Array | jax.core.Tracer) else np
        return vp.reshape(v, (c * g, 1))

    return rows, [column(v) for v in params]


def ungroup_rows(y, shape: tuple[int, ...], channel_axis: int):
    """The inverse of :func:`group_rows` on ``x``: ``(C * G, g)`` rows back to ``shape``."""
    axis = channel_axis % len(shape)
    xp = jnp if isinstance(y, jax.Array | jax.core.Tracer) else np
    return xp.moveaxis(y.reshape(_moved_shape(shape, axis)), 0, axis)


def expand_groups(v, shape: tuple[int, ...], channel_axis: int, group_size: int) -> np.ndarray:
    """Per-group parameters ``(C, G)`` repeated to ``shape`` (each value over its group), so
    that they broadcast elementwise against the tensor (host arrays)."""
    axis = channel_axis % len(shape)
    moved = _moved_shape(shape, axis)
    full = np.repeat(np.asarray(v).reshape(moved[0], -1), group_size, axis=1)
    return np.moveaxis(full.reshape(moved), 0, axis)
