"""A quantized jq graph written as an ONNX file: the opset it needs, its checks, the write.

Framework-free: it takes the graph, its params and an example batch as NumPy arrays and the
quantizers' records; ``jq_torch`` feeds it the module ``pytorch_post_training_quantization``
returned. onnx is imported when a file is written (``import jq`` never imports it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..graph.graph import Graph
from ..report.quant_info import LayerInfo
from .files import atomic_path
from .formats import QuantizationFormat
from .onnx_builder import OnnxOptions
from .onnx_model import KERNEL_OPS, MIN_16_BIT_OPSET, MIN_QDQ_OPSET, to_onnx, unsupported_ops

# MCT 2.6.1's default with torch >= 2.4; jq writes it unless the file needs a newer one.
DEFAULT_ONNX_OPSET_VERSION = 20
_LOG = logging.getLogger("jq.exporter")
_MODES = {
    QuantizationFormat.FAKELY_QUANT: "fake_quant",
    QuantizationFormat.INT8: "int8",
    QuantizationFormat.MCTQ: "mctq",
}


def _wide_bits(layers: Sequence[LayerInfo]) -> list[int]:
    """The bit widths above 8 of the quantizers, sorted."""
    return sorted({q.n_bits for q in layers if q.n_bits > 8})


def needed_opset(layers: Sequence[LayerInfo], fmt: QuantizationFormat) -> tuple[int, str]:
    """The lowest ``ai.onnx`` opset, not below MCT's default, that the ``fmt`` file of a model
    with quantizers ``layers`` needs, and why.

    INT8 writes values wider than 8 bits as int16 QuantizeLinear/DequantizeLinear, which need
    opset 21. The other formats need no more than the default: FAKELY_QUANT writes wide grids
    with float ops below opset 21, and MCTQ's custom ops take any bit width.
    """
    wide = _wide_bits(layers)
    if fmt is QuantizationFormat.INT8 and wide:
        return max(DEFAULT_ONNX_OPSET_VERSION, MIN_16_BIT_OPSET), (
            f"the lowest for INT8 with {wide}-bit values: int16 QuantizeLinear/DequantizeLinear"
        )
    return DEFAULT_ONNX_OPSET_VERSION, "MCT's default; nothing in the file needs a newer one"


def check_opset(
    graph: Graph, layers: Sequence[LayerInfo], fmt: QuantizationFormat, opset: Any, fn: str
) -> int:
    """The opset to write: ``opset`` once checked, or for ``None`` the lowest one the file
    needs (:func:`needed_opset`), said on the ``jq.exporter`` logger."""
    if opset is None:
        opset, why = needed_opset(layers, fmt)
        _LOG.info("%s: writing ONNX opset %d (%s)", fn, opset, why)
    elif isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"{fn}: onnx_opset_version must be an int or None, got {opset!r}")
    if opset < MIN_QDQ_OPSET:
        raise ValueError(
            f"{fn}: onnx_opset_version {opset} is too old: per-channel QuantizeLinear/"
            f"DequantizeLinear need opset {MIN_QDQ_OPSET} or newer"
        )
    wide = _wide_bits(layers)
    if fmt is QuantizationFormat.INT8 and wide and opset < MIN_16_BIT_OPSET:
        raise ValueError(
            f"{fn}: onnx_opset_version {opset} is too old for INT8 with {wide}-bit values "
            f"(int16 QuantizeLinear/DequantizeLinear need opset {MIN_16_BIT_OPSET}); pass "
            f"onnx_opset_version={MIN_16_BIT_OPSET}, or leave it out (the exporter then picks "
            "the lowest opset the file needs), or use FAKELY_QUANT (float ops for them)"
        )
    kernels = {n.name for n in graph.nodes if n.op in KERNEL_OPS}
    wide_w = [q.name for q in layers if q.kind == "weights" and q.n_bits > 8]
    if fmt is QuantizationFormat.INT8 and set(wide_w) & kernels:
        raise ValueError(f"{fn}: INT8 needs kernels of at most 8 bits; {wide_w} are wider")
    return opset


def write_onnx(
    path: str,
    graph: Graph,
    params: Mapping[str, Mapping[str, np.ndarray]],
    layers: Sequence[LayerInfo],
    example: Sequence[np.ndarray],
    *,
    fmt: QuantizationFormat,
    opset: int | None,
    output_names: Sequence[str] | None,
    fn: str,
) -> None:
    """Write the ONNX file of a quantized graph to ``path`` (whole, or not at all).

    Args:
      path: the checked file path (``files.check_writable``).
      graph, params: the quantized graph and its params, ``{node: {param: array}}``.
      layers: the quantizers' records (``QuantizationInfo.layers``).
      example: one array per graph input (dtypes and the shapes of the trace).
      fmt: FAKELY_QUANT, INT8 or MCTQ.
      opset: the ``ai.onnx`` opset, or ``None`` for the lowest the file needs.
      output_names: ONNX output names (default ``output`` / ``output_<i>``).
      fn: the entry point's name, used in error messages.

    Raises:
      TypeError / ValueError: an opset of the wrong type or too old for the bit widths.
      NotImplementedError: graph ops without an ONNX form (all listed).
    """
    opset = check_opset(graph, layers, fmt, opset, fn)
    missing = unsupported_ops(graph)
    if missing:
        raise NotImplementedError(f"{fn}: no ONNX form for {len(missing)} node(s): {missing}")
    options = OnnxOptions(mode=_MODES[fmt], opset=opset)
    proto = to_onnx(graph, params, layers, example, options, output_names)
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(proto, tmp)
