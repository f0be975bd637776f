"""An ONNX graph under construction: nodes, initializers, fresh names (``onnx.helper``).

onnx is imported lazily by the functions that need it (``import jq`` never imports it); the
builder receives the ``onnx`` module from its creator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..names import Names
from .scales import OnnxGrid


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnnxOptions:
    """What the ONNX writer is asked for.

    Attributes:
      mode: ``"float"`` (the graph as it is), ``"fake_quant"`` (Q/DQ activations, float
        weights on their grid), ``"int8"`` (int weights with per-channel DequantizeLinear) or
        ``"mctq"`` (``mct_quantizers`` custom ops, MCT's MCTQ format).
      opset: the ``ai.onnx`` opset version.
    """

    mode: str
    opset: int


class Builder:
    """Collects the nodes and initializers of one ONNX graph.

    Args:
      onnx: the imported ``onnx`` module.
      options: :class:`OnnxOptions`.
      taken: names already used (graph inputs).
    """

    def __init__(self, onnx: Any, options: OnnxOptions, taken: set[str]) -> None:
        self.onnx = onnx
        self.options = options
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names = Names(taken)

    @property
    def opset(self) -> int:
        return self.options.opset

    def fresh(self, base: str) -> str:
        """A value name not used yet (``base``, or ``base`` with a numeric suffix)."""
        return self._names.new(base)

    def const(self, value: Any, base: str, dtype: Any = None) -> str:
        """An initializer holding ``value`` (NumPy array or scalar); returns its name."""
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def add(self, op_type: str, inputs: list[str], base: str, **attrs: Any) -> str:
        """Append a node with one output (named after ``base``); returns the output name.
        ``domain=`` in ``attrs`` sets the node's domain."""
        out = self.fresh(base)
        domain = attrs.pop("domain", None)
        kwargs = {"domain": domain} if domain else {}
        node = self.onnx.helper.make_node(
            op_type, inputs, [out], name=self.fresh(f"{base}/{op_type}"), **attrs, **kwargs
        )
        self.nodes.append(node)
        return out

    def add_outputs(self, op_type: str, inputs: list[str], base: str, n: int, **attrs: Any):
        """Append a node with ``n`` outputs (TopK: values and indices); returns their names."""
        outs = [self.fresh(f"{base}.out{i}") for i in range(n)]
        node = self.onnx.helper.make_node(
            op_type, inputs, outs, name=self.fresh(f"{base}/{op_type}"), **attrs
        )
        self.nodes.append(node)
        return outs

    def qdq(self, x: str, grid: OnnxGrid, base: str, axis: int | None = None) -> str:
        """``DequantizeLinear(QuantizeLinear(x))`` on ``grid`` (a clip first for grids narrower
        than their storage type, since QuantizeLinear saturates to the type's range)."""
        scale = self.const(grid.scale, f"{base}.scale")
        zp = self.const(grid.zero_point, f"{base}.zero_point")
        if grid.n_bits < int(grid.dtype.removeprefix("u").removeprefix("int")):
            lo = (np.asarray(-grid.zero_point, np.float32) + _grid_min(grid)) * grid.scale
            hi = lo + (2**grid.n_bits - 1) * grid.scale
            x = self.add(
                "Clip", [x, self.const(lo, f"{base}.lo"), self.const(hi, f"{base}.hi")], base
            )
        kw = {} if axis is None else {"axis": axis}
        q = self.add("QuantizeLinear", [x, scale, zp], f"{base}.q", **kw)
        return self.add("DequantizeLinear", [q, scale, zp], f"{base}.dq", **kw)

    def dequantize(self, q: np.ndarray, grid: OnnxGrid, base: str, axis: int | None) -> str:
        """An integer initializer ``q`` and the DequantizeLinear that reads it."""
        kw = {} if axis is None or grid.scale.ndim == 0 else {"axis": axis}
        ints = self.const(q.astype(grid.dtype), f"{base}.int")
        scale = self.const(grid.scale, f"{base}.scale")
        zp = self.const(grid.zero_point, f"{base}.zero_point")
        return self.add("DequantizeLinear", [ints, scale, zp], f"{base}.dq", **kw)


def _grid_min(grid: OnnxGrid) -> float:
    """The lowest level of a grid before the zero-point shift (0 for unsigned storage)."""
    if grid.dtype.startswith("u"):
        return 0.0
    return -float(2 ** (grid.n_bits - 1))
