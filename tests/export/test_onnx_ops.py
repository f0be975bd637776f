"""jq's ONNX writer op by op: every op of the graph vocabulary is written (or refused with
its reason), and each written op, alone in a graph on seeded random inputs, runs in
onnxruntime (CPU, graph optimizations off: the nodes as written) to jq's own output.

Tolerance: floats within 2e-5 x max(1, max |jq|) (ONNX kernels round differently from XLA's:
Erf, Pow, transcendental functions, sums in another order); integers and booleans exactly.
The case id of each op's main case is the op name (the coverage page names these tests).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import jq  # noqa: E402
from jq._src.export.onnx_builder import OnnxOptions  # noqa: E402
from jq._src.export.onnx_model import (  # noqa: E402
    ONNX_MIN_OPSET,
    ONNX_OPS,
    ONNX_REFUSED,
    to_onnx,
    unsupported_ops,
)
from jq._src.graph.apply import apply  # noqa: E402
from jq._src.graph.ops import registered_ops  # noqa: E402

OPSET = 20  # jq.exporter's default (MCT's)
RTOL = 2e-5


class Case(NamedTuple):
    nodes: tuple[jq.Node, ...]
    inputs: tuple[np.ndarray, ...]
    params: dict[str, dict[str, np.ndarray]]
    opset: int = OPSET


_G = np.random.default_rng(0)


def r(*shape):
    return _G.standard_normal(shape).astype(np.float32)


def pos(*shape):
    return (_G.random(shape) + 0.5).astype(np.float32)


def unit(*shape):
    return ((_G.random(shape) - 0.5) * 1.8).astype(np.float32)


def ints(*shape, lo=-4, hi=5):
    return _G.integers(lo, hi, shape).astype(np.int32)


def nonzero_ints(*shape):
    v = ints(*shape)
    return np.where(v == 0, 3, v).astype(np.int32)


def bools(*shape):
    return _G.random(shape) < 0.5


def op(name: str, inputs, params=None, opset=OPSET, **attrs) -> Case:
    """One node ``y = name(x0, x1, ...)``."""
    names = tuple(f"x{i}" for i in range(len(inputs)))
    node = jq.Node("y", name, names, attrs)
    return Case((node,), tuple(inputs), {"y": params} if params else {}, opset)


def _unary_cases() -> dict[str, Case]:
    special = {
        "log": pos,
        "log1p": pos,
        "rsqrt": pos,
        "sqrt": pos,
        "log2": pos,
        "log10": pos,
        "tan": unit,
        "asin": unit,
        "acos": unit,
        "atanh": unit,
        "acosh": lambda *s: pos(*s) + 1.0,
    }
    names = (
        "relu sigmoid tanh hardswish hardsigmoid relu6 silu neg exp log log1p expm1 erf erfc "
        "rsqrt sqrt abs sign floor ceil round square sin cos tan asin acos atan sinh cosh "
        "asinh acosh atanh trunc log2 log10 mish"
    ).split()
    cases = {n: op(n, [special.get(n, r)(2, 3, 4) * (1 if n in special else 2)]) for n in names}
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], np.float32)
    cases["round-halves"] = op("round", [halves])
    cases["trunc-negative"] = op("trunc", [np.array([-2.7, -0.2, 0.0, 0.3, 1.9], np.float32)])
    cases["not"] = op("not", [bools(2, 3)])
    cases["not-int"] = op("not", [ints(2, 3)])
    cases["is_finite"] = op("is_finite", [np.array([1.0, np.inf, -np.inf, np.nan], np.float32)])
    cases["integer_pow"] = op("integer_pow", [r(2, 3)], y=3)
    cases["integer_pow-negative"] = op("integer_pow", [pos(2, 3)], y=-2)
    cases["hardtanh"] = op("hardtanh", [r(2, 5)], min_val=-0.5, max_val=0.5)
    cases["leaky_relu"] = op("leaky_relu", [r(2, 5)], negative_slope=0.1)
    cases["gelu"] = op("gelu", [r(2, 5)], approximate="none")
    cases["gelu-tanh"] = op("gelu", [r(2, 5)], approximate="tanh")
    cases["gelu-opset13"] = op("gelu", [r(2, 5)], opset=13, approximate="none")
    cases["softmax"] = op("softmax", [r(2, 3, 4)], axis=-1)
    cases["log_softmax"] = op("log_softmax", [r(2, 3, 4)], axis=1)
    cases["elu"] = op("elu", [r(2, 5)], alpha=1.67, scale=1.05, input_scale=1.0)
    cases["softplus"] = op("softplus", [r(2, 5) * 4], beta=2.0, threshold=5.0)
    return cases


def _binary_cases() -> dict[str, Case]:
    cases = {}
    for n in ("add", "sub", "mul", "maximum", "minimum", "hypot", "atan2", "fmod", "rem"):
        cases[n] = op(n, [r(2, 3, 4), r(3, 4)])
    cases["div"] = op("div", [r(2, 3, 4), pos(3, 4)])
    cases["pow"] = op("pow", [pos(2, 3), r(2, 3)])
    cases["sub-reverse-scalar"] = op("sub", [r(2, 3)], scalar=2.0, reverse=True)
    cases["add-int-scalar"] = op("add", [ints(2, 3)], scalar=3)
    cases["mul-int-by-float"] = op("mul", [ints(2, 3)], scalar=0.5)
    cases["add-int-float"] = op("add", [ints(2, 3), r(2, 3)])
    zeros = np.array([[0.0, 1.0, -1.0, 0.0], [2.0, 0.0, -3.0, 0.5]], np.float32)
    cases["atan2-zeros"] = op(
        "atan2", [np.array([[0, 0, 1, -1], [1, 2, 0, -1]], np.float32), zeros]
    )
    cases["rem-int"] = op("rem", [ints(2, 4), nonzero_ints(2, 4)])
    cases["fmod-int"] = op("fmod", [ints(2, 4), nonzero_ints(2, 4)])
    cases["floor_divide"] = op("floor_divide", [r(2, 4) * 4, pos(2, 4)])
    cases["floor_divide-int"] = op("floor_divide", [ints(3, 4, lo=-9, hi=10), nonzero_ints(3, 4)])
    for n in ("eq", "ne", "lt", "le", "gt", "ge"):
        cases[n] = op(n, [ints(3, 4), ints(3, 4)])
    cases["gt-scalar"] = op("gt", [r(3, 4)], scalar=0.0)
    cases["eq-float-int"] = op("eq", [np.array([1.0, 2.5], np.float32), np.array([1, 2], np.int32)])
    for n in ("and", "or", "xor"):
        cases[n] = op(n, [bools(3, 4), bools(3, 4)])
    cases["and-int"] = op("and", [ints(3, 4), bools(3, 4)])
    for n in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        cases[n] = op(n, [ints(3, 4, lo=-9, hi=10), ints(3, 4, lo=0, hi=16)])
        cases[f"{n}-bool"] = op(n, [bools(3, 4), bools(3, 4)])
    nan = np.array([np.nan, 1.0, np.nan, -2.0], np.float32)
    cases["fmax"] = op("fmax", [nan, np.array([3.0, np.nan, np.nan, 1.0], np.float32)])
    cases["fmin"] = op("fmin", [nan, np.array([3.0, np.nan, np.nan, 1.0], np.float32)])
    return cases


def _reduction_cases() -> dict[str, Case]:
    cases = {}
    for n in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        cases[n] = op(n, [pos(2, 3, 4)], axes=(1,))
        cases[f"{n}-opset13"] = op(n, [pos(2, 3, 4)], opset=13, axes=(0, 2))
    cases["reduce_max-bool"] = op("reduce_max", [bools(3, 4)], axes=(1,))
    cases["reduce_sum-bool"] = op("reduce_sum", [bools(3, 4)], axes=(0, 1))
    cases["reduce_sum-no-axes"] = op("reduce_sum", [r(3, 4)], axes=())
    cases["argmax"] = op("argmax", [r(3, 4, 5)], axis=1, index_dtype="int32")
    cases["argmin"] = op("argmin", [r(3, 4, 5)], axis=2, index_dtype="int32")
    cases["mean"] = op("mean", [r(2, 3, 4)], axis=(1,), keepdims=False)
    cases["mean-opset13"] = op("mean", [r(2, 3, 4)], opset=13, axis=(1, 2), keepdims=True)
    cases["cumsum"] = op("cumsum", [r(2, 5)], axis=1)
    cases["cumsum-bool"] = op("cumsum", [bools(2, 5)], axis=1)
    cases["cumprod"] = op("cumprod", [unit(2, 5, 3) + 1.0], axis=1)
    return cases


def _layer_cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    conv = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)
    c["conv"] = op("conv", [r(2, 3, 6, 6)], {"weight": r(4, 3, 3, 3), "bias": r(4)}, **conv)
    c["conv_transpose"] = op(
        "conv_transpose",
        [r(2, 3, 4, 4)],
        {"weight": r(3, 4, 3, 3), "bias": r(4)},
        stride=(2, 2),
        padding=(1, 1),
        output_padding=(1, 1),
        dilation=(1, 1),
        groups=1,
    )
    c["linear"] = op("linear", [r(2, 3, 4)], {"weight": r(5, 4), "bias": r(5)})
    c["matmul"] = op("matmul", [r(2, 3, 4), r(2, 4, 5)])
    c["embedding"] = op("embedding", [ints(2, 3, lo=0, hi=10)], {"weight": r(10, 4)})
    bn = {"weight": r(3), "bias": r(3), "running_mean": r(3), "running_var": pos(3)}
    c["batch_norm"] = op("batch_norm", [r(2, 3, 4, 4)], bn, eps=1e-5)
    ln = {"weight": r(4), "bias": r(4)}
    c["layer_norm"] = op("layer_norm", [r(2, 3, 4)], ln, normalized_shape=(4,), eps=1e-5)
    gn = {"weight": r(4), "bias": r(4)}
    c["group_norm"] = op("group_norm", [r(2, 4, 3, 3) * 3 + 1], gn, num_groups=2, eps=1e-5)
    pool = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    c["max_pool"] = op("max_pool", [r(2, 3, 6, 6)], ceil_mode=False, **pool)
    c["avg_pool"] = op(
        "avg_pool",
        [r(2, 3, 6, 6)],
        kernel_size=(3, 3),
        stride=(2, 2),
        padding=(1, 1),
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    )
    c["adaptive_avg_pool"] = op("adaptive_avg_pool", [r(2, 3, 4, 4)], output_size=(1, 1))
    c["adaptive_avg_pool-2x2"] = op("adaptive_avg_pool", [r(2, 3, 4, 4)], output_size=(2, 2))
    q, k, v = r(2, 3, 4), r(2, 5, 4), r(2, 5, 6)
    c["scaled_dot_product_attention"] = op("scaled_dot_product_attention", [q, k, v])
    c["scaled_dot_product_attention-mask"] = op(
        "scaled_dot_product_attention", [q, k, v, np.tril(np.ones((3, 5), bool))]
    )
    c["scaled_dot_product_attention-causal"] = op(
        "scaled_dot_product_attention", [q, r(2, 3, 4), r(2, 3, 6)], is_causal=True
    )
    c["masked_softmax"] = op(
        "masked_softmax", [r(2, 3, 4), bools(2, 3, 4)], axis=-1, fill=float(np.finfo("f4").min)
    )
    c["einsum"] = op("einsum", [r(2, 3, 4), r(2, 4, 5)], equation="bij, bjk -> bik")
    dn = (((2,), (1,)), ((0,), (0,)))
    c["dot_general"] = op("dot_general", [r(2, 3, 4), r(2, 4, 5)], dimension_numbers=dn)
    dn = (((1,), (0,)), ((), ()))
    c["dot_general-no-batch"] = op("dot_general", [r(3, 4), r(4, 2, 5)], dimension_numbers=dn)
    return c


def _shape_cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    c["constant"] = Case(
        (jq.Node("c", "constant"), jq.Node("y", "add", ("x0", "c"))),
        (r(2, 3),),
        {"c": {"value": r(2, 3)}},
    )
    c["cast"] = op("cast", [r(2, 3) * 5], dtype="int32")
    c["pad"] = op("pad", [r(2, 3, 4)], padding=((1, 2), (0, 1)), value=0.5)
    c["cat"] = op("cat", [r(2, 3), r(2, 2)], axis=1)
    c["reshape"] = op("reshape", [r(2, 3, 4)], shape=(2, -1))
    c["permute"] = op("permute", [r(2, 3, 4)], dims=(0, 2, 1))
    c["expand"] = op("expand", [r(3, 1)], shape=(2, -1, 4))
    c["slice"] = op("slice", [r(2, 5)], axis=1, start=1, stop=5, step=2)
    c["select"] = op("select", [r(2, 5, 3)], axis=1, index=2)
    c["slice_nd"] = op("slice_nd", [r(3, 6)], start=(0, 1), limit=(2, 6), strides=(1, 2))
    i3, i5 = np.array(3, np.int32), np.array(5, np.int32)
    c["dynamic_slice"] = op("dynamic_slice", [r(5, 6), i3, i5], sizes=(2, 3))
    cfg = ((0, 0, 0), (1, -1, 1), (2, 0, 0))
    c["pad_nd"] = op("pad_nd", [r(2, 3, 4)], config=cfg, value=0.25)
    for mode in ("reflect", "edge", "wrap"):
        name = "mode_pad" if mode == "reflect" else f"mode_pad-{mode}"
        c[name] = op("mode_pad", [r(2, 3, 4)], padding=((1, 2), (2, 1)), mode=mode)
    c["full_like"] = op("full_like", [r(2, 3)], value=3.5)
    c["full_like-int"] = op("full_like", [r(2, 3)], value=7, dtype="int32")
    c["arange"] = op("arange", [r(4, 3)], start=2, step=3, axis=0, dtype="int32")
    c["arange-constant"] = op("arange", [], length=5, start=1, step=2, dtype="float32")
    c["flip"] = op("flip", [r(2, 3, 4)], axes=(0, 2))
    c["roll"] = op("roll", [r(2, 3, 4)], shifts=(1, -2), axes=(1, 2))
    c["tile"] = op("tile", [r(2, 3)], reps=(2, 1, 3))
    c["tile-fewer-reps"] = op("tile", [r(2, 3, 2)], reps=(2, 3))
    c["diagonal"] = op("diagonal", [r(2, 4, 5)], offset=1, axis1=1, axis2=2)
    c["diagonal-negative"] = op("diagonal", [r(4, 5, 2)], offset=-1, axis1=0, axis2=1)
    return c


def _index_cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    x = r(4, 5, 6)
    c["index"] = op(
        "index", [x, ints(3, lo=-4, hi=4), ints(3, lo=-6, hi=6)], positions=(True, False, True)
    )
    c["index-adjacent"] = op(
        "index", [x, ints(2, 3, lo=0, hi=5), ints(3, lo=0, hi=6)], positions=(False, True, True)
    )
    c["index-leading"] = op("index", [x, ints(2, lo=0, hi=4)], positions=(True,))
    rows = np.array([2, 0, 3], np.int32)
    c["index_put"] = op("index_put", [r(4, 5), r(3, 5), rows], positions=(True,))
    cols = np.array([1, 3, 1], np.int32)
    c["index_put-accumulate"] = op(
        "index_put", [r(4, 5), r(1), cols], positions=(False, True), accumulate=True
    )
    c["index_put-adjacent"] = op(
        "index_put",
        [r(2, 4, 5), r(2, 3), np.array([0, 3, 1], np.int32), np.array([4, 0, 2], np.int32)],
        positions=(False, True, True),
    )
    c["gather"] = op("gather", [r(3, 4), ints(2, 3, lo=0, hi=3)], axis=0)
    perm = np.stack([_G.permutation(3)[:2] for _ in range(5)], axis=1).astype(np.int32)  # (2, 5)
    c["scatter"] = op("scatter", [r(3, 5), perm, r(3, 5)], axis=0)
    c["scatter-value"] = op("scatter", [r(3, 5), perm], axis=0, value=2.0)
    dup = ints(4, 5, lo=0, hi=3)
    for red in ("sum", "prod", "amax", "amin", "mean"):
        c[f"scatter-{red}"] = op("scatter", [r(3, 5), dup, r(4, 5)], axis=0, reduce=red)
        c[f"scatter-{red}-not-self"] = op(
            "scatter", [r(3, 5), dup, r(4, 5)], axis=0, reduce=red, include_self=False
        )
    c["masked_scatter"] = op("masked_scatter", [r(2, 3, 4), bools(3, 4), r(2, 3, 4)])
    c["sort"] = op("sort", [r(3, 6)], axis=1, descending=True)
    c["sort-indices"] = op("sort", [ints(3, 8, lo=0, hi=3)], axis=1, indices=True)
    c["sort-indices-descending"] = op(
        "sort", [ints(3, 8, lo=0, hi=3)], axis=1, descending=True, indices=True
    )
    c["topk"] = op("topk", [r(3, 6)], k=2, axis=-1)
    c["topk-smallest-indices"] = op("topk", [r(6, 3)], k=3, axis=0, largest=False, indices=True)
    cond = bools(2, 3)
    c["where"] = op("where", [cond, r(2, 3), r(3)])
    c["where-scalar"] = op("where", [cond, r(2, 3)], x_scalar=0.5)
    c["where-int-scalar"] = op("where", [cond, ints(2, 3)], y_scalar=-1)
    c["select_n"] = op("select_n", [cond, r(2, 3), r(2, 3)])
    c["select_n-int"] = op("select_n", [ints(2, 3, lo=0, hi=3), r(2, 3), r(2, 3), r(2, 3)])
    return c


def _sampling_cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    x = r(2, 2, 4, 5)
    c["resize"] = op("resize", [x], sizes=(6, 8), mode="linear", align_corners=False)
    c["resize-down"] = op("resize", [x], sizes=(3, 3), mode="linear", align_corners=False)
    c["resize-align-corners"] = op("resize", [x], sizes=(7, 9), mode="linear", align_corners=True)
    c["resize-nearest"] = op("resize", [x], sizes=(7, 9), mode="nearest")
    c["resize-nearest-exact"] = op("resize", [x], sizes=(7, 9), mode="nearest-exact")
    c["resize-scales"] = op(
        "resize", [x], sizes=(8, 7), mode="linear", align_corners=False, scales=(2.0, 1.5)
    )
    grid = unit(2, 3, 3, 2) * 1.1
    c["grid_sample"] = op(
        "grid_sample", [x, grid], mode="bilinear", padding_mode="zeros", align_corners=False
    )
    c["grid_sample-nearest-border"] = op(
        "grid_sample", [x, grid * 1.2], mode="nearest", padding_mode="border", align_corners=True
    )
    c["col2im"] = op(
        "col2im",
        [r(1, 8, 12)],
        output_size=(4, 5),
        kernel_size=(2, 2),
        dilation=(1, 1),
        padding=(0, 0),
        stride=(1, 1),
    )
    idx, offsets = ints(7, lo=0, hi=6), np.array([0, 2, 2, 5], np.int32)
    bag = dict(include_last_offset=False, padding_idx=None)
    c["embedding_bag"] = op("embedding_bag", [idx, offsets], {"weight": r(6, 3)}, mode="sum", **bag)
    c["embedding_bag-mean"] = op(
        "embedding_bag", [idx, offsets], {"weight": r(6, 3)}, mode="mean", **bag
    )
    c["embedding_bag-weights"] = op(
        "embedding_bag", [idx, offsets, r(7)], {"weight": r(6, 3)}, mode="sum", **bag
    )
    c["embedding_bag-max-padding"] = op(
        "embedding_bag",
        [idx, offsets],
        {"weight": r(6, 3)},
        mode="max",
        include_last_offset=True,
        padding_idx=int(idx[0]),
    )
    win = dict(
        window=(1, 3, 3, 1),
        strides=(1, 2, 2, 1),
        padding=((0, 0), (1, 1), (1, 1), (0, 0)),
        base_dilation=(1, 1, 1, 1),
        window_dilation=(1, 1, 1, 1),
    )
    c["reduce_window"] = op("reduce_window", [r(2, 6, 6, 3)], computation="max", **win)
    c["reduce_window-sum"] = op("reduce_window", [r(2, 6, 6, 3)], computation="sum", **win)
    return c


CASES: dict[str, Case] = {
    **_unary_cases(),
    **_binary_cases(),
    **_reduction_cases(),
    **_layer_cases(),
    **_shape_cases(),
    **_index_cases(),
    **_sampling_cases(),
}


def _graph(case: Case) -> jq.Graph:
    inputs = tuple(f"x{i}" for i in range(len(case.inputs)))
    return jq.Graph(inputs, case.nodes, (case.nodes[-1].name,))


def _write(case: Case, opset: int | None = None):
    options = OnnxOptions(mode="float", opset=case.opset if opset is None else opset)
    return to_onnx(_graph(case), case.params, [], list(case.inputs), options)


def _ort(model, inputs) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    return sess.run(None, feed)[0]


@pytest.fixture(scope="module")
def jq_outputs() -> dict[str, np.ndarray]:
    """jq's output of every case, from one jitted program (compiled once at XLA's lowest
    optimization level: 4 s of CPU against 7 s at the default level, or 25 s for the cases
    run eagerly, one compiled program per primitive; the ops and their dtypes are the same)."""

    def outputs(inputs):
        return {n: apply(_graph(c), c.params, *inputs[n]) for n, c in CASES.items()}

    args = {n: c.inputs for n, c in CASES.items()}
    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    compiled = jax.jit(outputs).lower(args).compile(fast)
    return {n: np.asarray(v) for n, v in compiled(args).items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_writes_and_runs_in_onnxruntime(name, jq_outputs):
    case = CASES[name]
    want = jq_outputs[name]
    got = _ort(_write(case), case.inputs)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if np.issubdtype(want.dtype, np.floating):
        scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)
    else:
        np.testing.assert_array_equal(got, want)


def test_every_op_is_written_or_refused_with_a_reason():
    ops = set(registered_ops()) - {"fake_quant"}
    assert ops == set(ONNX_OPS) | set(ONNX_REFUSED)
    assert not set(ONNX_OPS) & set(ONNX_REFUSED)
    assert all(len(why) > 20 for why in ONNX_REFUSED.values())


def test_every_written_op_has_a_case_named_after_it():
    """The coverage page names ``test_op_writes_and_runs_in_onnxruntime[<op>]`` per op."""
    assert set(ONNX_OPS) <= set(CASES)
    for name in ONNX_OPS:
        assert name in {n.op for n in CASES[name].nodes}


def test_a_refused_op_is_named_with_its_reason():
    graph = jq.Graph(("x",), (jq.Node("hook", "ptq_perturb", ("x",)),), ("hook",))
    with pytest.raises(NotImplementedError, match=r"hook \(ptq_perturb\): a calibration-time"):
        to_onnx(graph, {}, [], [r(2, 3)], OnnxOptions(mode="float", opset=OPSET))


def test_an_op_newer_than_the_opset_is_refused_naming_both():
    case = CASES["col2im"]
    assert ONNX_MIN_OPSET["col2im"] == 18
    assert unsupported_ops(_graph(case), 17) == ["y (col2im): needs opset 18, asked 17"]
    with pytest.raises(NotImplementedError, match=r"y \(col2im\): needs opset 18, asked 17"):
        _write(case, opset=17)


@pytest.mark.parametrize(
    "name, opset, message",
    [
        ("not-int", 17, "BitwiseNot"),
        ("mode_pad-wrap", 18, "Pad mode 'wrap' needs opset 19"),
    ],
)
def test_attributes_onnx_cannot_express_at_the_opset_are_refused_naming_the_node(
    name, opset, message
):
    with pytest.raises(NotImplementedError, match=rf"node 'y' \(\w+\): no ONNX form: .*{message}"):
        _write(CASES[name], opset=opset)


def test_reduce_window_with_base_dilation_is_refused_naming_the_node():
    case = CASES["reduce_window"]
    node = case.nodes[0].replace(attrs={**case.nodes[0].attrs_dict, "base_dilation": (1, 2, 2, 1)})
    with pytest.raises(NotImplementedError, match=r"node 'y' \(reduce_window\).*base dilation"):
        to_onnx(
            jq.Graph(("x0",), (node,), ("y",)),
            {},
            [],
            list(case.inputs),
            OnnxOptions(mode="float", opset=OPSET),
        )
