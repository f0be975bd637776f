"""Where the platform puts quantizers: MCT's default target platform (imx500 v1) on jq graphs
(MCT 2.6.1's ``tpc_models/imx500_tpc/v1_0/tpc.py``).

* Kernels of ``conv`` / ``conv_transpose`` / ``linear`` are quantized (channel axis 0, 1, 0).
* Every float value gets an activation quantizer, graph inputs and outputs included, except
  (a) outputs of the no-quantization ops (shape ops, max-pool, casts, constants, existing
  quantizers: they move or select values without creating new ones) and (b) inner nodes of
  fusing patterns: a layer whose only reader is a fusable activation is not quantized, the
  activation is (``conv -> relu``: one quantizer, after the ReLU).
* Softmax / sigmoid / hardsigmoid outputs are bounded to ``[0, 1]``: their thresholds come from
  that known range, not from a histogram (as MCT's
  prior info for these ops).
"""

from __future__ import annotations

from typing import NamedTuple

from ...graph.graph import Graph, Node

KERNEL_AXIS = {"conv": 0, "conv_transpose": 1, "linear": 0}

NO_QUANT_OPS = frozenset(
    {"reshape", "permute", "slice", "select", "max_pool", "cast", "expand", "constant"}
    | {"fake_quant", "ptq_perturb"}
)

BOUNDED_OPS = {"softmax": (0.0, 1.0), "sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0)}

_RELU_LIKE = frozenset({"relu", "relu6", "leaky_relu", "hardtanh"})
_AFTER_CONV = _RELU_LIKE | {"silu", "hardswish", "sigmoid", "tanh"}
_AFTER_LINEAR = _AFTER_CONV - {"tanh"}
FUSING = {
    "conv": _AFTER_CONV,
    "conv_transpose": _AFTER_CONV,
    "linear": _AFTER_LINEAR,
    "add": _RELU_LIKE,
    "sub": _RELU_LIKE,
    "mul": _RELU_LIKE,
    "div": _RELU_LIKE,
}


GROUPED_OPS = frozenset({"linear"})  # kernels that take TargetPlatform.weights_group_size


def kernel_group_size(op: str, per_channel: bool, group_size: int | None) -> int | None:
    """The group size of a kernel of ``op`` under a platform's ``weights_group_size``:
    linear kernels only, per channel only (``None``: per channel or per tensor)."""
    return group_size if (op in GROUPED_OPS and per_channel) else None


class Placement(NamedTuple):
    """The platform's quantizer placement on a graph (before steering and jq's policy).

    Attributes:
      kernels: ``(node, channel_axis)`` of every layer whose kernel is quantized.
      activations: names of values (graph inputs and nodes) that get an activation quantizer,
        inputs first, then in graph order.
      fused: ``(layer, activation)`` pairs whose layer output is not quantized.
    """

    kernels: tuple[tuple[str, int], ...]
    activations: tuple[str, ...]
    fused: tuple[tuple[str, str], ...]


def _fuses(layer: Node, act: Node) -> bool:
    if act.op not in FUSING.get(layer.op, ()):
        return False
    if act.op == "hardtanh":  # MCT fuses Hardtanh only as a bounded ReLU (min 0)
        return act.attr("min_val", None) == 0
    return True


def plan_quantization(
    graph: Graph,
    *,
    float_values: frozenset[str] | None = None,
    quantize_inputs: bool = True,
    quantize_activations: bool = True,
) -> Placement:
    """Place quantizers on ``graph`` as MCT's default target platform does.

    Args:
      graph: a float graph (batch norms already folded).
      float_values: names of values with a floating dtype; others (indices, masks) are never
        quantized. ``None``: all values are float.
      quantize_inputs: quantize the graph inputs.
      quantize_activations: ``False``: kernels only (weights-only PTQ), no activation
        quantizer and nothing fused.

    Returns:
      A :class:`Placement`.
    """

    def is_float(name: str) -> bool:
        return float_values is None or name in float_values

    kernels = tuple((n.name, KERNEL_AXIS[n.op]) for n in graph.nodes if n.op in KERNEL_AXIS)
    if not quantize_activations:
        return Placement(kernels, (), ())
    fused = []
    skip = set()
    outputs = set(graph.outputs)
    for n in graph.nodes:
        if n.op not in FUSING or n.name in outputs:
            continue
        readers = graph.consumers(n.name)
        if len(readers) == 1 and _fuses(n, readers[0]):
            fused.append((n.name, readers[0].name))
            skip.add(n.name)
    acts = [i for i in graph.inputs if quantize_inputs and is_float(i)]
    acts += [
        n.name
        for n in graph.nodes
        if n.op not in NO_QUANT_OPS and n.name not in skip and is_float(n.name)
    ]
    return Placement(kernels, tuple(acts), tuple(fused))
