"""jq op -> ONNX nodes, one emitter per op, in a table filled by :func:`onnx_op`.

An emitter is ``fn(b, node, xs, params) -> value name``: ``b`` the :class:`Builder`, ``node``
the jq :class:`Node`, ``xs`` the ONNX names of its inputs, ``params`` its params as NumPy
arrays. Weights go through ``b.weight`` (float, or int8 with DequantizeLinear in INT8 mode).
Layouts match: jq follows PyTorch (NCHW, conv weights ``(out, in/groups, *k)``), as ONNX does.
This module holds the PyTorch-shaped core; ``onnx_ops_math.py`` (elementwise, comparisons,
reductions) and ``onnx_ops_index.py`` (gathers, scatters, sorting, padding, resizing) add to
the same table; ``ONNX_REFUSED`` names the ops the writer refuses, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..graph.graph import Node
from .onnx_values import operands

Emitter = Callable[..., str]
ONNX_OPS: dict[str, Emitter] = {}
ONNX_MIN_OPSET: dict[str, int] = {}  # jq op -> the lowest ai.onnx opset its emitter writes
# jq ops the writer refuses, with the reason its error gives.
ONNX_REFUSED: dict[str, str] = {
    name: "a calibration-time hook that jq's PTQ inserts and removes; never in a model to write"
    for name in ("ptq_gate", "ptq_perturb", "ptq_hessian_probe", "ptq_hessian_conv")
}
# What a written op's emitter still refuses (NotImplementedError naming the node).
ONNX_LIMITS: dict[str, str] = {
    "avg_pool": "not with divisor_override",
    "adaptive_avg_pool": "global, or output sizes that divide the input's",
    "not": "integers from opset 18 (BitwiseNot)",
    "bitwise_and": "integers from opset 18 (BitwiseAnd)",
    "bitwise_or": "integers from opset 18 (BitwiseOr)",
    "bitwise_xor": "integers from opset 18 (BitwiseXor)",
    "mode_pad": "wrap from opset 19",
    "reduce_window": "float inputs pooled over 1 to 3 axes, no base dilation; a sum with "
    "window dilation from opset 19",
    "cumprod": "a masked product: O(n^2) in the axis length",
}
BASE_OPSET = 13  # jq.exporter's lowest opset (per-axis QuantizeLinear / DequantizeLinear)


def onnx_op(*names: str, opset: int = BASE_OPSET) -> Callable[[Emitter], Emitter]:
    """Decorator registering an emitter for jq ops ``names``, written from ``opset`` on."""

    def decorate(fn: Emitter) -> Emitter:
        for n in names:
            ONNX_OPS[n] = fn
            ONNX_MIN_OPSET[n] = opset
        return fn

    return decorate


def _i64(b, values, base: str) -> str:
    return b.const(np.asarray(values, np.int64), base)


def _f32(b, value, base: str) -> str:
    return b.const(np.asarray(value, np.float32), base)


def _pads(padding) -> list[int]:
    """jq's ``((lo, hi), ...)`` per spatial axis as ONNX's ``[lo..., hi...]``."""
    return [int(p[0]) for p in padding] + [int(p[1]) for p in padding]


@onnx_op("constant")
def _constant(b, node: Node, xs, params):
    return b.const(params["value"], node.name)


@onnx_op("conv")
def _conv(b, node: Node, xs, params):
    a = node.attrs_dict
    inputs = [xs[0], b.weight(node, params)] + b.bias(node, params, xs[0])
    return b.add(
        "Conv",
        inputs,
        node.name,
        strides=list(a["stride"]),
        pads=_pads(a["padding"]),
        dilations=list(a["dilation"]),
        group=int(a["groups"]),
    )


@onnx_op("conv_transpose")
def _conv_transpose(b, node: Node, xs, params):
    a = node.attrs_dict
    pads = [int(p) for p in a["padding"]] * 2
    return b.add(
        "ConvTranspose",
        [xs[0], b.weight(node, params)] + b.bias(node, params, None),
        node.name,
        strides=list(a["stride"]),
        pads=pads,
        output_padding=list(a["output_padding"]),
        dilations=list(a["dilation"]),
        group=int(a["groups"]),
    )


@onnx_op("linear")
def _linear(b, node: Node, xs, params):
    w = b.weight(node, params)
    if node.shape is not None and len(node.shape) == 2:  # Gemm: what QGemm fuses from
        return b.add("Gemm", [xs[0], w] + b.bias(node, params, xs[0]), node.name, transB=1)
    wt = b.add("Transpose", [w], f"{node.name}.wT", perm=[1, 0])
    y = b.add("MatMul", [xs[0], wt], f"{node.name}.matmul")
    bias = b.bias(node, params, None)
    return b.add("Add", [y, bias[0]], node.name) if bias else y


@onnx_op("matmul")
def _matmul(b, node: Node, xs, params):
    return b.add("MatMul", xs, node.name)


@onnx_op("embedding")
def _embedding(b, node: Node, xs, params):
    return b.add("Gather", [b.const(params["weight"], f"{node.name}.weight"), xs[0]], node.name)


def _ones_like(b, params, key: str, like: str, base: str) -> str:
    v = params.get(key)
    if v is None:
        v = np.ones_like(np.asarray(params[like]), np.float32) if key == "weight" else None
    if v is None:
        v = np.zeros_like(np.asarray(params[like]), np.float32)
    return _f32(b, v, base)


@onnx_op("batch_norm")
def _batch_norm(b, node: Node, xs, params):
    n = node.name
    inputs = [
        xs[0],
        _ones_like(b, params, "weight", "running_mean", f"{n}.weight"),
        _ones_like(b, params, "bias", "running_mean", f"{n}.bias"),
        _f32(b, params["running_mean"], f"{n}.mean"),
        _f32(b, params["running_var"], f"{n}.var"),
    ]
    return b.add("BatchNormalization", inputs, n, epsilon=float(node.attr("eps")))


@onnx_op("layer_norm")
def _layer_norm(b, node: Node, xs, params):
    shape = tuple(node.attr("normalized_shape"))
    w = params.get("weight", np.ones(shape, np.float32))
    inputs = [xs[0], _f32(b, w, f"{node.name}.weight")]
    if params.get("bias") is not None:
        inputs.append(_f32(b, params["bias"], f"{node.name}.bias"))
    eps = float(node.attr("eps"))
    return b.add("LayerNormalization", inputs, node.name, axis=-len(shape), epsilon=eps)


def _unary(op_type: str, **attrs: Any) -> Emitter:
    def emit(b, node: Node, xs, params):
        return b.add(op_type, xs[:1], node.name, **attrs)

    return emit


for _jq, _onnx in (("relu", "Relu"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh")):
    onnx_op(_jq)(_unary(_onnx))
onnx_op("hardswish")(_unary("HardSwish"))
onnx_op("hardsigmoid")(_unary("HardSigmoid", alpha=1.0 / 6, beta=0.5))
del _jq, _onnx


def _clip(b, node: Node, x: str, lo: float, hi: float) -> str:
    return b.add(
        "Clip", [x, _f32(b, lo, f"{node.name}.min"), _f32(b, hi, f"{node.name}.max")], node.name
    )


@onnx_op("relu6")
def _relu6(b, node: Node, xs, params):
    return _clip(b, node, xs[0], 0.0, 6.0)


@onnx_op("hardtanh")
def _hardtanh(b, node: Node, xs, params):
    return _clip(b, node, xs[0], node.attr("min_val"), node.attr("max_val"))


@onnx_op("leaky_relu")
def _leaky_relu(b, node: Node, xs, params):
    return b.add("LeakyRelu", xs, node.name, alpha=float(node.attr("negative_slope")))


@onnx_op("silu")
def _silu(b, node: Node, xs, params):
    return b.add("Mul", [xs[0], b.add("Sigmoid", xs, f"{node.name}.sigmoid")], node.name)


@onnx_op("gelu")
def _gelu(b, node: Node, xs, params):
    approximate = node.attr("approximate", "none")
    if b.opset >= 20:
        return b.add("Gelu", xs, node.name, approximate=approximate)
    n, x = node.name, xs[0]
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = b.add("Mul", [b.add("Mul", [x, x], f"{n}.x2"), x], f"{n}.x3")
        inner = b.add("Add", [x, b.add("Mul", [cube, _f32(b, 0.044715, f"{n}.c")], n)], n)
        arg = b.add("Mul", [inner, _f32(b, math.sqrt(2 / math.pi), f"{n}.k")], n)
        t = b.add("Tanh", [arg], f"{n}.tanh")
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        t = b.add("Erf", [b.add("Div", [x, _f32(b, math.sqrt(2), f"{n}.sqrt2")], n)], n)
    one = b.add("Add", [t, _f32(b, 1.0, f"{n}.one")], n)
    return b.add("Mul", [b.add("Mul", [x, one], n), _f32(b, 0.5, f"{n}.half")], n)


@onnx_op("softmax")
def _softmax(b, node: Node, xs, params):
    return b.add("Softmax", xs, node.name, axis=int(node.attr("axis")))


@onnx_op("max_pool")
def _max_pool(b, node: Node, xs, params):
    a = node.attrs_dict
    return b.add(
        "MaxPool",
        xs,
        node.name,
        kernel_shape=list(a["kernel_size"]),
        strides=list(a["stride"]),
        pads=[int(p) for p in a["padding"]] * 2,
        dilations=list(a["dilation"]),
        ceil_mode=int(a["ceil_mode"]),
    )


@onnx_op("avg_pool")
def _avg_pool(b, node: Node, xs, params):
    a = node.attrs_dict
    if a.get("divisor_override"):
        raise NotImplementedError("avg_pool with divisor_override has no ONNX equivalent")
    return b.add(
        "AveragePool",
        xs,
        node.name,
        kernel_shape=list(a["kernel_size"]),
        strides=list(a["stride"]),
        pads=[int(p) for p in a["padding"]] * 2,
        ceil_mode=int(a["ceil_mode"]),
        count_include_pad=int(a["count_include_pad"]),
    )


@onnx_op("adaptive_avg_pool")
def _adaptive_avg_pool(b, node: Node, xs, params):
    out = tuple(node.attr("output_size"))
    if all(o == 1 for o in out):
        return b.add("GlobalAveragePool", xs, node.name)
    shape = b.shape_of(node.inputs[0])
    spatial = shape[-len(out) :] if shape else None
    if spatial is None or any(s % o for s, o in zip(spatial, out, strict=True)):
        raise NotImplementedError(
            f"adaptive_avg_pool to {out} from {spatial}: ONNX has it only as a global pool or "
            "for sizes that divide evenly"
        )
    k = [s // o for s, o in zip(spatial, out, strict=True)]
    return b.add("AveragePool", xs, node.name, kernel_shape=k, strides=k)


def _binary(op_type: str) -> Emitter:
    def emit(b, node: Node, xs, params):
        return b.add(op_type, operands(b, node, xs), node.name)

    return emit


for _jq, _onnx in (("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("div", "Div")):
    onnx_op(_jq)(_binary(_onnx))
del _jq, _onnx


@onnx_op("pad")
def _pad(b, node: Node, xs, params):
    pairs = node.attr("padding")
    rank = b.rank_of(node.inputs[0])
    lead = [(0, 0)] * (rank - len(pairs))
    full = lead + [tuple(p) for p in pairs]
    pads = [p[0] for p in full] + [p[1] for p in full]
    value = _f32(b, node.attr("value", 0.0), f"{node.name}.value")
    return b.add("Pad", [xs[0], _i64(b, pads, f"{node.name}.pads"), value], node.name)


@onnx_op("cat")
def _cat(b, node: Node, xs, params):
    return b.add("Concat", xs, node.name, axis=int(node.attr("axis")))


@onnx_op("reshape")
def _reshape(b, node: Node, xs, params):
    return b.add("Reshape", [xs[0], _i64(b, node.attr("shape"), f"{node.name}.shape")], node.name)


@onnx_op("permute")
def _permute(b, node: Node, xs, params):
    return b.add("Transpose", xs, node.name, perm=list(node.attr("dims")))


@onnx_op("expand")
def _expand(b, node: Node, xs, params):
    # -1 becomes 1, which ONNX's broadcasting Expand keeps at x's size; like_axes read a size
    # from another value at run time (a dynamic batch).
    shape = [1 if d == -1 else int(d) for d in node.attr("shape")]
    like_axes = dict(node.attr("like_axes", ()))
    if not like_axes:
        return b.add("Expand", [xs[0], _i64(b, shape, f"{node.name}.shape")], node.name)
    parts = []
    for i, d in enumerate(shape):
        if i in like_axes:
            j = like_axes[i]
            parts.append(b.add("Shape", [xs[1]], f"{node.name}.size{i}", start=j, end=j + 1))
        else:
            parts.append(_i64(b, [d], f"{node.name}.size{i}"))
    target = b.add("Concat", parts, f"{node.name}.shape", axis=0)
    return b.add("Expand", [xs[0], target], node.name)


@onnx_op("slice")
def _slice(b, node: Node, xs, params):
    a, n = node.attrs_dict, node.name
    inputs = [
        xs[0],
        _i64(b, [a["start"]], f"{n}.starts"),
        _i64(b, [a["stop"]], f"{n}.ends"),
        _i64(b, [a["axis"]], f"{n}.axes"),
        _i64(b, [a["step"]], f"{n}.steps"),
    ]
    return b.add("Slice", inputs, n)


@onnx_op("select")
def _select(b, node: Node, xs, params):
    index = _i64(b, node.attr("index"), f"{node.name}.index")
    return b.add("Gather", [xs[0], index], node.name, axis=int(node.attr("axis")))


@onnx_op("mean")
def _mean(b, node: Node, xs, params):
    axes, keep = list(node.attr("axis")), int(node.attr("keepdims"))
    if b.opset >= 18:
        return b.add(
            "ReduceMean", [xs[0], _i64(b, axes, f"{node.name}.axes")], node.name, keepdims=keep
        )
    return b.add("ReduceMean", xs, node.name, axes=axes, keepdims=keep)


@onnx_op("cast")
def _cast(b, node: Node, xs, params):
    to = b.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(node.attr("dtype")))
    return b.add("Cast", xs, node.name, to=int(to))


@onnx_op("scaled_dot_product_attention")
def _sdpa(b, node: Node, xs, params):
    """softmax(q k^T * scale + mask) v, with ONNX's MatMul/Softmax (opset < 23 has no
    Attention op)."""
    n = node.name
    q, k, v = xs[:3]
    e = b.shape_of(node.inputs[0])[-1]
    scale = node.attr("scale", None)
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)
    rank = b.rank_of(node.inputs[1])
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    kt = b.regrid_value(k, b.add("Transpose", [k], f"{n}.kT", perm=perm), f"{n}.kT")
    s = b.add("Mul", [b.add("MatMul", [q, kt], f"{n}.qk"), _f32(b, scale, f"{n}.scale")], n)
    if node.attr("is_causal", False):
        lq, lk = b.shape_of(node.inputs[0])[-2], b.shape_of(node.inputs[1])[-2]
        mask = np.where(np.tril(np.ones((lq, lk), bool)), 0.0, -np.inf).astype(np.float32)
        s = b.add("Add", [s, _f32(b, mask, f"{n}.causal")], n)
    if len(xs) > 3:
        if b.dtype_of(node.inputs[3]) == "bool":
            neg = _f32(b, -np.inf, f"{n}.neg")
            s = b.add("Where", [xs[3], s, neg], n)
        else:
            s = b.add("Add", [s, xs[3]], n)
    p = b.add("Softmax", [s], f"{n}.softmax", axis=-1)
    return b.add("MatMul", [p, v], n)
