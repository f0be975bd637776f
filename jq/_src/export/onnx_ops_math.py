"""ONNX emitters for jq's elementwise math, comparisons, logic, reductions and the
activations beyond the PyTorch-shaped core (``onnx_ops.py``).

Where ONNX has no op of its own, the emitter writes jq's formula in ONNX ops: ``trunc`` as
``where(x < 0, ceil x, floor x)``, ``atan2`` with the quadrant fix-ups, ``rem`` as ``fmod``
moved to the divisor's sign (NumPy's ``remainder``), integer ``floor_divide`` as
``(x - x mod y) / y`` (exact: the division has no remainder), ``cumprod`` as a product over a
lower-triangular mask (O(n^2) in the axis length). Operands are cast to the dtype JAX computes
in (:mod:`onnx_values`).
"""

from __future__ import annotations

import math

import numpy as np

from ..graph.graph import Node
from .onnx_ops import onnx_op
from .onnx_values import (
    cast,
    i64,
    operand_dtype,
    operands,
    out_dtype,
    reduce,
    typed,
    unsqueeze,
)

MIN_BITWISE_OPSET = 18  # BitwiseAnd / BitwiseOr / BitwiseXor / BitwiseNot


def _floating(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def _in(b, node: Node, xs, i: int = 0) -> tuple[str, str]:
    """Input ``i`` and its dtype."""
    return xs[i], b.dtype_of(node.inputs[i])


def _direct_unary(op_type: str):
    def emit(b, node: Node, xs, params):
        return b.add(op_type, xs[:1], node.name)

    return emit


for _jq, _onnx in (
    ("neg", "Neg"),
    ("exp", "Exp"),
    ("log", "Log"),
    ("erf", "Erf"),
    ("sqrt", "Sqrt"),
    ("abs", "Abs"),
    ("sign", "Sign"),
    ("floor", "Floor"),
    ("ceil", "Ceil"),
    ("round", "Round"),  # half to even, as jnp.round
    ("sin", "Sin"),
    ("cos", "Cos"),
    ("tan", "Tan"),
    ("asin", "Asin"),
    ("acos", "Acos"),
    ("atan", "Atan"),
    ("sinh", "Sinh"),
    ("cosh", "Cosh"),
    ("asinh", "Asinh"),
    ("acosh", "Acosh"),
    ("atanh", "Atanh"),
):
    onnx_op(_jq)(_direct_unary(_onnx))


def _const_like(b, node: Node, value, base: str) -> str:
    return typed(b, value, b.dtype_of(node.inputs[0]), f"{node.name}.{base}")


@onnx_op("log1p")
def _log1p(b, node: Node, xs, params):
    return b.add(
        "Log", [b.add("Add", [xs[0], _const_like(b, node, 1, "one")], node.name)], node.name
    )


@onnx_op("expm1")
def _expm1(b, node: Node, xs, params):
    e = b.add("Exp", xs[:1], node.name)
    return b.add("Sub", [e, _const_like(b, node, 1, "one")], node.name)


@onnx_op("erfc")
def _erfc(b, node: Node, xs, params):
    e = b.add("Erf", xs[:1], node.name)
    return b.add("Sub", [_const_like(b, node, 1, "one"), e], node.name)


@onnx_op("rsqrt")
def _rsqrt(b, node: Node, xs, params):
    return b.add("Reciprocal", [b.add("Sqrt", xs[:1], node.name)], node.name)


@onnx_op("square")
def _square(b, node: Node, xs, params):
    return b.add("Mul", [xs[0], xs[0]], node.name)


def _log_base(base: float):
    def emit(b, node: Node, xs, params):
        ln = b.add("Log", xs[:1], node.name)
        return b.add("Div", [ln, _const_like(b, node, math.log(base), "ln")], node.name)

    return emit


onnx_op("log2")(_log_base(2.0))
onnx_op("log10")(_log_base(10.0))


@onnx_op("trunc")
def _trunc(b, node: Node, xs, params):
    x, n = xs[0], node.name
    neg = b.add("Less", [x, _const_like(b, node, 0, "zero")], f"{n}.neg")
    return b.add("Where", [neg, b.add("Ceil", [x], n), b.add("Floor", [x], n)], n)


@onnx_op("not")
def _not(b, node: Node, xs, params):
    x, dt = _in(b, node, xs)
    if dt == "bool":
        return b.add("Not", [x], node.name)
    if b.opset < MIN_BITWISE_OPSET:
        raise NotImplementedError(
            f"bitwise not of {dt} needs BitwiseNot (opset {MIN_BITWISE_OPSET}), asked {b.opset}"
        )
    return b.add("BitwiseNot", [x], node.name)


@onnx_op("is_finite")
def _is_finite(b, node: Node, xs, params):
    x, n = xs[0], node.name
    bad = b.add("Or", [b.add("IsInf", [x], f"{n}.inf"), b.add("IsNaN", [x], f"{n}.nan")], n)
    return b.add("Not", [bad], n)


@onnx_op("integer_pow")
def _integer_pow(b, node: Node, xs, params):
    return b.add("Pow", [xs[0], _const_like(b, node, node.attr("y"), "y")], node.name)


# --- binary ---------------------------------------------------------------------------------


def _direct_binary(op_type: str):
    def emit(b, node: Node, xs, params):
        return b.add(op_type, operands(b, node, xs), node.name)

    return emit


for _jq, _onnx in (
    ("maximum", "Max"),
    ("minimum", "Min"),
    ("pow", "Pow"),
    ("eq", "Equal"),
    ("lt", "Less"),
    ("le", "LessOrEqual"),
    ("gt", "Greater"),
    ("ge", "GreaterOrEqual"),
):
    onnx_op(_jq)(_direct_binary(_onnx))
del _jq, _onnx


@onnx_op("ne")
def _ne(b, node: Node, xs, params):
    return b.add("Not", [b.add("Equal", operands(b, node, xs), f"{node.name}.eq")], node.name)


def _logical(op_type: str):
    def emit(b, node: Node, xs, params):
        return b.add(op_type, operands(b, node, xs, "bool"), node.name)

    return emit


for _jq, _onnx in (("and", "And"), ("or", "Or"), ("xor", "Xor")):
    onnx_op(_jq)(_logical(_onnx))


def _bitwise(logical: str, bitwise: str):
    def emit(b, node: Node, xs, params):
        dt = operand_dtype(b, node)
        if dt == "bool":
            return b.add(logical, operands(b, node, xs), node.name)
        if b.opset < MIN_BITWISE_OPSET:
            raise NotImplementedError(
                f"{bitwise} of {dt} needs opset {MIN_BITWISE_OPSET}, asked {b.opset}"
            )
        return b.add(bitwise, operands(b, node, xs), node.name)

    return emit


for _jq, _l, _b in (
    ("bitwise_and", "And", "BitwiseAnd"),
    ("bitwise_or", "Or", "BitwiseOr"),
    ("bitwise_xor", "Xor", "BitwiseXor"),
):
    onnx_op(_jq)(_bitwise(_l, _b))
del _jq, _l, _b


@onnx_op("fmod")
def _fmod(b, node: Node, xs, params):
    return b.add("Mod", operands(b, node, xs), node.name, fmod=1)


@onnx_op("rem")
def _rem(b, node: Node, xs, params):
    """NumPy's ``remainder``: the sign of the divisor."""
    x, y = operands(b, node, xs)
    n, dt = node.name, operand_dtype(b, node)
    if not _floating(dt):
        return b.add("Mod", [x, y], n, fmod=0)
    r = b.add("Mod", [x, y], f"{n}.fmod", fmod=1)
    zero = typed(b, 0, dt, f"{n}.zero")
    nonzero = b.add("Not", [b.add("Equal", [r, zero], n)], n)
    flip = b.add("Xor", [b.add("Less", [r, zero], n), b.add("Less", [y, zero], n)], n)
    fix = b.add("And", [nonzero, flip], f"{n}.fix")
    return b.add("Where", [fix, b.add("Add", [r, y], n), r], n)


@onnx_op("floor_divide")
def _floor_divide(b, node: Node, xs, params):
    x, y = operands(b, node, xs)
    n = node.name
    if _floating(operand_dtype(b, node)):
        return b.add("Floor", [b.add("Div", [x, y], n)], n)
    exact = b.add("Sub", [x, b.add("Mod", [x, y], f"{n}.mod", fmod=0)], n)
    return b.add("Div", [exact, y], n)


@onnx_op("atan2")
def _atan2(b, node: Node, xs, params):
    """``atan2(y, x)``: ``atan(y / x)``, plus or minus pi where ``x < 0``, plus or minus pi/2
    where ``x == 0`` (0 where both are)."""
    y, x = operands(b, node, xs)
    n, dt = node.name, operand_dtype(b, node)

    def c(v, k):
        return typed(b, v, dt, f"{n}.{k}")

    zero = c(0, "zero")
    base = b.add("Atan", [b.add("Div", [y, x], n)], n)
    y_neg = b.add("Less", [y, zero], f"{n}.yneg")
    pi = b.add("Where", [y_neg, c(-math.pi, "mpi"), c(math.pi, "pi")], n)
    left = b.add("Where", [b.add("Less", [x, zero], n), b.add("Add", [base, pi], n), base], n)
    half = b.add("Mul", [b.add("Sign", [y], n), c(math.pi / 2, "halfpi")], n)
    return b.add("Where", [b.add("Equal", [x, zero], f"{n}.x0"), half, left], n)


def _nan_aware(op_type: str):
    """``fmax`` / ``fmin``: a NaN operand yields the other one."""

    def emit(b, node: Node, xs, params):
        x, y = operands(b, node, xs)
        n = node.name
        m = b.add(op_type, [x, y], n)
        if not _floating(operand_dtype(b, node)):
            return m
        m = b.add("Where", [b.add("IsNaN", [y], f"{n}.ynan"), x, m], n)
        return b.add("Where", [b.add("IsNaN", [x], f"{n}.xnan"), y, m], n)

    return emit


onnx_op("fmax")(_nan_aware("Max"))
onnx_op("fmin")(_nan_aware("Min"))


@onnx_op("hypot")
def _hypot(b, node: Node, xs, params):
    x, y = operands(b, node, xs)
    n = node.name
    s = b.add("Add", [b.add("Mul", [x, x], n), b.add("Mul", [y, y], n)], n)
    return b.add("Sqrt", [s], n)


# --- selection --------------------------------------------------------------------------------


@onnx_op("where")
def _where(b, node: Node, xs, params):
    n, dt = node.name, out_dtype(b, node)
    cond = cast(b, xs[0], b.dtype_of(node.inputs[0]), "bool", n)
    rest = list(zip(xs[1:], node.inputs[1:], strict=True))
    pair = []
    for key in ("x_scalar", "y_scalar"):
        s = node.attr(key, None)
        if s is None:
            value, src = rest.pop(0)
            pair.append(cast(b, value, b.dtype_of(src), dt, n))
        else:
            pair.append(typed(b, s, dt, f"{n}.{key}"))
    return b.add("Where", [cond, *pair], n)


@onnx_op("select_n")
def _select_n(b, node: Node, xs, params):
    """``cases[which]``: one Where per case after the first."""
    n = node.name
    which, cases = xs[0], xs[1:]
    wdt = b.dtype_of(node.inputs[0])
    if wdt == "bool":
        return b.add("Where", [which, cases[1], cases[0]], n)
    out = cases[0]
    for i, case in enumerate(cases[1:], start=1):
        hit = b.add("Equal", [which, typed(b, i, wdt, f"{n}.case{i}")], n)
        out = b.add("Where", [hit, case, out], n)
    return out


# --- reductions -------------------------------------------------------------------------------


def _reduction(op_type: str):
    def emit(b, node: Node, xs, params):
        x, dt = _in(b, node, xs)
        n, want = node.name, out_dtype(b, node)
        if want == "bool":  # any / all: reduce 0/1 integers
            y = reduce(b, op_type, cast(b, x, dt, "int32", n), node.attr("axes"), 0, n)
            return cast(b, y, "int32", "bool", f"{n}.bool")
        return reduce(b, op_type, cast(b, x, dt, want, n), node.attr("axes"), 0, n)

    return emit


for _jq, _onnx in (
    ("reduce_sum", "ReduceSum"),
    ("reduce_max", "ReduceMax"),
    ("reduce_min", "ReduceMin"),
    ("reduce_prod", "ReduceProd"),
):
    onnx_op(_jq)(_reduction(_onnx))
del _jq, _onnx


def _arg(op_type: str):
    def emit(b, node: Node, xs, params):
        n = node.name
        y = b.add(op_type, xs[:1], n, axis=int(node.attr("axis")), keepdims=0)
        return cast(b, y, "int64", out_dtype(b, node), n)

    return emit


onnx_op("argmax")(_arg("ArgMax"))
onnx_op("argmin")(_arg("ArgMin"))


@onnx_op("cumsum")
def _cumsum(b, node: Node, xs, params):
    x, dt = _in(b, node, xs)
    n = node.name
    x = cast(b, x, dt, out_dtype(b, node), n)
    return b.add("CumSum", [x, i64(b, int(node.attr("axis")), f"{n}.axis")], n)


@onnx_op("cumprod")
def _cumprod(b, node: Node, xs, params):
    """``y[i] = prod_{j <= i} x[j]`` along the axis: x repeated over a new axis ``i`` with the
    entries ``j > i`` replaced by 1, then ReduceProd over ``j``."""
    x, dt = _in(b, node, xs)
    n, want = node.name, out_dtype(b, node)
    rank = b.rank_of(node.inputs[0])
    axis = int(node.attr("axis")) % rank
    length = b.shape_of(node.inputs[0])[axis]
    x = cast(b, x, dt, want, n)
    rows = unsqueeze(b, x, [axis], f"{n}.rows")  # (..., 1 [i], length [j], ...)
    mask = np.tril(np.ones((length, length), bool)).reshape(
        (length, length) + (1,) * (rank - axis - 1)
    )
    kept = b.add("Where", [b.const(mask, f"{n}.tril"), rows, typed(b, 1, want, f"{n}.one")], n)
    return reduce(b, "ReduceProd", kept, [axis + 1], 0, n)


# --- activations ------------------------------------------------------------------------------


@onnx_op("log_softmax")
def _log_softmax(b, node: Node, xs, params):
    return b.add("LogSoftmax", xs[:1], node.name, axis=int(node.attr("axis")))


@onnx_op("masked_softmax")
def _masked_softmax(b, node: Node, xs, params):
    n = node.name
    mask = cast(b, xs[1], b.dtype_of(node.inputs[1]), "bool", n)
    fill = _const_like(b, node, node.attr("fill"), "fill")
    return b.add(
        "Softmax", [b.add("Where", [mask, xs[0], fill], n)], n, axis=int(node.attr("axis"))
    )


def _softplus(b, node: Node, x: str, beta: float, threshold: float, base: str) -> str:
    """torch's softplus: ``log(1 + exp(beta x)) / beta``, ``x`` where ``beta x > threshold``."""
    bx = b.add("Mul", [x, _const_like(b, node, beta, f"{base}.beta")], base)
    soft = b.add("Div", [b.add("Softplus", [bx], base), _const_like(b, node, beta, base)], base)
    big = b.add("Greater", [bx, _const_like(b, node, threshold, f"{base}.thr")], base)
    return b.add("Where", [big, x, soft], base)


@onnx_op("softplus")
def _softplus_op(b, node: Node, xs, params):
    beta, thr = float(node.attr("beta", 1.0)), float(node.attr("threshold", 20.0))
    return _softplus(b, node, xs[0], beta, thr, node.name)


@onnx_op("mish")
def _mish(b, node: Node, xs, params):
    sp = _softplus(b, node, xs[0], 1.0, 20.0, f"{node.name}.softplus")
    return b.add("Mul", [xs[0], b.add("Tanh", [sp], node.name)], node.name)


@onnx_op("elu")
def _elu(b, node: Node, xs, params):
    """``scale * where(x > 0, x, alpha * (exp(input_scale * min(x, 0)) - 1))``."""
    x, n = xs[0], node.name

    def c(v, k):
        return _const_like(b, node, v, k)

    neg = b.add("Min", [x, c(0, "zero")], n)
    e = b.add("Exp", [b.add("Mul", [neg, c(node.attr("input_scale", 1.0), "in_scale")], n)], n)
    neg = b.add("Mul", [b.add("Sub", [e, c(1, "one")], n), c(node.attr("alpha", 1.0), "alpha")], n)
    y = b.add("Where", [b.add("Greater", [x, c(0, "zero")], n), x, neg], n)
    return b.add("Mul", [y, c(node.attr("scale", 1.0), "scale")], n)
