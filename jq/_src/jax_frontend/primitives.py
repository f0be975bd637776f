"""The primitive table: one converter per JAX primitive (family), ``fn(builder, eqn, args) ->
outputs``, registered with :func:`converter`.

``args`` are the equation's inputs as :class:`Val` (graph values) or :class:`Const` (known at
conversion); an equation whose inputs are all constants never reaches the table (it is
evaluated). Elementwise and per-channel ops keep their operand's storage permutation
(:mod:`jq._src.jax_frontend.layout`); shape ops work on the logical layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .context import Builder, Unconvertible
from .layout import after_reduce, after_transpose, identity, permute_attr, stored_axis
from .pooling import max_pool_attrs, pool_perm
from .values import Const, Val, Value

Converter = Callable[[Builder, Any, list[Value]], list[Value]]
_TABLE: dict[str, Converter] = {}

HINTS = {
    "cond": "data-dependent branching (lax.cond, lax.switch) has no static graph; branch in "
    "Python on static values, or compute both sides and use jnp.where",
    "while": "loops (lax.while_loop, lax.fori_loop with traced bounds) have no static graph; "
    "use a Python loop",
    "scan": "lax.scan (nnx.scan, linen.scan) has no static graph; unroll the layers",
    "random_bits": "random numbers in the forward pass: convert in inference mode (dropout "
    "off: model.eval(), deterministic=True)",
    "random_wrap": "random keys in the forward pass: convert in inference mode",
    "gather": "general indexing; jq maps jnp.take / x[idx] on a param table (embedding); "
    "use static slices elsewhere",
    "scatter": "indexed updates (x.at[i].set) are not supported",
    "scatter-add": "indexed updates (x.at[i].add) are not supported",
    "sort": "sorting is not supported",
    "cumsum": "cumulative sums are not supported; a constant mask and a matmul do the same",
}
DEFAULT_HINT = (
    "no jq conversion for this primitive; rewrite that line with supported ones, or add a "
    "converter (jq._src.jax_frontend.primitives.converter)"
)


def converter(*names: str) -> Callable[[Converter], Converter]:
    """Decorator registering a converter for the primitives ``names``."""

    def decorate(fn: Converter) -> Converter:
        for n in names:
            if n in _TABLE:
                raise ValueError(f"converter: primitive {n!r} already has a converter")
            _TABLE[n] = fn
        return fn

    return decorate


def lookup(name: str) -> Converter | None:
    return _TABLE.get(name)


def _out(b: Builder, eqn: Any, op: str, inputs, perm, attrs=None, base=None) -> Val:
    aval = eqn.outvars[0].aval
    shape = tuple(aval.shape[p] for p in perm)
    name = b.emit(op, inputs, base=base or op, shape=shape, attrs=attrs)
    return b.val(name, perm, aval)


def _common_perm(args: Sequence[Value], ndim: int) -> tuple[int, ...]:
    """The storage perm for an op on ``args``: that of the largest graph-value operand, so a
    permute, if one is needed, moves the smaller (broadcast) operand."""
    vals = [a for a in args if isinstance(a, Val)]
    if not vals:
        return identity(ndim)
    return tuple(max(vals, key=lambda a: np.prod(a.shape)).perm)


# --- elementwise --------------------------------------------------------------------------

_UNARY = {
    "neg": "neg",
    "exp": "exp",
    "log": "log",
    "log1p": "log1p",
    "expm1": "expm1",
    "erf": "erf",
    "erfc": "erfc",
    "rsqrt": "rsqrt",
    "sqrt": "sqrt",
    "abs": "abs",
    "sign": "sign",
    "floor": "floor",
    "ceil": "ceil",
    "round": "round",
    "square": "square",
    "sin": "sin",
    "cos": "cos",
    "not": "not",
    "is_finite": "is_finite",
    "logistic": "sigmoid",
    "tanh": "tanh",
}


@converter(*_UNARY)
def _unary(b: Builder, eqn, args):
    (x,) = args
    return [_out(b, eqn, _UNARY[eqn.primitive.name], (x.name,), x.perm)]


@converter(
    "stop_gradient",
    "copy",
    "copy_p",
    "optimization_barrier",
    "reduce_precision",
    "sharding_constraint",
    "reshard",
    "layout_constraint",
    "device_put",
)
def _identity(b: Builder, eqn, args):
    """Ops that leave values as they are at inference (gradients, placement, sharding)."""
    return list(args)


@converter("debug_print", "debug_callback")
def _debug(b: Builder, eqn, args):
    """``jax.debug.print`` / ``jax.debug.callback``: no values out; the graph drops them."""
    return []


@converter("integer_pow")
def _integer_pow(b: Builder, eqn, args):
    (x,) = args
    return [_out(b, eqn, "integer_pow", (x.name,), x.perm, {"y": int(eqn.params["y"])})]


@converter("convert_element_type")
def _convert(b: Builder, eqn, args):
    (x,) = args
    dtype = np.dtype(eqn.params["new_dtype"])
    if dtype == x.dtype:
        return [x]
    return [_out(b, eqn, "cast", (x.name,), x.perm, {"dtype": dtype.name})]


_BINARY = {
    "add": "add",
    "add_any": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "max": "maximum",
    "min": "minimum",
    "pow": "pow",
    "rem": "rem",
    "eq": "eq",
    "ne": "ne",
    "lt": "lt",
    "le": "le",
    "gt": "gt",
    "ge": "ge",
    "and": "and",
    "or": "or",
    "xor": "xor",
}


@converter(*_BINARY)
def _binary(b: Builder, eqn, args):
    op = _BINARY[eqn.primitive.name]
    x, y = args
    ndim = len(eqn.outvars[0].aval.shape)
    if isinstance(y, Const) and y.is_scalar or isinstance(x, Const) and x.is_scalar:
        reverse = isinstance(x, Const) and x.is_scalar
        t, s = (y, x) if reverse else (x, y)
        scalar = s.value.item()
        if op == "maximum" and scalar == 0 and np.dtype(t.dtype).kind == "f":
            return [_out(b, eqn, "relu", (t.name,), t.perm)]
        attrs = {"scalar": scalar, "reverse": reverse}
        return [_out(b, eqn, op, (b.operand(t, t.perm),), t.perm, attrs)]
    perm = _common_perm(args, ndim)
    return [_out(b, eqn, op, (b.operand(x, perm), b.operand(y, perm)), perm)]


@converter("select_n")
def _select_n(b: Builder, eqn, args):
    which, *cases = args
    if isinstance(which, Const) and which.is_scalar:
        return [cases[int(which.value)]]
    perm = _common_perm(args, len(eqn.outvars[0].aval.shape))
    if isinstance(which, Const) and which.value.ndim != len(perm):
        raise Unconvertible("select_n with a predicate of another rank")
    inputs = [b.operand(a, perm) for a in args]
    return [_out(b, eqn, "select_n", inputs, perm)]


@converter("clamp")
def _clamp(b: Builder, eqn, args):
    lo, x, hi = args
    if isinstance(lo, Const) and isinstance(hi, Const) and lo.is_scalar and hi.is_scalar:
        attrs = {"min_val": lo.value.item(), "max_val": hi.value.item()}
        if isinstance(x, Val):
            return [_out(b, eqn, "hardtanh", (x.name,), x.perm, attrs)]
    raise Unconvertible("lax.clamp with tensor bounds; use jnp.minimum / jnp.maximum")


# --- reductions ---------------------------------------------------------------------------


@converter("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")
def _reduce(b: Builder, eqn, args):
    (x,) = args
    stored, perm = after_reduce(x.perm, eqn.params["axes"])
    return [_out(b, eqn, eqn.primitive.name, (x.name,), perm, {"axes": stored})]


@converter("argmax", "argmin")
def _argmax(b: Builder, eqn, args):
    (x,) = args
    stored, perm = after_reduce(x.perm, eqn.params["axes"])
    attrs = {"axis": stored[0], "index_dtype": np.dtype(eqn.params["index_dtype"]).name}
    return [_out(b, eqn, eqn.primitive.name, (x.name,), perm, attrs)]


@converter("reduce_window_max", "reduce_window_sum")
def _reduce_window(b: Builder, eqn, args):
    """``lax.reduce_window`` max or sum, stored channels-first when its window spares the
    batch and channel axes (:mod:`jq._src.jax_frontend.pooling`): a max is jq's ``max_pool``; a
    sum stays a ``reduce_window`` (``recognise.avg_pools`` makes it and its division an
    ``avg_pool``)."""
    (x,) = args
    p = eqn.params
    padding = tuple(tuple(q) for q in p["padding"])
    perm = pool_perm(x.perm, p["window_dimensions"], p["window_strides"], padding)
    src = b.stored_as(x, perm)
    attrs = {
        "computation": "max" if eqn.primitive.name.endswith("max") else "sum",
        "window": permute_attr(perm, p["window_dimensions"]),
        "strides": permute_attr(perm, p["window_strides"]),
        "padding": permute_attr(perm, padding),
        "base_dilation": permute_attr(perm, p["base_dilation"]),
        "window_dilation": permute_attr(perm, p["window_dilation"]),
    }
    pool = max_pool_attrs(attrs)
    if pool is not None:
        return [_out(b, eqn, "max_pool", (src,), perm, pool)]
    return [_out(b, eqn, "reduce_window", (src,), perm, attrs, base="pool")]


# --- shapes -------------------------------------------------------------------------------


@converter("transpose")
def _transpose(b: Builder, eqn, args):
    (x,) = args
    perm = after_transpose(x.perm, eqn.params["permutation"])
    return [b.val(x.name, perm, eqn.outvars[0].aval)]


def _reshaped(b: Builder, eqn, x: Val, shape: tuple[int, ...]) -> Val:
    aval = eqn.outvars[0].aval
    name = b.logical(x)
    if tuple(x.shape) != shape:
        name = b.emit("reshape", (name,), base="reshape", shape=shape, attrs={"shape": shape})
    return b.val(name, identity(len(shape)), aval)


@converter("reshape", "squeeze", "expand_dims")
def _reshape(b: Builder, eqn, args):
    if eqn.primitive.name == "reshape" and eqn.params.get("dimensions") is not None:
        raise Unconvertible("reshape with a dimensions order; transpose first")
    x = args[0]
    return [_reshaped(b, eqn, x, tuple(eqn.outvars[0].aval.shape))]


@converter("broadcast_in_dim")
def _broadcast(b: Builder, eqn, args):
    x = args[0]
    shape = tuple(eqn.params["shape"])
    dims = eqn.params["broadcast_dimensions"]
    mid = [1] * len(shape)
    for j, d in enumerate(dims):
        mid[d] = x.shape[j]
    v = _reshaped(b, eqn, x, tuple(mid))
    if tuple(mid) == shape:
        return [v]
    name = b.emit("expand", (v.name,), base="expand", shape=shape, attrs={"shape": shape})
    return [b.val(name, identity(len(shape)), eqn.outvars[0].aval)]


@converter("concatenate")
def _concatenate(b: Builder, eqn, args):
    perm = _common_perm(args, len(eqn.outvars[0].aval.shape))
    inputs = [b.operand(a, perm) for a in args]
    axis = stored_axis(perm, eqn.params["dimension"])
    return [_out(b, eqn, "cat", inputs, perm, {"axis": axis})]


def _slice_attrs(perm, start, limit, strides) -> dict:
    return {
        "start": permute_attr(perm, tuple(start)),
        "limit": permute_attr(perm, tuple(limit)),
        "strides": permute_attr(perm, tuple(strides)),
    }


@converter("slice")
def _slice(b: Builder, eqn, args):
    (x,) = args
    p = eqn.params
    strides = p["strides"] or (1,) * len(x.shape)
    attrs = _slice_attrs(x.perm, p["start_indices"], p["limit_indices"], strides)
    return [_out(b, eqn, "slice_nd", (x.name,), x.perm, attrs, base="slice")]


@converter("split")
def _split(b: Builder, eqn, args):
    (x,) = args
    axis, outs, start = eqn.params["axis"], [], 0
    for size, var in zip(eqn.params["sizes"], eqn.outvars, strict=True):
        lo = [0] * len(x.shape)
        hi = list(x.shape)
        lo[axis], hi[axis] = start, start + size
        start += size
        attrs = _slice_attrs(x.perm, lo, hi, (1,) * len(x.shape))
        shape = tuple(var.aval.shape[q] for q in x.perm)
        name = b.emit("slice_nd", (x.name,), base="split", shape=shape, attrs=attrs)
        outs.append(b.val(name, x.perm, var.aval))
    return outs


@converter("dynamic_slice")
def _dynamic_slice(b: Builder, eqn, args):
    x, *idx = args
    sizes = tuple(eqn.params["slice_sizes"])
    if isinstance(x, Val) and all(isinstance(i, Const) for i in idx):
        # lax.dynamic_slice clamps starts so that the slice fits.
        start = [
            int(np.clip(int(i.value), 0, n - s))
            for i, n, s in zip(idx, x.shape, sizes, strict=True)
        ]
        limit = [a + s for a, s in zip(start, sizes, strict=True)]
        attrs = _slice_attrs(x.perm, start, limit, (1,) * len(sizes))
        return [_out(b, eqn, "slice_nd", (x.name,), x.perm, attrs, base="slice")]
    ndim = len(sizes)
    inputs = [b.operand(x, identity(ndim))] + [b.operand(i, ()) for i in idx]
    return [_out(b, eqn, "dynamic_slice", inputs, identity(ndim), {"sizes": sizes})]


@converter("pad")
def _pad(b: Builder, eqn, args):
    x, value = args
    if not (isinstance(value, Const) and value.is_scalar):
        raise Unconvertible("lax.pad with a traced padding value")
    config = permute_attr(x.perm, tuple(tuple(c) for c in eqn.params["padding_config"]))
    attrs = {"config": config, "value": value.value.item()}
    return [_out(b, eqn, "pad_nd", (x.name,), x.perm, attrs, base="pad")]
