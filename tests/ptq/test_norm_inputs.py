"""``placement.norm_inputs``: the quantized values a normalization reads (layer norm, group
norm, a decomposed RMS norm) and the residual stream behind them, on hand-built graphs."""

from __future__ import annotations

import pytest

import jq
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


def _ptq(graph, params, xs, **core):
    import jq.core
    import jq.ptq

    qc = jq.core.QuantizationConfig(mct_compat=core.pop("compat", False))
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False, **core)
    return jq.ptq.quantize_graph(graph, params, lambda: ([x] for x in xs), core_config=cfg)


def _small_token_block():
    """Token 0 is 50x smaller than the others (a class token), then a residual and a layer
    norm: at 8 bits per tensor the small token keeps about one grid step."""
    import numpy as np

    rng = np.random.default_rng(0)
    d = 8
    nodes = (
        Node("fc", "linear", ("x",)),
        Node("res", "add", ("x", "fc")),
        Node("ln", "layer_norm", ("res",), {"normalized_shape": (d,), "eps": 1e-5}),
        Node("head", "linear", ("ln",)),
    )
    zeros = np.zeros(d, np.float32)
    params = {
        "fc": {"weight": 0.3 * rng.standard_normal((d, d), np.float32), "bias": zeros},
        "ln": {"weight": np.ones(d, np.float32), "bias": zeros},
        "head": {"weight": rng.standard_normal((4, d), np.float32), "bias": zeros[:4]},
    }
    scale = np.ones((1, 5, 1), np.float32)
    scale[:, 0] = 0.02
    xs = [(rng.standard_normal((4, 5, d)) * scale).astype(np.float32) for _ in range(2)]
    return Graph(("x",), nodes, ("head",)), params, xs


def test_default_mode_widens_norm_inputs_and_compat_keeps_mcts_bits():
    graph, params, xs = _small_token_block()
    default = _ptq(graph, params, xs)
    # MCT's bits give 9.1 dB here, under jq's quality floor: the run says so.
    with pytest.warns(jq.QualityWarning, match=r"output SQNR 9\.\d\d dB is below the floor"):
        compat = _ptq(graph, params, xs, compat=True)
    assert default.info.layer("res").n_bits == 16 and default.info.layer("ln").n_bits == 8
    assert compat.info.layer("res").n_bits == 8
    assert any("normalization inputs at 16 bits: 1 values (res)" in n for n in default.info.notes)
    # 15.2 against 9.1 dB (the graph input's own 8-bit quantizer keeps part of the loss)
    assert default.info.output_sqnr_db > compat.info.output_sqnr_db + 5
    with pytest.warns(jq.QualityWarning, match=r"output SQNR 9\.\d\d dB"):  # MCT's bits again
        back = _ptq(graph, params, xs, overrides={"res": {"activation_n_bits": 8}})
    assert back.info.layer("res").n_bits == 8  # a user's rule wins
