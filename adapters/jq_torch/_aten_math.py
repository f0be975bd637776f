"""ATen converters for the rest of torch's elementwise math, activations and reductions:
Core ATen ops (``acos`` ... ``trunc``, ``fmod``, ``var``, ``prod``, ``any``, ``max.dim``,
``argmax``, ``_log_softmax``, ``elu``) and the non-core aliases ``torch.export`` keeps
(``clip``, ``pow.Tensor_Tensor``, ``true_divide``, ``div`` with a rounding mode, ``mish``,
``softplus``, ``std``, ``logsumexp``, ...). Their coverage is tabled in ``_coverage.py``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._aten import _axis, _binary, _cast, _scalar, _unary
from ._aten_index import _dims, _keepdims
from ._convert import ConvertContext, Unconvertible, register_converter

aten = torch.ops.aten


def _dtype_of(arg: Any) -> torch.dtype:
    return arg.meta["val"].dtype if isinstance(arg, torch.fx.Node) else torch.float32


def _is_float(arg: Any) -> bool:
    return _dtype_of(arg).is_floating_point


# --- elementwise ---------------------------------------------------------------------------

for _target, _op in (
    (aten.acos, "acos"),
    (aten.acosh, "acosh"),
    (aten.asin, "asin"),
    (aten.asinh, "asinh"),
    (aten.atan, "atan"),
    (aten.atanh, "atanh"),
    (aten.cosh, "cosh"),
    (aten.sinh, "sinh"),
    (aten.tan, "tan"),
    (aten.trunc, "trunc"),
    (aten.fix, "trunc"),
    (aten.log2, "log2"),
    (aten.log10, "log10"),
    (aten.log1p, "log1p"),
    (aten.expm1, "expm1"),
    (aten.erfc, "erfc"),
    (aten.floor, "floor"),
    (aten.ceil, "ceil"),
    (aten.round.default, "round"),
    (aten.sign, "sign"),
    (aten.sgn, "sign"),
    (aten.square, "square"),
    (aten.mish, "mish"),
):
    register_converter(_target)(_unary(_op))
for _target, _op in (
    (aten.atan2, "atan2"),
    (aten.fmod, "fmod"),
    (aten.remainder, "rem"),
    (aten.floor_divide, "floor_divide"),
    (aten.true_divide, "div"),
    (aten.logical_xor, "xor"),
    (aten.max.other, "maximum"),
    (aten.min.other, "minimum"),
    (aten.fmax, "fmax"),
    (aten.fmin, "fmin"),
    (aten.hypot, "hypot"),
):
    register_converter(_target)(_binary(_op))
del _target, _op


@register_converter(aten.pow.Tensor_Tensor, aten.pow.Scalar)
def _pow(ctx, self, exponent):
    """``x ** y`` of two tensors, or of a number and a tensor (``2 ** x``)."""
    return _binary("pow")(ctx, self, exponent)


@register_converter(aten.round.decimals)
def _round_decimals(ctx, self, decimals=0):
    scale = 10.0 ** int(decimals)
    x = ctx.emit("mul", [ctx.value(self)], {"scalar": scale, "reverse": False})
    return ctx.emit("div", [ctx.emit("round", [x])], {"scalar": scale, "reverse": False})


@register_converter(aten.frac)
def _frac(ctx, self):
    x = ctx.value(self)
    return ctx.emit("sub", [x, ctx.emit("trunc", [x])])


@register_converter(aten.exp2)
def _exp2(ctx, self):
    return ctx.emit("pow", [ctx.value(self)], {"scalar": 2.0, "reverse": True})


@register_converter(aten.div.Tensor_mode, aten.div.Scalar_mode)
def _div_mode(ctx, self, other, rounding_mode=None):
    if rounding_mode is None:
        return _binary("div")(ctx, self, other)
    if not _is_float(ctx._node()):
        if rounding_mode == "floor":
            return _binary("floor_divide")(ctx, self, other)
        raise Unconvertible("integer division with rounding_mode='trunc'")
    q = _binary("div")(ctx, self, other)
    return ctx.emit("floor" if rounding_mode == "floor" else "trunc", [q])


def _bitwise(logical: str, bitwise: str):
    """Logical ops on booleans, bitwise ones on integers (torch's ``&``, ``|``, ``^``)."""

    def convert(ctx, self, other):
        dtype = ctx._node().meta["val"].dtype
        return _binary(logical if dtype == torch.bool else bitwise)(ctx, self, other)

    return convert


register_converter(aten.bitwise_and, aten.__and__)(_bitwise("and", "bitwise_and"))
register_converter(aten.bitwise_or, aten.__or__)(_bitwise("or", "bitwise_or"))
register_converter(aten.bitwise_xor, aten.__xor__)(_bitwise("xor", "bitwise_xor"))


@register_converter(aten.logical_not, aten.bitwise_not)
def _not(ctx, self):
    """``not`` is ``lax.bitwise_not``: logical on booleans, bitwise on integers; torch's
    ``logical_not`` of a number is ``x == 0``."""
    logical = ctx._node().target.overloadpacket is aten.logical_not
    if logical and _dtype_of(self) != torch.bool:
        return ctx.emit("eq", [ctx.value(self)], {"scalar": 0, "reverse": False})
    if _is_float(self):
        raise Unconvertible("bitwise not of a floating-point tensor")
    return ctx.emit("not", [ctx.value(self)])


@register_converter(aten.isnan)
def _isnan(ctx, self):
    x = ctx.value(self)
    return ctx.emit("ne", [x, x])


@register_converter(aten.isinf)
def _isinf(ctx, self):
    absx = ctx.emit("abs", [ctx.value(self)])
    return ctx.emit("eq", [absx], {"scalar": math.inf, "reverse": False})


@register_converter(aten.clamp, aten.clip, aten.clamp_min, aten.clamp_max)
def _clamp(ctx, self, min=None, max=None):
    """``min`` then ``max`` (torch's order: ``max`` wins where ``min > max``); each a number
    or a tensor."""
    out = ctx.value(self)
    for bound, op in ((min, "maximum"), (max, "minimum")):
        if bound is None:
            continue
        if ctx.is_tensor(bound):
            out = ctx.emit(op, [out, ctx.value(bound)])
        else:
            out = ctx.emit(op, [out], {"scalar": _scalar(bound), "reverse": False})
    return out


# --- activations ---------------------------------------------------------------------------


@register_converter(aten.elu)
def _elu(ctx, self, alpha=1, scale=1, input_scale=1):
    attrs = {"alpha": float(alpha), "scale": float(scale), "input_scale": float(input_scale)}
    return ctx.emit("elu", [ctx.value(self)], attrs)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@register_converter(aten.selu)
def _selu(ctx, self):
    return _elu(ctx, self, _SELU_ALPHA, _SELU_SCALE, 1.0)


@register_converter(aten.celu)
def _celu(ctx, self, alpha=1.0):
    return _elu(ctx, self, alpha, 1.0, 1.0 / float(alpha))


@register_converter(aten.softplus)
def _softplus(ctx, self, beta=1, threshold=20):
    attrs = {"beta": float(beta), "threshold": float(threshold)}
    return ctx.emit("softplus", [ctx.value(self)], attrs)


@register_converter(aten.log_sigmoid)
def _log_sigmoid(ctx, self):
    neg = ctx.emit("neg", [ctx.value(self)])
    return ctx.emit("neg", [ctx.emit("softplus", [neg], {"beta": 1.0, "threshold": 20.0})])


@register_converter(aten._log_softmax, aten.log_softmax.int)
def _log_softmax(ctx, self, dim, dtype=None, half_to_float=False):
    out = ctx.emit("log_softmax", [ctx.value(self)], {"axis": _axis(ctx, dim, self)})
    return _cast(ctx, out, dtype, self)


@register_converter(aten.glu)
def _glu(ctx, self, dim=-1):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "glu")
    n, x = ctx.shape(self)[axis], ctx.value(self)
    a = ctx.emit("slice", [x], dict(axis=axis, start=0, stop=n // 2, step=1))
    b = ctx.emit("slice", [x], dict(axis=axis, start=n // 2, stop=n, step=1))
    return ctx.emit("mul", [a, ctx.emit("sigmoid", [b])])


@register_converter(aten.prelu, aten._prelu_kernel)
def _prelu(ctx, self, weight):
    """``x if x >= 0 else weight * x``, the weight (one or C values) on axis 1."""
    w = ctx.value(weight)
    rank, n = len(ctx.shape(self)), ctx.shape(weight)[0] if ctx.shape(weight) else 1
    if n > 1:
        w = ctx.emit("reshape", [w], {"shape": (n,) + (1,) * (rank - 2)})
    x = ctx.value(self)
    scaled = ctx.emit("mul", [x, w])
    cond = ctx.emit("ge", [x], {"scalar": 0.0, "reverse": False})
    return ctx.emit("where", [cond, x, scaled], {"x_scalar": None, "y_scalar": None})


# --- reductions ------------------------------------------------------------------------------


def _reduced_shape(ctx: ConvertContext, arg: Any, axes: tuple[int, ...], keep: bool) -> tuple:
    """``arg``'s shape with ``axes`` reduced (kept as 1, or dropped), -1 on the batch axis."""
    sym = ctx.sym_axes(arg)
    dims = [(1 if i in axes else (-1 if i in sym else d)) for i, d in enumerate(ctx.shape(arg))]
    return tuple(d for i, d in enumerate(dims) if keep or i not in axes)


def _kept(ctx: ConvertContext, value: str, arg: Any, axes: tuple[int, ...]) -> str:
    """A reduction of ``arg`` over ``axes`` (axes removed) reshaped with them kept as 1."""
    return ctx.emit("reshape", [value], {"shape": _reduced_shape(ctx, arg, axes, True)})


def _dropped(ctx: ConvertContext, value: str, arg: Any, axes: tuple[int, ...]) -> str:
    """A reduction of ``arg`` with ``axes`` kept as 1, reshaped with them removed."""
    return ctx.emit("reshape", [value], {"shape": _reduced_shape(ctx, arg, axes, False)})


def _reduce_all(op: str):
    def convert(ctx, self, dtype=None, **_):
        axes = tuple(range(len(ctx.shape(self))))
        return _cast(ctx, ctx.emit(op, [ctx.value(self)], {"axes": axes}), dtype, self)

    return convert


register_converter(aten.sum.default)(_reduce_all("reduce_sum"))
register_converter(aten.max.default)(_reduce_all("reduce_max"))
register_converter(aten.min.default)(_reduce_all("reduce_min"))


@register_converter(aten.prod.default, aten.prod.dim_int)
def _prod(ctx, self, dim=None, keepdim=False, dtype=None):
    axes = _dims(ctx, dim, self)
    out = _keepdims(ctx, ctx.emit("reduce_prod", [ctx.value(self)], {"axes": axes}), keepdim)
    return _cast(ctx, out, dtype, self)


def _truthy(ctx, self) -> str:
    x = ctx.value(self)
    if _dtype_of(self) == torch.bool:
        return x
    return ctx.emit("ne", [x], {"scalar": 0, "reverse": False})


def _any_all(op: str):
    def convert(ctx, self, dim=None, keepdim=False):
        axes = _dims(ctx, dim, self)
        out = ctx.emit(op, [_truthy(ctx, self)], {"axes": axes})
        return _keepdims(ctx, out, keepdim)

    return convert


register_converter(aten.any)(_any_all("reduce_max"))
register_converter(aten.all)(_any_all("reduce_min"))


def _arg(op: str):
    def convert(ctx, self, dim=None, keepdim=False):
        x = ctx.value(self)
        if dim is None:
            x, axis = ctx.emit("reshape", [x], {"shape": (-1,)}), 0
        else:
            axis = _axis(ctx, dim, self)
        out = ctx.emit(op, [x], {"axis": axis, "index_dtype": "int64"})
        return _keepdims(ctx, out, keepdim)

    return convert


register_converter(aten.argmax)(_arg("argmax"))
register_converter(aten.argmin)(_arg("argmin"))


def _max_min_dim(reduce: str, arg: str):
    def convert(ctx, self, dim, keepdim=False):
        axis = _axis(ctx, dim, self)
        x = ctx.value(self)
        values = ctx.emit(reduce, [x], {"axes": (axis,)})
        idx = ctx.emit(arg, [x], {"axis": axis, "index_dtype": "int64"})
        if keepdim:
            values, idx = _kept(ctx, values, self, (axis,)), _kept(ctx, idx, self, (axis,))
        return values, idx

    return convert


register_converter(aten.max.dim)(_max_min_dim("reduce_max", "argmax"))
register_converter(aten.min.dim)(_max_min_dim("reduce_min", "argmin"))


def _var(ctx: ConvertContext, self, dim, correction, keepdim) -> str:
    """``sum((x - mean)^2) / (N - correction)`` over ``dim`` (N: the reduced count)."""
    axes = _dims(ctx, dim, self)
    for a in axes:
        ctx.static_axis(self, a, "var/std")
    n = math.prod(ctx.shape(self)[a] for a in axes)
    x = ctx.value(self)
    mean = ctx.emit("mean", [x], {"axis": axes, "keepdims": True})
    d = ctx.emit("sub", [x, mean])
    total = ctx.emit("reduce_sum", [ctx.emit("mul", [d, d])], {"axes": axes})
    corr = 1.0 if correction is None else float(correction)
    out = ctx.emit("div", [total], {"scalar": max(n - corr, 0.0), "reverse": False})
    return _keepdims(ctx, out, keepdim)


@register_converter(aten.var.correction, aten.var.dim, aten.var.default)
def _variance(ctx, self, dim=None, unbiased=True, keepdim=False, correction=None):
    if correction is None and not unbiased:
        correction = 0
    return _var(ctx, self, dim, correction, keepdim)


@register_converter(aten.std.correction, aten.std.dim, aten.std.default)
def _std(ctx, self, dim=None, unbiased=True, keepdim=False, correction=None):
    return ctx.emit("sqrt", [_variance(ctx, self, dim, unbiased, keepdim, correction)])


@register_converter(aten.logsumexp)
def _logsumexp(ctx, self, dim, keepdim=False):
    """``m + log(sum(exp(x - m)))`` with ``m`` the maximum, torch's stable form."""
    axes = _dims(ctx, dim, self)
    x = ctx.value(self)
    m = _kept(ctx, ctx.emit("reduce_max", [x], {"axes": axes}), self, axes)
    shifted = ctx.emit("exp", [ctx.emit("sub", [x, m])])
    total = ctx.emit("log", [ctx.emit("reduce_sum", [shifted], {"axes": axes})])
    total = _kept(ctx, total, self, axes)
    out = ctx.emit("add", [total, m])
    return out if keepdim else _dropped(ctx, out, self, axes)


@register_converter(aten.cumprod)
def _cumprod(ctx, self, dim, dtype=None):
    name = str(ctx._node().meta["val"].dtype).removeprefix("torch.")
    return ctx.emit("cumprod", [ctx.value(self)], {"axis": _axis(ctx, dim, self), "dtype": name})


# --- products and blends ---------------------------------------------------------------------


@register_converter(aten.einsum)
def _einsum(ctx, equation, tensors, path=None):
    return ctx.emit("einsum", ctx.value(list(tensors)), {"equation": str(equation)})


@register_converter(aten.outer)
def _outer(ctx, self, vec2):
    return ctx.emit("einsum", [ctx.value(self), ctx.value(vec2)], {"equation": "i,j->ij"})


@register_converter(aten.baddbmm)
def _baddbmm(ctx, self, batch1, batch2, beta=1, alpha=1):
    """``beta * self + alpha * (batch1 @ batch2)``."""
    prod = ctx.emit("matmul", [ctx.value(batch1), ctx.value(batch2)])
    if alpha != 1:
        prod = ctx.emit("mul", [prod], {"scalar": _scalar(alpha), "reverse": False})
    if beta == 0:
        return prod
    term = ctx.value(self)
    if beta != 1:
        term = ctx.emit("mul", [term], {"scalar": _scalar(beta), "reverse": False})
    return ctx.emit("add", [prod, term])


@register_converter(aten.lerp)
def _lerp(ctx, self, end, weight):
    """``self + weight * (end - self)``."""
    x = ctx.value(self)
    step = ctx.emit("sub", [ctx.value(end), x])
    if ctx.is_tensor(weight):
        step = ctx.emit("mul", [step, ctx.value(weight)])
    else:
        step = ctx.emit("mul", [step], {"scalar": _scalar(weight), "reverse": False})
    return ctx.emit("add", [x, step])


@register_converter(aten.addcdiv)
def _addcdiv(ctx, self, tensor1, tensor2, value=1):
    quot = ctx.emit("div", [ctx.value(tensor1), ctx.value(tensor2)])
    if value != 1:
        quot = ctx.emit("mul", [quot], {"scalar": _scalar(value), "reverse": False})
    return ctx.emit("add", [ctx.value(self), quot])


@register_converter(aten.type_as)
def _type_as(ctx, self, other):
    return _cast(ctx, ctx.value(self), other.meta["val"].dtype, self)
