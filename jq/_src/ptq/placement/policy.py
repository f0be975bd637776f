"""jq's own placement policy: the default mode's wider normalization inputs.

The one place where jq's default mode departs from MCT's bit widths (none in compat mode):
every value a normalization reads, and the residual stream behind it (:func:`norm_inputs`),
gets a ``NORM_INPUT_BITS``-bit activation quantizer when the platform's width is lower.
"""

from __future__ import annotations

from ...graph.graph import Graph, Node
from ..steering import NodeOverride
from .platform import NO_QUANT_OPS

NORM_OPS = frozenset({"layer_norm", "group_norm"})
NORM_INPUT_BITS = 16  # default mode: the activation width of the values norm_inputs finds
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


def wide_norm_inputs(
    graph: Graph, activations: tuple[str, ...], *, activation_n_bits: int, compat: bool
) -> dict[str, NodeOverride]:
    """The policy's per-value settings: ``{value: NodeOverride(activation_n_bits=16)}`` for
    the values of ``activations`` (in their order) that :func:`norm_inputs` finds, if the
    platform's ``activation_n_bits`` is lower; none in ``compat`` mode (MCT's bits)."""
    if compat or activation_n_bits >= NORM_INPUT_BITS:
        return {}
    wide = norm_inputs(graph, frozenset(activations))
    override = NodeOverride(activation_n_bits=NORM_INPUT_BITS)
    return {v: override for v in activations if v in wide}


def policy_note(wide: dict[str, NodeOverride]) -> tuple[str, ...]:
    """The line ``QuantizationInfo.notes`` gives the widened values (none if there are
    none)."""
    if not wide:
        return ()
    shown = ", ".join(list(wide)[:6]) + (f" and {len(wide) - 6} more" if len(wide) > 6 else "")
    return (f"normalization inputs at {NORM_INPUT_BITS} bits: {len(wide)} values ({shown})",)
