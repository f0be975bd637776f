"""jq's quantizers as MCT's ``mct_quantizers`` ONNX custom ops (MCTQ format).

MCT 2.6.1 with ``mct_quantizers`` 1.7.0 writes, for ``quantization_format=MCTQ``, each quantizer
as a node of the ``mct_quantizers`` domain (opset version 1); every node also carries the
attribute ``mctq_version`` (a string):

- activations: ``ActivationPOTQuantizer`` / ``ActivationSymmetricQuantizer`` with float
  ``threshold``, int ``signed``, int ``num_bits``; ``ActivationUniformQuantizer`` with float
  ``min_range``, ``max_range`` (already widened to hold 0) and int ``num_bits``;
- kernels: the float kernel stays an initializer and feeds ``WeightsPOTQuantizer`` /
  ``WeightsSymmetricQuantizer`` (second input: a ``Constant`` float32 threshold, ``(C,)`` per
  channel, ``(1,)`` per tensor; int ``num_bits``, ``per_channel``, ``channel_axis``,
  ``signed``, always 1) or ``WeightsUniformQuantizer`` (inputs ``min_range``, ``max_range``,
  widened to hold 0; the same attributes), whose output the Conv/Gemm reads. Per
  tensor, ``channel_axis`` is 0 (MCT's choice: onnxruntime's op needs the attribute).

A jq module holds its kernels already on their grid, not the float ones MCT keeps: jq writes
those. Every one of these quantizers maps a value on its own grid to itself, so the file
computes what MCT's would, and a tool chain that quantizes the kernel with the attached
threshold gets MCT's integers.

Reference: ``mct_quantizers/pytorch/quantizers/*/*_inferable_quantizer.py`` (the ``symbolic``
methods, and the ``onnx_op`` registrations onnxruntime-extensions runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ..graph.graph import Node
from ..report.quant_info import LayerInfo
from .scales import scale_zero_point

MCTQ_DOMAIN = "mct_quantizers"
MCTQ_DOMAIN_VERSION = 1
MCTQ_VERSION = "1.7.0"  # the mct_quantizers release whose ops and attributes these are
# The file's doc_string: onnxruntime's own error for a session without the custom ops names only
# the op ("mct_quantizers:ActivationPOTQuantizer(-1) is not a registered function/op"), so the
# file says what runs it (seen with onnx.load(path).doc_string, or in Netron).
MCTQ_RUNTIME_NOTE = (
    "MCTQ file (mct_quantizers custom ops). onnxruntime runs it with "
    "onnxruntime.InferenceSession(path, mct_quantizers.get_ort_session_options()), which needs "
    "the packages mct-quantizers and onnxruntime-extensions (pip install 'jq-quant[onnx]')."
)

_ACTIVATION_OPS = {
    "power_of_two": "ActivationPOTQuantizer",
    "symmetric": "ActivationSymmetricQuantizer",
    "uniform": "ActivationUniformQuantizer",
}
_WEIGHTS_OPS = {
    "power_of_two": "WeightsPOTQuantizer",
    "symmetric": "WeightsSymmetricQuantizer",
    "uniform": "WeightsUniformQuantizer",
}


class MctqNode(NamedTuple):
    """One ``mct_quantizers`` node, before it is wired.

    Attributes:
      op_type: e.g. ``"ActivationPOTQuantizer"``.
      attrs: the node's attributes (``mctq_version`` included), Python ints / floats / str.
      consts: ``(name, float32 array)`` of the extra inputs after the quantized tensor
        (``Constant`` nodes in MCT's file): a weights quantizer's ``threshold``, or its
        ``min_range`` and ``max_range``, each of shape ``(C,)`` or ``(1,)``; empty for
        activations.
    """

    op_type: str
    attrs: dict[str, Any]
    consts: tuple[tuple[str, np.ndarray], ...] = ()


def _is_pot(t: float) -> bool:
    return t > 0 and float(np.log2(t)) == round(float(np.log2(t)))


def activation_node(node: Node, params: Mapping[str, Any], layer: LayerInfo | None) -> MctqNode:
    """The ``mct_quantizers`` node of a per-tensor ``fake_quant`` node.

    The numbers come from the node's grid (``scale``, ``q_min``, ``q_max``: what the module
    computes, so the file's values are the module's); the method (POT, symmetric or uniform)
    from its :class:`LayerInfo` (``layer``), or when there is none, from the grid: a zero
    point or a one-sided range that is not ``[0, 2^n - 1]`` means uniform, a power-of-two
    threshold POT, else symmetric.

    Args:
      node: the ``fake_quant`` node (its name is quoted in errors).
      params: its ``scale``, ``q_min``, ``q_max`` (float32 scalars, the zero point folded in).
      layer: the :class:`LayerInfo` of the value it quantizes, or ``None``.

    Returns:
      :class:`MctqNode` without ``consts``.

    Raises:
      NotImplementedError: a per-channel activation quantizer, or an unknown method.

    Example:
      >>> n = Node("relu.act_quant", "fake_quant", ("relu",), {})
      >>> p = {"scale": np.float32(2**-7), "q_min": 0.0, "q_max": 255.0}
      >>> mq = activation_node(n, p, None)
      >>> mq.op_type, mq.attrs["threshold"], mq.attrs["signed"], mq.attrs["num_bits"]
      ('ActivationPOTQuantizer', 2.0, 0, 8)
    """
    scale = np.asarray(params["scale"], np.float32)
    if scale.size != 1:
        raise NotImplementedError(f"{node.name!r}: per-channel activation quantizers in MCTQ")
    s = scale.reshape(())
    lo, hi = (float(np.asarray(params[k]).reshape(())) for k in ("q_min", "q_max"))
    n_bits = max(1, int(np.ceil(np.log2(hi - lo + 1))))
    signed = lo == -(2.0 ** (n_bits - 1)) and hi == 2.0 ** (n_bits - 1) - 1
    threshold = s * np.float32(2.0 ** (n_bits - 1) if signed else 2.0**n_bits)
    symmetric = signed or (lo == 0 and hi == 2.0**n_bits - 1)
    if layer is not None:
        method = layer.method
    elif not symmetric:
        method = "uniform"
    else:
        method = "power_of_two" if _is_pot(float(threshold)) else "symmetric"
    if method not in _ACTIVATION_OPS:
        raise NotImplementedError(f"{node.name!r}: no MCTQ activation quantizer for {method!r}")
    op = _ACTIVATION_OPS[method]
    if method == "uniform":
        attrs: dict[str, Any] = {
            "min_range": float(np.float32(lo) * s),
            "max_range": float(np.float32(hi) * s),
            "num_bits": n_bits,
        }
    else:
        attrs = {"threshold": float(threshold), "signed": int(signed), "num_bits": n_bits}
    return MctqNode(op, {**attrs, "mctq_version": MCTQ_VERSION})


def weights_node(layer: LayerInfo, rank: int) -> MctqNode:
    """The ``mct_quantizers`` node of a quantized kernel of rank ``rank`` from its record.

    Args:
      layer: the kernel's :class:`LayerInfo` (``kind="weights"``): method, bits, threshold or
        range (per channel along ``channel_axis``, or per tensor when that is ``None``).
      rank: the kernel's rank (a negative ``channel_axis`` is taken modulo it).

    Returns:
      :class:`MctqNode` whose ``consts`` are the threshold, or ``min_range`` and
      ``max_range``, as float32 ``(C,)`` (``(1,)`` per tensor).

    Raises:
      NotImplementedError: a method without an MCTQ weights quantizer.
    """
    if layer.method not in _WEIGHTS_OPS:
        raise NotImplementedError(f"{layer.name!r}: no MCTQ weights quantizer for {layer.method!r}")
    axis = layer.channel_axis
    attrs: dict[str, Any] = {
        "num_bits": int(layer.n_bits),
        "per_channel": int(axis is not None),
        "channel_axis": 0 if axis is None else axis % rank,
        "signed": 1,  # MCT's weights quantizers are all signed (uniform ones too)
    }
    consts: tuple[tuple[str, np.ndarray], ...]
    if layer.method == "uniform":
        grid = scale_zero_point(layer.n_bits, range_min=layer.range_min, range_max=layer.range_max)
        lo = -grid.zero_point.astype(np.float32) * grid.scale
        hi = lo + np.float32(2**layer.n_bits - 1) * grid.scale
        consts = (("min_range", lo.reshape(-1)), ("max_range", hi.reshape(-1)))
    else:
        consts = (("threshold", np.asarray(layer.threshold, np.float32).reshape(-1)),)
    op = _WEIGHTS_OPS[layer.method]
    return MctqNode(op, {**attrs, "mctq_version": MCTQ_VERSION}, consts)
