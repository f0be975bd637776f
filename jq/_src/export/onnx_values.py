"""Typed constants, casts, operand promotion and reductions for the ONNX emitters.

ONNX ops take operands of one element type where JAX promotes (``int32 + 2.5`` is float32, a
Python scalar takes the tensor's type): these helpers cast each operand to the type JAX
computed in (read from the abstract trace of the graph, ``b.dtype_of``), so the written file
computes in the dtypes jq does.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..graph.graph import Node

INT64_MIN = np.iinfo(np.int64).min
MIN_REDUCE_AXES_INPUT = 18  # ReduceMax/Min/Prod/Mean take axes as an input from opset 18


def i64(b, values, base: str) -> str:
    """An int64 initializer (shapes, axes, indices)."""
    return b.const(np.asarray(values, np.int64), base)


def typed(b, value, dtype, base: str) -> str:
    """An initializer holding ``value`` as ``dtype`` (a NumPy dtype or its name)."""
    return b.const(np.asarray(value, np.dtype(dtype)), base)


def tensor_type(b, dtype) -> int:
    """ONNX's ``TensorProto`` element type of a NumPy dtype."""
    return int(b.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def cast(b, x: str, have: str, want, base: str) -> str:
    """``x`` (of dtype ``have``) as ``want``; no node when they agree."""
    if np.dtype(have) == np.dtype(want):
        return x
    return b.add("Cast", [x], f"{base}.cast", to=tensor_type(b, want))


def operand_dtype(b, node: Node) -> str:
    """The dtype JAX computes a binary op in: both tensors promoted, or a tensor and a weakly
    typed Python ``scalar`` attr (``x + 2`` keeps an int32 ``x`` int32)."""
    dts = [b.dtype_of(v) for v in node.inputs[:2]]
    if len(dts) == 2:
        return str(jnp.result_type(*dts))
    return str(jnp.result_type(dts[0], node.attr("scalar")))


def operands(b, node: Node, xs: list[str], dtype=None) -> list[str]:
    """The two operands of a binary node (``xs`` two tensors, or one and the ``scalar``
    attr, ``reverse`` putting the scalar first), each as ``dtype`` (default: JAX's
    :func:`operand_dtype`)."""
    dtype = operand_dtype(b, node) if dtype is None else dtype
    n = node.name
    if len(xs) >= 2:
        return [cast(b, x, b.dtype_of(v), dtype, n) for x, v in zip(xs, node.inputs, strict=False)]
    x = cast(b, xs[0], b.dtype_of(node.inputs[0]), dtype, n)
    c = typed(b, node.attr("scalar"), dtype, f"{n}.scalar")
    return [c, x] if node.attr("reverse", False) else [x, c]


def unsqueeze(b, x: str, axes, base: str) -> str:
    """``Unsqueeze`` with its axes as an input (opset 13 and later)."""
    return b.add("Unsqueeze", [x, i64(b, list(axes), f"{base}.axes")], base)


def reduce(b, op_type: str, x: str, axes, keepdims: int, base: str) -> str:
    """A ``Reduce*`` node over ``axes`` (axes an input where the opset takes one: ReduceSum
    from 13, the others from 18). No axes: ``x`` itself (ONNX would reduce them all)."""
    axes = [int(a) for a in axes]
    if not axes:
        return x
    if op_type == "ReduceSum" or b.opset >= MIN_REDUCE_AXES_INPUT:
        return b.add(op_type, [x, i64(b, axes, f"{base}.axes")], base, keepdims=keepdims)
    return b.add(op_type, [x], base, axes=axes, keepdims=keepdims)


def out_dtype(b, node: Node) -> str:
    """The dtype of ``node``'s output in the trace."""
    return b.dtype_of(node.name)
