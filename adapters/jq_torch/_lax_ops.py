"""Torch twins of the lax-level ops that ``jq.from_jax`` emits (``jq/_src/graph/ops/``),
so graphs converted from JAX programs (and their quantized forms) run with ``to_torch`` too; and
of the ops added for torch's Core ATen opset (registered in the same package)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ._to_torch import register_torch_op

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "log1p": torch.log1p,
    "expm1": torch.expm1,
    "erf": torch.erf,
    "erfc": torch.erfc,
    "rsqrt": torch.rsqrt,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "sign": torch.sign,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "round": torch.round,  # half to even, as jnp.round
    "square": torch.square,
    "sin": torch.sin,
    "cos": torch.cos,
    "not": torch.bitwise_not,
    "is_finite": torch.isfinite,
}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "pow": torch.pow,
    "rem": torch.remainder,
    "eq": torch.eq,
    "ne": torch.ne,
    "lt": torch.lt,
    "le": torch.le,
    "gt": torch.gt,
    "ge": torch.ge,
    "and": torch.logical_and,
    "or": torch.logical_or,
    "xor": torch.logical_xor,
}


def _unary(fn):
    def op(params, x):
        return fn(x)

    return op


def _binary(fn):
    def op(params, x, y=None, *, scalar=None, reverse=False):
        if y is None:
            s = torch.tensor(scalar, dtype=x.dtype)
            return fn(s, x) if reverse else fn(x, s)
        return fn(x, y)

    return op


for _name, _fn in _UNARY.items():
    register_torch_op(_name)(_unary(_fn))
for _name, _bfn in _BINARY.items():
    register_torch_op(_name)(_binary(_bfn))


@register_torch_op("integer_pow")
def _integer_pow(params, x, *, y):
    return x**y


@register_torch_op("reduce_sum")
def _reduce_sum(params, x, *, axes):
    return torch.sum(x, dim=tuple(axes)) if axes else x


@register_torch_op("reduce_max")
def _reduce_max(params, x, *, axes):
    return torch.amax(x, dim=tuple(axes)) if axes else x


@register_torch_op("reduce_min")
def _reduce_min(params, x, *, axes):
    return torch.amin(x, dim=tuple(axes)) if axes else x


@register_torch_op("reduce_prod")
def _reduce_prod(params, x, *, axes):
    for a in sorted(axes, reverse=True):
        x = torch.prod(x, dim=a)
    return x


def _dtype(name: str) -> torch.dtype:
    # 64-bit index types map to 32 bits, as jax does without jax_enable_x64.
    return getattr(torch, name.replace("64", "32"))


@register_torch_op("argmax")
def _argmax(params, x, *, axis, index_dtype):
    return torch.argmax(x, dim=axis).to(_dtype(index_dtype))


@register_torch_op("argmin")
def _argmin(params, x, *, axis, index_dtype):
    return torch.argmin(x, dim=axis).to(_dtype(index_dtype))


@register_torch_op("select_n")
def _select_n(params, which, *cases):
    out = cases[0]
    for i, c in enumerate(cases[1:], start=1):
        out = torch.where(which if which.dtype == torch.bool else which == i, c, out)
    return out


@register_torch_op("slice_nd")
def _slice_nd(params, x, *, start, limit, strides):
    return x[tuple(slice(a, b, s) for a, b, s in zip(start, limit, strides, strict=True))]


@register_torch_op("dynamic_slice")
def _dynamic_slice(params, x, *indices, sizes):
    for axis, (i, s) in enumerate(zip(indices, sizes, strict=True)):
        start = int(min(max(int(i), 0), x.shape[axis] - s))  # lax clamps the start
        x = x.narrow(axis, start, s)
    return x


@register_torch_op("reduce_window")
def _reduce_window(
    params, x, *, computation, window, strides, padding, base_dilation, window_dilation
):
    if any(d != 1 for d in base_dilation):
        raise NotImplementedError("reduce_window with base dilation has no torch twin")
    fill = -math.inf if computation == "max" else 0.0
    pads = [p for lo_hi in reversed(padding) for p in lo_hi]
    x = F.pad(x, pads, value=fill)
    for axis, (k, s, d) in enumerate(zip(window, strides, window_dilation, strict=True)):
        span = (k - 1) * d + 1
        x = x.unfold(axis, span, s)[..., ::d]  # windows in a new last axis
    taps = tuple(range(x.ndim - len(window), x.ndim))
    return torch.amax(x, dim=taps) if computation == "max" else torch.sum(x, dim=taps)


@register_torch_op("dot_general")
def _dot_general(params, a, b, *, dimension_numbers):
    (ca, cb), (ba, bb) = dimension_numbers
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    sa: list[Any] = [None] * a.ndim
    sb: list[Any] = [None] * b.ndim
    for i, j in zip(ba, bb, strict=True):
        sa[i] = sb[j] = next(letters)
    for i, j in zip(ca, cb, strict=True):
        sa[i] = sb[j] = next(letters)
    for s in (sa, sb):
        for i, v in enumerate(s):
            if v is None:
                s[i] = next(letters)
    free_a = [sa[i] for i in range(a.ndim) if i not in ba and i not in ca]
    free_b = [sb[j] for j in range(b.ndim) if j not in bb and j not in cb]
    out = [sa[i] for i in ba] + free_a + free_b
    return torch.einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


@register_torch_op("pad_nd")
def _pad_nd(params, x, *, config, value):
    if any(c[2] for c in config):
        raise NotImplementedError("pad_nd with interior padding has no torch twin")
    return F.pad(x, [p for lo, hi, _ in reversed(config) for p in (lo, hi)], value=value)


@register_torch_op("masked_softmax")
def _masked_softmax(params, x, mask, *, axis, fill):
    return torch.softmax(torch.where(mask, x, torch.tensor(fill, dtype=x.dtype)), dim=axis)


# --- twins of the ops added for torch's Core ATen opset (jq/_src/graph/ops/) -----------------

for _name, _fn in (
    ("tan", torch.tan),
    ("asin", torch.asin),
    ("acos", torch.acos),
    ("atan", torch.atan),
    ("sinh", torch.sinh),
    ("cosh", torch.cosh),
    ("asinh", torch.asinh),
    ("acosh", torch.acosh),
    ("atanh", torch.atanh),
    ("trunc", torch.trunc),
    ("log2", torch.log2),
    ("log10", torch.log10),
    ("mish", F.mish),
):
    register_torch_op(_name)(_unary(_fn))
for _name, _bfn in (
    ("atan2", torch.atan2),
    ("fmod", torch.fmod),
    ("floor_divide", torch.floor_divide),
    ("bitwise_and", torch.bitwise_and),
    ("bitwise_or", torch.bitwise_or),
    ("bitwise_xor", torch.bitwise_xor),
    ("fmax", torch.fmax),
    ("fmin", torch.fmin),
    ("hypot", torch.hypot),
):
    register_torch_op(_name)(_binary(_bfn))
del _name, _fn, _bfn


@register_torch_op("einsum")
def _einsum(params, *operands, equation):
    return torch.einsum(equation, *operands)


@register_torch_op("elu")
def _elu(params, x, *, alpha=1.0, scale=1.0, input_scale=1.0):
    return scale * torch.where(x > 0, x, alpha * torch.expm1(input_scale * x.clamp(max=0)))


@register_torch_op("softplus")
def _softplus(params, x, *, beta=1.0, threshold=20.0):
    return F.softplus(x, beta, threshold)


@register_torch_op("log_softmax")
def _log_softmax(params, x, *, axis):
    return torch.log_softmax(x, axis)


@register_torch_op("cumprod")
def _cumprod(params, x, *, axis, dtype=None):
    return torch.cumprod(x, axis, dtype=_dtype(dtype) if dtype else None)


@register_torch_op("sort")
def _sort(params, x, *, axis, descending=False, indices=False):
    out = torch.sort(x, dim=axis, descending=descending, stable=True)
    return out.indices.to(torch.int32) if indices else out.values


@register_torch_op("topk")
def _topk(params, x, *, k, axis, largest=True, indices=False):
    out = torch.topk(x, k, dim=axis, largest=largest)
    return out.indices.to(torch.int32) if indices else out.values


@register_torch_op("gather")
def _gather(params, x, index, *, axis):
    x = x[tuple(slice(0, n) if d != axis else slice(None) for d, n in enumerate(index.shape))]
    return torch.gather(x, axis, index.long())


@register_torch_op("scatter")
def _scatter(params, x, index, src=None, *, axis, reduce=None, include_self=True, value=None):
    index = index.long()
    if src is None:
        src = torch.full(index.shape, value, dtype=x.dtype)
    if reduce is None:
        return torch.scatter(x, axis, index, src.to(x.dtype))
    return torch.scatter_reduce(x, axis, index, src.to(x.dtype), reduce, include_self=include_self)


@register_torch_op("index_put")
def _index_put(params, x, values, *indices, positions, accumulate=False):
    it = iter(indices)
    key = [
        torch.remainder(next(it).long(), x.shape[a]) if taken else None
        for a, taken in enumerate(positions)
    ]  # the ATen op takes None for a full slice
    return torch.ops.aten.index_put(x, key, values.to(x.dtype), accumulate)


@register_torch_op("masked_scatter")
def _masked_scatter(params, x, mask, src):
    return torch.masked_scatter(x, mask, src.to(x.dtype))


@register_torch_op("tile")
def _tile(params, x, *, reps):
    return x.repeat(tuple(reps))


@register_torch_op("diagonal")
def _diagonal(params, x, *, offset=0, axis1=0, axis2=1):
    return torch.diagonal(x, offset, axis1, axis2)


@register_torch_op("mode_pad")
def _mode_pad(params, x, *, padding, mode):
    flat = [int(p) for lo_hi in reversed(padding) for p in lo_hi]
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return F.pad(x, flat, mode=torch_mode)


@register_torch_op("full_like")
def _full_like(params, x, *, value, dtype=None):
    return torch.full_like(x, value, dtype=_dtype(dtype) if dtype else x.dtype)


@register_torch_op("col2im")
def _col2im(params, x, *, output_size, kernel_size, dilation, padding, stride):
    return F.fold(
        x, tuple(output_size), tuple(kernel_size), tuple(dilation), tuple(padding), tuple(stride)
    )


@register_torch_op("grid_sample")
def _grid_sample(params, x, grid, *, mode, padding_mode, align_corners):
    return F.grid_sample(x, grid, mode, padding_mode, align_corners)


@register_torch_op("embedding_bag")
def _embedding_bag(
    params, indices, offsets, weights=None, *, mode, include_last_offset, padding_idx
):
    return F.embedding_bag(
        indices.long(),
        params["weight"],
        offsets.long(),
        mode=mode,
        per_sample_weights=weights,
        include_last_offset=include_last_offset,
        padding_idx=padding_idx,
    )
