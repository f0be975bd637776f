"""Where quantizers go: MCT's default target platform (imx500 v1) on jq graphs
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

from ..graph.graph import Graph, Node

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


class Plan(NamedTuple):
    """Quantizer placement on a graph.

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
) -> Plan:
    """Place quantizers on ``graph`` as MCT's default target platform does.

    Args:
      graph: a float graph (batch norms already folded).
      float_values: names of values with a floating dtype; others (indices, masks) are never
        quantized. ``None``: all values are float.
      quantize_inputs: quantize the graph inputs.
      quantize_activations: ``False``: kernels only (weights-only PTQ), no activation
        quantizer and nothing fused.

    Returns:
      A :class:`Plan`.
    """

    def is_float(name: str) -> bool:
        return float_values is None or name in float_values

    kernels = tuple((n.name, KERNEL_AXIS[n.op]) for n in graph.nodes if n.op in KERNEL_AXIS)
    if not quantize_activations:
        return Plan(kernels, (), ())
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
    return Plan(kernels, tuple(acts), tuple(fused))


NORM_OPS = frozenset({"layer_norm", "group_norm"})
NORM_INPUT_BITS = 16  # default mode: the activation width of the values norm_inputs finds
_SQUARES = frozenset({"mul", "integer_pow", "pow"})
_STREAM_OPS = frozenset({"add", "sub", "cat"})  # ops that carry a residual stream along


def _carrier(graph: Graph, value: str, producers: dict[str, Node]) -> str:
    """The value whose quantizer ``value`` carries: through no-quantization ops (reshapes,
    permutes, slices, casts) back to the value they read."""
    node = producers.get(value)
    while node is not None and node.op in NO_QUANT_OPS - {"constant"} and node.inputs:
        value = node.inputs[0]
        node = producers.get(value)
    return value


def _is_square(node: Node, value: str) -> bool:
    if node.op == "mul":
        return len(node.inputs) == 2 and node.inputs[0] == node.inputs[1] == value
    if node.op == "integer_pow":
        return node.attr("y", None) == 2
    return node.op == "pow" and node.attr("scalar", None) == 2 and len(node.inputs) == 1


def norm_inputs(graph: Graph, quantized: frozenset[str] | set[str]) -> frozenset[str]:
    """The quantized values that a normalization reads, and the residual stream behind them.

    A normalization is a ``layer_norm`` / ``group_norm`` node, or the decomposed RMS norm of
    Llama- and T5-style models (a square of the value averaged: ``mean(x * x)``,
    ``mean(x ** 2)``). Its input's quantizer is found through no-quantization ops; from there
    the set grows backwards through ``add`` / ``sub`` / ``cat`` nodes (the residual stream,
    a class token concatenated to patch tokens), not through layers.

    Why: a normalization divides each token (or sample) by its own scale, so a per-tensor grid
    counts relative to the largest token: a token 30x smaller than the rest (DeiT's class token
    at random init) keeps almost no resolution at 8 bits, and the normalization scales that
    error up to unit size.

    Args:
      graph: a float graph (batch norms folded).
      quantized: the values with an activation quantizer (``Plan.activations``).

    Returns:
      The subset of ``quantized`` described above.
    """
    producers = {n.name: n for n in graph.nodes}
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in dict.fromkeys(n.inputs):
            readers.setdefault(_carrier(graph, i, producers), []).append(n)
    seeds = set()
    for value, nodes in readers.items():
        for n in nodes:
            squared_then_averaged = any(
                _is_square(n, i) for i in n.inputs if _carrier(graph, i, producers) == value
            ) and any(r.op in ("mean", "reduce_sum") for r in readers.get(n.name, ()))
            if (n.op in NORM_OPS and _carrier(graph, n.inputs[0], producers) == value) or (
                squared_then_averaged
            ):
                seeds.add(value)
    found, todo = set(), [s for s in seeds if s in quantized]
    while todo:
        v = todo.pop()
        if v in found:
            continue
        found.add(v)
        node = producers.get(v)
        if node is not None and node.op in _STREAM_OPS:
            for i in node.inputs:
                c = _carrier(graph, i, producers)
                if c in quantized and c in producers and producers[c].op in _STREAM_OPS:
                    todo.append(c)
    return frozenset(found)
