"""``jq_onnx.from_onnx`` on hand-built ONNX models: outputs equal onnxruntime's."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import jax  # noqa: E402
import onnx  # noqa: E402
from _onnx_models import ATOL, RTOL, const, init, model, run_ort, small_cnn  # noqa: E402
from onnx import helper  # noqa: E402

import jq  # noqa: E402
import jq_onnx  # noqa: E402


def _check(m, *xs):
    graph, params = jq_onnx.from_onnx(m)
    want = run_ort(m, *xs)
    got = jq.apply(graph, params, *xs)
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    jitted = jax.jit(jq.apply, static_argnums=0)(graph, params, *xs)
    jitted = list(jitted) if isinstance(jitted, (tuple, list)) else [jitted]
    for g, j, w in zip(got, jitted, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(np.asarray(j), w, rtol=RTOL, atol=ATOL)
    return graph, params


@pytest.mark.parametrize("constant_nodes", [True, False])
def test_constant_weights_and_shape_chain_fold(rng, constant_nodes):
    m = small_cnn(rng, constant_nodes=constant_nodes)
    for n in (2, 5):  # one graph serves both batch sizes
        x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
        graph, params = _check(m, x)
    # Weights became params; the shape chain folded into one reshape with a dynamic batch.
    ops = [node.op for node in graph.nodes]
    assert ops == [
        "conv",
        "batch_norm",
        "relu",
        "conv",
        "relu6",
        "adaptive_avg_pool",
        "reshape",
        "linear",
    ]
    assert graph.input_shapes == ((-1, 3, 16, 16),) and graph.pinned_by == ""
    reshape = graph.nodes[6]
    assert reshape.attr("shape") == (-1, 8)
    conv = graph.nodes[0]
    assert conv.attr("padding") == ((1, 1), (1, 1)) and conv.attr("stride") == (2, 2)
    assert params[conv.name]["weight"].shape == (8, 3, 3, 3)
    assert graph.nodes[3].attr("groups") == 8
    assert params[graph.nodes[7].name]["weight"].shape == (10, 8)


def test_matmul_add_becomes_one_linear_with_bias(rng):
    w = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    m = model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["b", "h"], ["y"])],
        [("x", ["N", 5, 6])],
        [("y", ["N", 5, 4])],
        [init("w", w), init("b", b)],
    )
    graph, params = _check(m, rng.standard_normal((3, 5, 6)).astype(np.float32))
    (node,) = graph.nodes
    assert node.op == "linear"
    np.testing.assert_array_equal(params[node.name]["weight"], w.T)
    np.testing.assert_array_equal(params[node.name]["bias"], b)


def _one(op, x_shape, *extra_inits, out=None, opset=17, **attrs):
    names = ["x"] + [f"c{i}" if v is not None else "" for i, v in enumerate(extra_inits)]
    inits = [init(f"c{i}", v) for i, v in enumerate(extra_inits) if v is not None]
    node = helper.make_node(op, names, ["y"], **attrs)
    return model([node], [("x", x_shape)], [("y", out)], inits, opset=opset)


f32 = np.float32
_CASES = {
    "clip": lambda r: _one("Clip", ["N", 8], f32(-0.5), f32(0.7)),
    "hard_sigmoid_onnx": lambda r: _one("HardSigmoid", ["N", 8]),
    "hard_sigmoid_torch": lambda r: _one("HardSigmoid", ["N", 8], alpha=1 / 6),
    "hard_swish": lambda r: _one("HardSwish", ["N", 8]),
    "leaky_relu": lambda r: _one("LeakyRelu", ["N", 8], alpha=0.2),
    "sigmoid": lambda r: _one("Sigmoid", ["N", 8]),
    "tanh": lambda r: _one("Tanh", ["N", 8]),
    "gelu_opset20": lambda r: _one("Gelu", ["N", 8], opset=20),
    "gelu_tanh_opset20": lambda r: _one("Gelu", ["N", 8], opset=20, approximate="tanh"),
    "softmax": lambda r: _one("Softmax", ["N", 3, 8], axis=1),
    "max_pool_asym_ceil": lambda r: _one(
        "MaxPool",
        ["N", 2, 9, 9],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[0, 1, 1, 0],
        ceil_mode=1,
    ),
    "max_pool_same_upper": lambda r: _one(
        "MaxPool", ["N", 2, 9, 9], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"
    ),
    "avg_pool": lambda r: _one(
        "AveragePool", ["N", 2, 9, 9], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    ),
    "avg_pool_count_pad": lambda r: _one(
        "AveragePool", ["N", 2, 9, 9], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
    ),
    "global_avg_pool": lambda r: _one("GlobalAveragePool", ["N", 2, 5, 7]),
    "batch_norm": lambda r: _one(
        "BatchNormalization",
        ["N", 4, 3, 3],
        r.uniform(0.5, 2, 4).astype(f32),
        r.standard_normal(4).astype(f32),
        r.standard_normal(4).astype(f32),
        r.uniform(0.5, 2, 4).astype(f32),
        epsilon=1e-3,
    ),
    "layer_norm": lambda r: _one(
        "LayerNormalization",
        ["N", 5, 8],
        r.standard_normal(8).astype(f32),
        r.standard_normal(8).astype(f32),
        epsilon=1e-6,
    ),
    "layer_norm_2axes": lambda r: _one(
        "LayerNormalization", ["N", 5, 8], r.standard_normal((5, 8)).astype(f32), axis=1
    ),
    "conv_transpose": lambda r: _one(
        "ConvTranspose",
        ["N", 4, 5, 5],
        r.standard_normal((4, 3, 3, 3)).astype(f32),
        r.standard_normal(3).astype(f32),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    ),
    "conv_same_lower": lambda r: _one(
        "Conv",
        ["N", 3, 8, 8],
        r.standard_normal((4, 3, 4, 4)).astype(f32),
        strides=[2, 2],
        auto_pad="SAME_LOWER",
    ),
    "gemm_alpha_beta": lambda r: _one(
        "Gemm",
        ["N", 6],
        r.standard_normal((6, 3)).astype(f32),
        r.standard_normal(3).astype(f32),
        alpha=0.5,
        beta=2.0,
    ),
    "flatten": lambda r: _one("Flatten", ["N", 2, 3, 4], axis=2),
    "transpose": lambda r: _one("Transpose", ["N", 2, 3, 4], perm=[0, 3, 1, 2]),
    "slice": lambda r: _one(
        "Slice",
        ["N", 6, 8],
        np.array([1, -5], np.int64),
        np.array([100, -1], np.int64),
        np.array([1, 2], np.int64),
        np.array([2, 1], np.int64),
    ),
    "pad": lambda r: _one(
        "Pad", ["N", 2, 4, 4], np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), f32(0.5)
    ),
    "reduce_mean": lambda r: _one("ReduceMean", ["N", 3, 4, 5], axes=[2, 3], keepdims=1),
    "reduce_mean_18": lambda r: _one(
        "ReduceMean", ["N", 3, 4, 5], np.array([-1], np.int64), keepdims=0, opset=18
    ),
    "div_scalar_left": lambda r: model(  # a constant on the left: 2 / x
        [const("two", f32(2.0)), helper.make_node("Div", ["two", "x"], ["y"])],
        [("x", ["N", 4])],
        [("y", None)],
    ),
    "squeeze_unsqueeze": lambda r: _one("Unsqueeze", ["N", 4], np.array([1, -1], np.int64)),
}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_op_matches_onnxruntime(rng, name):
    m = _CASES[name](rng)
    shape = [
        3 if isinstance(d.dim_param, str) and d.dim_param else d.dim_value
        for d in m.graph.input[0].type.tensor_type.shape.dim
    ]
    x = rng.standard_normal(shape).astype(np.float32)
    if name == "div_scalar_left":
        x = rng.uniform(0.5, 2, shape).astype(np.float32)
    graph, _ = _check(m, x)
    assert graph.input_shapes[0][0] == -1 and not graph.pinned_by, name


def test_split_concat_and_gelu_pattern(rng):
    s = f32(np.sqrt(2.0))
    nodes = [
        const("split", np.array([3, 5], np.int64)),
        helper.make_node("Split", ["x", "split"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["b", "a"], ["c"], axis=1),
        # GELU as exporters before opset 20 write it
        const("s", s),
        const("one", f32(1)),
        const("half", f32(0.5)),
        helper.make_node("Div", ["c", "s"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["f"]),
        helper.make_node("Mul", ["c", "f"], ["g"]),
        helper.make_node("Mul", ["g", "half"], ["y"]),
    ]
    m = model(nodes, [("x", ["N", 8])], [("y", ["N", 8])])
    graph, _ = _check(m, rng.standard_normal((4, 8)).astype(np.float32))
    assert [n.op for n in graph.nodes] == ["slice", "slice", "cat", "gelu"]


def test_shape_of_a_constant_folds(rng):
    w = rng.standard_normal((2, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["w"], ["s"], start=1),  # [6], from a weight
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    m = model(nodes, [("x", [2, 3])], [("y", [6])], [init("w", w)])
    graph, _ = _check(m, rng.standard_normal((2, 3)).astype(np.float32))
    assert [(n.op, n.attr("shape")) for n in graph.nodes] == [("reshape", (6,))]


def test_embedding_gather(rng):
    table = rng.standard_normal((10, 4)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"])],
        "g",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 4])],
        initializer=[init("table", table)],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    ids = np.array([[1, 2, 9], [0, 0, 4]], np.int64)
    graph, params = jq_onnx.from_onnx(m)
    assert [n.op for n in graph.nodes] == ["embedding"]
    np.testing.assert_array_equal(np.asarray(jq.apply(graph, params, ids)), table[ids])


def test_reshape_merging_the_batch_pins_it(rng):
    nodes = [
        const("t", np.array([1, -1], np.int64)),
        helper.make_node("Reshape", ["x", "t"], ["y"]),
    ]
    m = model(nodes, [("x", ["N", 4])], [("y", [1, None])])
    graph, params = jq_onnx.from_onnx(m, input_shapes=[(3, 4)])
    assert graph.input_shapes == ((3, 4),)
    assert "merges or splits the batch axis" in graph.pinned_by
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(jq.apply(graph, params, x)), run_ort(m, x)[0])
    with pytest.raises(ValueError, match="merges or splits"):  # the error quotes pinned_by
        jq.apply(graph, params, x[:2])


def test_static_batch_stays_static(rng):
    m = small_cnn(rng)
    for d in (m.graph.input[0], m.graph.output[0]):
        d.type.tensor_type.shape.dim[0].dim_value = 2
    graph, _ = _check(m, rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert graph.input_shapes == ((2, 3, 16, 16),)


def test_unsupported_ops_are_listed_together():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Hardmax", ["a"], ["b"]),
        helper.make_node("Det", ["b"], ["y"]),
    ]
    m = model(nodes, [("x", ["N", 4, 4])], [("y", None)])
    with pytest.raises(jq_onnx.UnsupportedOpError) as e:
        jq_onnx.from_onnx(m)
    assert [(u.op, u.node) for u in e.value.ops] == [("Hardmax", "b"), ("Det", "y")]
    assert "2 unsupported node(s)" in str(e.value)


def test_refused_node_names_the_reason(rng):
    nodes = [
        helper.make_node("MatMul", ["x", "x"], ["y0"]),
        helper.make_node("Conv", ["x4", "x4"], ["y1"]),
    ]
    m = model(nodes, [("x", ["N", 4, 4]), ("x4", [1, 1, 3, 3])], [("y0", None), ("y1", None)])
    with pytest.raises(jq_onnx.UnsupportedOpError, match="computed at run time"):
        jq_onnx.from_onnx(m)


def test_bad_inputs():
    with pytest.raises(TypeError, match="ModelProto or a path"):
        jq_onnx.from_onnx(42)
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        jq_onnx.from_onnx("/nonexistent/model.onnx")
    old = model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])], opset=12
    )
    with pytest.raises(ValueError, match="opset 12"):
        jq_onnx.from_onnx(old)
    seq = model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", "S"])], [("y", None)])
    with pytest.raises(ValueError, match="dynamic axes \\[1\\]"):
        jq_onnx.from_onnx(seq)
    graph, _ = jq_onnx.from_onnx(seq, input_shapes=[(4, 6)])
    assert graph.input_shapes == ((-1, 6),)


def test_docstring_examples():
    import jq_onnx._convert

    result = doctest.testmod(jq_onnx._convert, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
