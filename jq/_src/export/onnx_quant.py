"""Quantizers and kernels in ONNX: ``fake_quant`` nodes as Q/DQ pairs, kernels as float
initializers on their grid or (INT8) integer initializers read by a per-channel
DequantizeLinear, biases float or int32.

INT8's biases are int32 with scale ``input scale * weight scale`` (zero point 0) where the
layer reads a quantized value: onnxruntime's QDQ Conv/Gemm selectors fuse a node unit into
QLinearConv/QGemm only with an int32 bias (a float bias leaves the float kernel in place).
The rounding of the bias to that grid moves it by at most half a step (``s_x * s_w / 2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..graph.graph import Node
from ..report.quant_info import LayerInfo
from .scales import OnnxGrid, grid_from_levels, scale_zero_point

INT_TOLERANCE = 1e-3  # |w / scale - round(w / scale)|: kernels must sit on their grid


def kernel_grid(layer: LayerInfo, rank: int) -> tuple[OnnxGrid, int | None]:
    """The grid of a quantized kernel from its :class:`LayerInfo` and the axis of its scales
    (``None`` per tensor)."""
    axis = layer.channel_axis
    if layer.method == "uniform":
        grid = scale_zero_point(layer.n_bits, range_min=layer.range_min, range_max=layer.range_max)
    else:
        grid = scale_zero_point(layer.n_bits, threshold=layer.threshold, signed=True)
    if grid.scale.size == 1:
        return grid._replace(
            scale=grid.scale.reshape(()), zero_point=grid.zero_point.reshape(())
        ), None
    return grid, (axis % rank if axis is not None else None)


def kernel_integers(w: np.ndarray, grid: OnnxGrid, axis: int | None, name: str) -> np.ndarray:
    """``round(w / scale) + zero_point`` as the grid's integer type.

    Raises:
      ValueError: ``w`` is not on the grid (the module's kernel does not match its record).
    """
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    scale = grid.scale.reshape(shape).astype(np.float64)
    zp = grid.zero_point.astype(np.int64).reshape(shape)
    levels = np.asarray(w, np.float64) / scale
    off = float(np.max(np.abs(levels - np.round(levels)), initial=0.0))
    if off > INT_TOLERANCE:
        raise ValueError(
            f"kernel of {name!r} is not on its quantization grid (off by {off:.3g} steps); "
            "export the module the PTQ call returned"
        )
    info = np.iinfo(grid.dtype)
    q = np.round(levels).astype(np.int64) + zp
    return np.clip(q, info.min, info.max)


def activation_grid(node: Node, params: Mapping[str, Any]) -> OnnxGrid:
    """The ONNX grid of a ``fake_quant`` node (per-tensor activation quantizers only).

    Raises:
      NotImplementedError: a per-channel activation quantizer.
    """
    scale = np.asarray(params["scale"], np.float32)
    if scale.size != 1:
        raise NotImplementedError(f"{node.name!r}: per-channel activation quantizers")
    return grid_from_levels(
        scale.reshape(()),
        np.asarray(params["q_min"]).reshape(()),
        np.asarray(params["q_max"]).reshape(()),
    )


def bias_int32(
    bias: np.ndarray, x_grid: OnnxGrid, w_grid: OnnxGrid
) -> tuple[np.ndarray, np.ndarray]:
    """``(int32 bias, its float32 scale per channel)``: scale ``s_x * s_w``, zero point 0."""
    scale = (np.float64(x_grid.scale) * np.broadcast_to(w_grid.scale, bias.shape)).astype(
        np.float32
    )
    q = np.round(np.asarray(bias, np.float64) / scale.astype(np.float64))
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int32), scale
