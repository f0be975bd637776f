"""One mapping from jq's quantizer grids to ONNX's ``(scale, zero_point, integer type)``.

jq's quantizers are ``clip(round(x / scale), q_min, q_max) * scale`` with the zero point
folded into the level bounds (:func:`jq._src.select.quantizers.affine_grid`, the function the
PTQ build pass quantizes with, so the exported integers are the ones jq computed):

- signed threshold ``t``: ``scale = t / 2^(n-1)``, levels ``[-2^(n-1), 2^(n-1) - 1]``, zero 0;
- unsigned threshold: ``scale = t / 2^n``, levels ``[0, 2^n - 1]``, zero 0;
- uniform range ``[min, max]`` (widened to hold 0 and zero-aligned):
  ``scale = (max - min) / (2^n - 1)``, ``zero_point = round(-min / scale)`` (half to even, as
  torch and ONNX round), levels ``[0, 2^n - 1]`` after the shift.

ONNX stores ``q = saturate(round(x / scale) + zero_point)`` in an integer type: levels
``[q_min, q_max]`` become ``[q_min + zp, q_max + zp]`` with ``zp = -q_min`` for unsigned
storage, ``0`` for signed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..select.quantizers import affine_grid


class OnnxGrid(NamedTuple):
    """An integer grid in ONNX's terms.

    Attributes:
      scale: float32, shape ``()`` (per tensor) or ``(C,)`` (per channel).
      zero_point: the storage type's integers, ``scale``'s shape.
      dtype: ``"int8"``, ``"uint8"``, ``"int16"`` or ``"uint16"``.
      n_bits: bits of the grid (``2^n_bits`` levels). Storage is 8 or 16 bits wide, and
        ``QuantizeLinear`` saturates to the storage type: a narrower grid needs a clip first.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str
    n_bits: int


def grid_from_levels(scale, q_min, q_max) -> OnnxGrid:
    """The ONNX grid of a jq grid ``(scale, q_min, q_max)`` (a ``fake_quant`` node's params).

    Args:
      scale: float, scalar or per channel (any shape; flattened).
      q_min, q_max: integer-valued level bounds, ``scale``'s shape (zero point folded in).

    Returns:
      :class:`OnnxGrid`: signed storage with zero point 0 when ``q_min = -2^(n-1)`` (a signed
      threshold grid), else unsigned storage with ``zero_point = -q_min``.

    Raises:
      ValueError: more than 16 bits, or bounds that are not integers.

    Example:
      >>> g = grid_from_levels(np.float32(0.5), -128.0, 127.0)
      >>> g.dtype, int(g.zero_point), g.n_bits
      ('int8', 0, 8)
      >>> g = grid_from_levels(np.float32(0.1), -3.0, 252.0)
      >>> g.dtype, int(g.zero_point)
      ('uint8', 3)
    """
    scale = np.asarray(scale, np.float32).reshape(-1 if np.ndim(scale) else ())
    lo = np.asarray(q_min, np.float64).reshape(scale.shape)
    hi = np.asarray(q_max, np.float64).reshape(scale.shape)
    if np.any(lo != np.round(lo)) or np.any(hi != np.round(hi)):
        raise ValueError(f"grid_from_levels: level bounds must be integers, got {lo}, {hi}")
    levels = int(np.max(hi - lo)) + 1
    n_bits = max(1, int(np.ceil(np.log2(levels))))
    if n_bits > 16:
        raise ValueError(f"grid_from_levels: {n_bits}-bit grids have no ONNX integer type")
    width = 8 if n_bits <= 8 else 16
    if np.all(lo == -(2 ** (n_bits - 1))):
        dtype, zp = f"int{width}", np.zeros(scale.shape)
    else:
        dtype, zp = f"uint{width}", -lo
    if np.any(zp < 0) or np.any(hi + zp > 2**width - 1):
        raise ValueError(f"grid_from_levels: levels [{lo}, {hi}] do not fit {dtype}")
    return OnnxGrid(scale, np.asarray(zp).astype(dtype), dtype, n_bits)


def scale_zero_point(
    n_bits: int, *, threshold=None, signed: bool = True, range_min=None, range_max=None
) -> OnnxGrid:
    """The ONNX grid of a threshold (``threshold``, ``signed``) or a uniform range
    (``range_min``, ``range_max``): the formulas of the module docstring.

    Args:
      n_bits: bit width (1..16).
      threshold: float or per-channel array (power-of-two or symmetric quantizers).
      signed: whether the threshold grid is signed.
      range_min, range_max: float or per-channel arrays (uniform quantizers).

    Returns:
      :class:`OnnxGrid` (per-channel arrays flattened to ``(C,)``).

    Example:
      >>> g = scale_zero_point(8, threshold=np.float32(2.0), signed=False)
      >>> float(g.scale), int(g.zero_point), g.dtype
      (0.0078125, 0, 'uint8')
      >>> g = scale_zero_point(8, range_min=np.float32(-1.0), range_max=np.float32(3.0))
      >>> round(float(g.scale) * 255, 5), int(g.zero_point)
      (4.0, 64)
    """
    if threshold is not None:
        t = jnp.asarray(np.asarray(threshold, np.float32))
        grid = affine_grid(n_bits, threshold=t, signed=signed)
    else:
        a = jnp.asarray(np.asarray(range_min, np.float32))
        b = jnp.asarray(np.asarray(range_max, np.float32))
        grid = affine_grid(n_bits, range_min=a, range_max=b)
    return grid_from_levels(*(np.asarray(g) for g in grid))
