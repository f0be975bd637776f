"""Converters of the ONNX ops that compute: convolutions, linear layers, normalization,
activations, pooling, elementwise arithmetic."""

from __future__ import annotations

import math

import numpy as np

from ._context import Context, OnnxNode, Tensor, Value
from ._errors import Unconvertible
from ._table import register_converter


def weight(v: Value | None, what: str) -> np.ndarray:
    """``v`` as a constant; a runtime value raises ``Unconvertible``."""
    if isinstance(v, Tensor):
        raise Unconvertible(f"{what} is computed at run time; jq needs it as a constant")
    return np.asarray(v, np.float32)


def data(v: Value | None, what: str = "the input") -> Tensor:
    if not isinstance(v, Tensor):
        raise Unconvertible(f"{what} must be a runtime tensor")
    return v


def _window(node: OnnxNode, x: Tensor, kernel: list[int]) -> dict:
    """stride, dilation and ``(lo, hi)`` padding per spatial dim, ``auto_pad`` resolved."""
    nd = len(kernel)
    a = node.attrs
    stride = [int(s) for s in a.get("strides", [1] * nd)]
    dilation = [int(d) for d in a.get("dilations", [1] * nd)]
    pads = [int(p) for p in a.get("pads", [0] * 2 * nd)]
    padding = [(pads[i], pads[i + nd]) for i in range(nd)]
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        padding = []
        for n, k, s, d in zip(x.shape[2:], kernel, stride, dilation, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small = total // 2
            padding.append(
                (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
            )
    elif auto == "VALID":
        padding = [(0, 0)] * nd
    return {"stride": tuple(stride), "dilation": tuple(dilation), "padding": tuple(padding)}


def _kernel_params(w: np.ndarray, b: Value | None) -> dict[str, np.ndarray]:
    params = {"weight": w}
    if b is not None:
        params["bias"] = weight(b, "the bias").reshape(-1)
    return params


@register_converter("Conv")
def _conv(ctx: Context, node: OnnxNode, x, w, b=None):
    x, w = data(x), weight(w, "the convolution weight")
    attrs = _window(node, x, list(w.shape[2:]))
    attrs["groups"] = int(node.attrs.get("group", 1))
    return ctx.emit("conv", [x], attrs, params=_kernel_params(w, b))


@register_converter("ConvTranspose")
def _conv_transpose(ctx: Context, node: OnnxNode, x, w, b=None):
    x, w = data(x), weight(w, "the transposed convolution weight")
    if "output_shape" in node.attrs:
        raise Unconvertible("ConvTranspose with output_shape (give pads and output_padding)")
    win = _window(node, x, list(w.shape[2:]))
    if any(lo != hi for lo, hi in win["padding"]):
        raise Unconvertible(f"ConvTranspose with asymmetric pads {win['padding']}")
    nd = w.ndim - 2
    attrs = {
        "stride": win["stride"],
        "dilation": win["dilation"],
        "padding": tuple(lo for lo, _ in win["padding"]),
        "output_padding": tuple(int(p) for p in node.attrs.get("output_padding", [0] * nd)),
        "groups": int(node.attrs.get("group", 1)),
    }
    return ctx.emit("conv_transpose", [x], attrs, params=_kernel_params(w, b))


@register_converter("Gemm")
def _gemm(ctx: Context, node: OnnxNode, a, b, c=None):
    a = data(a)
    if node.attrs.get("transA", 0):
        a = ctx.emit(
            "permute",
            [a],
            {"dims": (1, 0)},
            batch=None if a.batch is None else 1 - a.batch,
            suffix="transA",
        )
    w = weight(b, "Gemm's B")
    w = (w if node.attrs.get("transB", 0) else w.T) * np.float32(node.attrs.get("alpha", 1.0))
    params = {"weight": np.ascontiguousarray(w)}
    if c is not None:
        bias = weight(c, "Gemm's C") * np.float32(node.attrs.get("beta", 1.0))
        if bias.size not in (1, w.shape[0]) or (bias.ndim == 2 and bias.shape[0] != 1):
            raise Unconvertible(f"Gemm with C of shape {bias.shape} (a bias per output expected)")
        params["bias"] = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).copy()
    return ctx.emit("linear", [a], params=params)


@register_converter("MatMul")
def _matmul(ctx: Context, node: OnnxNode, a, b):
    if isinstance(a, Tensor) and not isinstance(b, Tensor) and np.ndim(b) == 2 and a.shape:
        return ctx.emit("linear", [a], params={"weight": np.ascontiguousarray(weight(b, "B").T)})
    return ctx.emit("matmul", [a, b])


# --- normalization ------------------------------------------------------------------------


@register_converter("BatchNormalization")
def _batch_norm(ctx: Context, node: OnnxNode, x, scale, bias, mean, var):
    if node.attrs.get("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
        raise Unconvertible("BatchNormalization in training mode; export the model in eval mode")
    params = {
        "weight": weight(scale, "scale"),
        "bias": weight(bias, "B"),
        "running_mean": weight(mean, "input_mean"),
        "running_var": weight(var, "input_var"),
    }
    return ctx.emit(
        "batch_norm", [data(x)], {"eps": float(node.attrs.get("epsilon", 1e-5))}, params=params
    )


@register_converter("LayerNormalization")
def _layer_norm(ctx: Context, node: OnnxNode, x, scale, bias=None):
    x = data(x)
    if len([o for o in node.outputs if o]) > 1:
        raise Unconvertible("LayerNormalization's Mean / InvStdDev outputs are not supported")
    axis = int(node.attrs.get("axis", -1)) % len(x.shape)
    shape = x.shape[axis:]
    params = {"weight": np.broadcast_to(weight(scale, "Scale"), shape).copy()}
    if bias is not None:
        params["bias"] = np.broadcast_to(weight(bias, "B"), shape).copy()
    attrs = {"normalized_shape": tuple(shape), "eps": float(node.attrs.get("epsilon", 1e-5))}
    return ctx.emit("layer_norm", [x], attrs, params=params)


@register_converter("InstanceNormalization")
def _instance_norm(ctx: Context, node: OnnxNode, x, scale, bias):
    x = data(x)
    params = {"weight": weight(scale, "scale"), "bias": weight(bias, "B")}
    attrs = {"num_groups": x.shape[1], "eps": float(node.attrs.get("epsilon", 1e-5))}
    return ctx.emit("group_norm", [x], attrs, params=params)


# --- activations --------------------------------------------------------------------------

_UNARY = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "HardSwish": "hardswish",
    "Erf": "erf",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Neg": "neg",
    "Abs": "abs",
    "Floor": "floor",
    "Ceil": "ceil",
    "Round": "round",
    "Sin": "sin",
    "Cos": "cos",
    "Softplus": "softplus",
    "Mish": "mish",
    "Not": "not",
}


def _unary(op: str):
    def convert(ctx: Context, node: OnnxNode, x):
        return ctx.emit(op, [data(x)])

    return convert


for _onnx_op, _jq_op in _UNARY.items():
    register_converter(_onnx_op)(_unary(_jq_op))


@register_converter("Identity", "Dropout")
def _identity(ctx: Context, node: OnnxNode, x, *rest):
    if len([o for o in node.outputs if o]) > 1:
        raise Unconvertible(f"{node.op_type}'s mask output is not supported")
    return x


@register_converter("Clip")
def _clip(ctx: Context, node: OnnxNode, x, lo=None, hi=None):
    lo_v = -math.inf if lo is None else float(weight(lo, "min"))
    hi_v = math.inf if hi is None else float(weight(hi, "max"))
    if lo_v == 0.0 and hi_v == 6.0:
        return ctx.emit("relu6", [data(x)])
    if lo_v == 0.0 and hi_v == math.inf:
        return ctx.emit("relu", [data(x)])
    return ctx.emit("hardtanh", [data(x)], {"min_val": lo_v, "max_val": hi_v})


@register_converter("HardSigmoid")
def _hard_sigmoid(ctx: Context, node: OnnxNode, x):
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:  # torch's hardsigmoid
        return ctx.emit("hardsigmoid", [data(x)])
    y = ctx.emit("mul", [data(x)], {"scalar": alpha}, suffix="alpha")
    y = ctx.emit("add", [y], {"scalar": beta}, suffix="beta")
    return ctx.emit("hardtanh", [y], {"min_val": 0.0, "max_val": 1.0})


@register_converter("LeakyRelu")
def _leaky_relu(ctx: Context, node: OnnxNode, x):
    return ctx.emit(
        "leaky_relu", [data(x)], {"negative_slope": float(node.attrs.get("alpha", 0.01))}
    )


@register_converter("Elu")
def _elu(ctx: Context, node: OnnxNode, x):
    return ctx.emit("elu", [data(x)], {"alpha": float(node.attrs.get("alpha", 1.0))})


@register_converter("Gelu")
def _gelu(ctx: Context, node: OnnxNode, x):
    approx = node.attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return ctx.emit("gelu", [data(x)], {"approximate": approx})


def _softmax(op: str):
    def convert(ctx: Context, node: OnnxNode, x):
        x = data(x)
        axis = int(node.attrs.get("axis", -1)) % len(x.shape)
        return ctx.emit(op, [x], {"axis": axis})

    return convert


register_converter("Softmax")(_softmax("softmax"))
register_converter("LogSoftmax")(_softmax("log_softmax"))


# --- pooling ------------------------------------------------------------------------------


@register_converter("MaxPool")
def _max_pool(ctx: Context, node: OnnxNode, x):
    x = data(x)
    if len([o for o in node.outputs if o]) > 1:
        raise Unconvertible("MaxPool's Indices output is not supported")
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    win = _window(node, x, kernel)
    pads = win["padding"]
    if any(lo != hi for lo, hi in pads):  # pad with -inf first, then pool unpadded
        x = ctx.emit("pad", [x], {"padding": pads, "value": -math.inf}, suffix="pad")
        pads = tuple((0, 0) for _ in pads)
    attrs = {
        "kernel_size": tuple(kernel),
        "stride": win["stride"],
        "padding": tuple(lo for lo, _ in pads),
        "dilation": win["dilation"],
        "ceil_mode": bool(node.attrs.get("ceil_mode", 0)),
    }
    return ctx.emit("max_pool", [x], attrs)


@register_converter("AveragePool")
def _avg_pool(ctx: Context, node: OnnxNode, x):
    x = data(x)
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    win = _window(node, x, kernel)
    if any(lo != hi for lo, hi in win["padding"]) or any(d != 1 for d in win["dilation"]):
        raise Unconvertible(f"AveragePool with asymmetric pads {win['padding']} or dilations")
    attrs = {
        "kernel_size": tuple(kernel),
        "stride": win["stride"],
        "padding": tuple(lo for lo, _ in win["padding"]),
        "ceil_mode": bool(node.attrs.get("ceil_mode", 0)),
        "count_include_pad": bool(node.attrs.get("count_include_pad", 0)),
        "divisor_override": None,
    }
    return ctx.emit("avg_pool", [x], attrs)


@register_converter("GlobalAveragePool")
def _global_avg_pool(ctx: Context, node: OnnxNode, x):
    x = data(x)
    return ctx.emit("adaptive_avg_pool", [x], {"output_size": (1,) * (len(x.shape) - 2)})


@register_converter("GlobalMaxPool")
def _global_max_pool(ctx: Context, node: OnnxNode, x):
    x = data(x)
    axes = tuple(range(2, len(x.shape)))
    y = ctx.emit("reduce_max", [x], {"axes": axes}, batch=x.batch)
    from ._ops_shape import reshape_to

    return reshape_to(ctx, y, x.shape[:2] + (1,) * len(axes), suffix="keepdims")
