"""``placement.norm_inputs``: the quantized values a normalization reads (layer norm, group
norm, a decomposed RMS norm) and the residual stream behind them, on hand-built graphs."""

from __future__ import annotations

from jq import Graph, Node
from jq._src.ptq.placement import norm_inputs, plan_quantization


def _plan(graph: Graph) -> frozenset[str]:
    return norm_inputs(graph, set(plan_quantization(graph).activations))


def _prenorm_block() -> Graph:
    """cat(cls, patches) + pos -> [ln -> fc] + residual -> ln -> head."""
    nodes = (
        Node("patch", "linear", ("x",)),
        Node("cls", "constant"),
        Node("cat", "cat", ("cls", "patch"), {"axis": 1}),
        Node("pos", "constant"),
        Node("embed", "add", ("cat", "pos")),
        Node("ln1", "layer_norm", ("embed",), {"normalized_shape": (4,), "eps": 1e-6}),
        Node("fc", "linear", ("ln1",)),
        Node("act", "gelu", ("fc",)),
        Node("res", "add", ("embed", "act")),
        Node("view", "reshape", ("res",), {"shape": (-1, 4)}),
        Node("ln2", "layer_norm", ("view",), {"normalized_shape": (4,), "eps": 1e-6}),
        Node("head", "linear", ("ln2",)),
    )
    return Graph(("x",), nodes, ("head",))


def test_residual_stream_and_class_token_concat():
    assert _plan(_prenorm_block()) == {"embed", "cat", "res"}


def test_decomposed_rms_norm():
    nodes = (
        Node("emb", "embedding", ("ids",)),
        Node("sq", "integer_pow", ("emb",), {"y": 2}),
        Node("ms", "mean", ("sq",), {"axis": (-1,), "keepdims": True}),
        Node("r", "rsqrt", ("ms",)),
        Node("normed", "mul", ("emb", "r")),
        Node("fc", "linear", ("normed",)),
        Node("res", "add", ("emb", "fc")),
        Node("sq2", "mul", ("res", "res")),
        Node("ms2", "mean", ("sq2",), {"axis": (-1,), "keepdims": True}),
        Node("out", "mul", ("res", "ms2")),
    )
    graph = Graph(("ids",), nodes, ("out",))
    assert _plan(graph) == {"emb", "res"}


def test_no_norm_no_values():
    nodes = (
        Node("c1", "conv", ("x",), {"stride": (1, 1), "padding": ((0, 0),) * 2,
                                    "dilation": (1, 1), "groups": 1}),
        Node("a", "add", ("c1", "x")),
        Node("sq", "mul", ("a", "c1")),  # a product, not a square
        Node("m", "mean", ("sq",), {"axis": (1,), "keepdims": False}),
    )  # fmt: skip
    assert _plan(Graph(("x",), nodes, ("m",))) == frozenset()


def test_group_norm_input_and_only_quantized_values():
    nodes = (
        Node("c1", "conv", ("x",), {"stride": (1, 1), "padding": ((0, 0),) * 2,
                                    "dilation": (1, 1), "groups": 1}),
        Node("relu", "relu", ("c1",)),
        Node("gn", "group_norm", ("relu",), {"num_groups": 1, "eps": 1e-5}),
    )  # fmt: skip
    graph = Graph(("x",), nodes, ("gn",))
    assert _plan(graph) == {"relu"}  # conv+relu fused: the quantizer is the relu's
    assert norm_inputs(graph, set()) == frozenset()
