"""ATen op -> jq op converters, one per op family, registered with ``register_converter``.

Identity-like ops (dropout in eval, clone, contiguous, detach, no-op casts) emit no node; every
view-like op (view, reshape, flatten, unflatten, squeeze, unsqueeze) becomes one ``reshape`` to
the output shape, ``-1`` where the size involves the dynamic batch; ``transpose`` is a
``permute``; split/chunk/unbind become ``slice`` / ``select`` nodes. Sizes read from tensors
(``x.size(0)``, ``bsz * heads``) become :class:`SymSize` markers, used by ``expand`` and
ignored by ``reshape`` (whose ``-1`` covers them).
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from ._batch import SymSize
from ._convert import ConvertContext, Unconvertible, register_converter

aten = torch.ops.aten


def _ints(v: Any, n: int) -> tuple[int, ...]:
    """An int or an int list (length 1 broadcasts) as a tuple of ``n`` ints."""
    v = [v] if isinstance(v, int) else list(v)
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise Unconvertible(f"expected {n} values, got {v}")
    return tuple(int(i) for i in v)


def _axis(ctx: ConvertContext, dim: int, arg: Any = None, extra: int = 0) -> int:
    """``dim`` normalized to be non-negative for the rank of ``arg`` (+ ``extra``)."""
    rank = len(ctx.shape(arg)) + extra
    return int(dim) % rank if rank else 0


# --- layers ------------------------------------------------------------------------------


@register_converter(aten.conv1d, aten.conv2d, aten.conv3d)
def _conv(ctx, input, weight, bias, stride, padding, dilation, groups):
    w, _ = ctx.param(weight, "conv weight")
    nd = w.ndim - 2
    dilation = _ints(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nd
        else:  # "same": torch puts the odd extra padding at the end
            totals = [d * (k - 1) for d, k in zip(dilation, w.shape[2:], strict=True)]
            pads = tuple((t // 2, t - t // 2) for t in totals)
    else:
        pads = tuple((p, p) for p in _ints(padding, nd))
    attrs = dict(stride=_ints(stride, nd), padding=pads, dilation=dilation, groups=int(groups))
    return ctx.emit("conv", [ctx.value(input)], attrs, {"weight": weight, "bias": bias})


@register_converter(aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d)
def _conv_transpose(ctx, input, weight, bias, stride, padding, output_padding, groups, dilation):
    w, _ = ctx.param(weight, "conv_transpose weight")
    nd = w.ndim - 2
    attrs = dict(
        stride=_ints(stride, nd),
        padding=_ints(padding, nd),
        output_padding=_ints(output_padding, nd),
        dilation=_ints(dilation, nd),
        groups=int(groups),
    )
    params = {"weight": weight, "bias": bias}
    return ctx.emit("conv_transpose", [ctx.value(input)], attrs, params)


@register_converter(aten.convolution)
def _convolution(
    ctx, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
):
    if transposed:
        return _conv_transpose(
            ctx, input, weight, bias, stride, padding, output_padding, groups, dilation
        )
    return _conv(ctx, input, weight, bias, stride, padding, dilation, groups)


@register_converter(aten.linear)
def _linear(ctx, input, weight, bias):
    return ctx.emit("linear", [ctx.value(input)], None, {"weight": weight, "bias": bias})


@register_converter(aten.addmm)
def _addmm(ctx, self, mat1, mat2, beta=1, alpha=1):
    """``beta * self + alpha * (mat1 @ mat2)``. With a weight ``mat2`` (in, out) and a bias
    ``self`` of the model (GPT-2's ``Conv1D``) a kernel layer: ``linear`` with the weight
    transposed to (out, in); otherwise a matmul and an add."""
    weight = ctx.param(mat2, "addmm weight") if _is_param(ctx, mat2) else None
    bias = ctx.param(self, "addmm bias") if _is_param(ctx, self) else None
    if weight is not None and bias is not None and beta == 1 and alpha == 1:
        (w, fqn), (b, _) = weight, bias
        if w.ndim == 2 and b.ndim == 1 and b.shape[0] == w.shape[1]:
            tensors = {"weight": w.t().contiguous(), "bias": b}
            return ctx.emit_tensors("linear", [ctx.value(mat1)], None, tensors, fqn)
    prod = ctx.emit("matmul", [ctx.value(mat1), ctx.value(mat2)])
    if alpha != 1:
        prod = ctx.emit("mul", [prod], {"scalar": _scalar(alpha)})
    term = ctx.value(self)
    if beta != 1:
        term = ctx.emit("mul", [term], {"scalar": _scalar(beta)})
    return ctx.emit("add", [prod, term])


def _is_param(ctx, arg) -> bool:
    try:
        ctx.param(arg, "")
    except Unconvertible:
        return False
    return True


@register_converter(aten.pow.Tensor_Scalar)
def _pow(ctx, self, exponent):
    """``x ** e``: ``integer_pow`` for an integer exponent (GPT-2's ``gelu_new`` cubes)."""
    e = _scalar(exponent)
    if float(e).is_integer():
        return ctx.emit("integer_pow", [ctx.value(self)], {"y": int(e)})
    return ctx.emit("pow", [ctx.value(self)], {"scalar": float(e), "reverse": False})


@register_converter(aten.matmul, aten.bmm, aten.mm)
def _matmul(ctx, self, other=None, mat2=None):
    b = other if other is not None else mat2
    return ctx.emit("matmul", [ctx.value(self), ctx.value(b)])


@register_converter(aten.embedding)
def _embedding(ctx, weight, indices, **_):
    return ctx.emit("embedding", [ctx.value(indices)], None, {"weight": weight})


# --- normalization -----------------------------------------------------------------------


def _bn(ctx, input, weight, bias, running_mean, running_var, eps):
    params = {
        "weight": weight,
        "bias": bias,
        "running_mean": running_mean,
        "running_var": running_var,
    }
    return ctx.emit("batch_norm", [ctx.value(input)], {"eps": float(eps)}, params)


@register_converter(aten._native_batch_norm_legit_no_training)
def _native_bn(ctx, input, weight, bias, running_mean, running_var, momentum, eps):
    return (_bn(ctx, input, weight, bias, running_mean, running_var, eps), None, None)


@register_converter(aten.batch_norm)
def _batch_norm(ctx, input, weight, bias, running_mean, running_var, training, eps, **_):
    if training or running_mean is None:
        raise Unconvertible("batch norm in training mode; call model.eval() before converting")
    return _bn(ctx, input, weight, bias, running_mean, running_var, eps)


@register_converter(aten.layer_norm)
def _layer_norm(ctx, input, normalized_shape, weight, bias, eps, **_):
    attrs = {"normalized_shape": tuple(int(d) for d in normalized_shape), "eps": float(eps)}
    return ctx.emit("layer_norm", [ctx.value(input)], attrs, {"weight": weight, "bias": bias})


@register_converter(aten.native_layer_norm)
def _native_layer_norm(ctx, input, normalized_shape, weight, bias, eps):
    return (_layer_norm(ctx, input, normalized_shape, weight, bias, eps), None, None)


@register_converter(aten.group_norm)
def _group_norm(ctx, input, num_groups, weight, bias, eps, **_):
    attrs = {"num_groups": int(num_groups), "eps": float(eps)}
    return ctx.emit("group_norm", [ctx.value(input)], attrs, {"weight": weight, "bias": bias})


@register_converter(aten.native_group_norm)
def _native_group_norm(ctx, input, weight, bias, N, C, HxW, group, eps):
    return (_group_norm(ctx, input, group, weight, bias, eps), None, None)


# --- activations -------------------------------------------------------------------------


def _unary(op: str):
    def convert(ctx, self, **_):
        return ctx.emit(op, [ctx.value(self)])

    return convert


for _target, _op in (
    (aten.relu, "relu"),
    (aten.relu6, "relu6"),
    (aten.silu, "silu"),
    (aten.hardswish, "hardswish"),
    (aten.hardsigmoid, "hardsigmoid"),
    (aten.sigmoid, "sigmoid"),
    (aten.tanh, "tanh"),
    (aten.abs, "abs"),
    (aten.neg, "neg"),
    (aten.exp, "exp"),
    (aten.log, "log"),
    (aten.sqrt, "sqrt"),
    (aten.rsqrt, "rsqrt"),
    (aten.erf, "erf"),
    (aten.sin, "sin"),
    (aten.cos, "cos"),
):
    register_converter(_target)(_unary(_op))
del _target, _op


@register_converter(aten.hardtanh)
def _hardtanh(ctx, self, min_val, max_val):
    if (float(min_val), float(max_val)) == (0.0, 6.0):
        return ctx.emit("relu6", [ctx.value(self)])
    attrs = {"min_val": float(min_val), "max_val": float(max_val)}
    return ctx.emit("hardtanh", [ctx.value(self)], attrs)


@register_converter(aten.leaky_relu)
def _leaky_relu(ctx, self, negative_slope):
    return ctx.emit("leaky_relu", [ctx.value(self)], {"negative_slope": float(negative_slope)})


@register_converter(aten.gelu)
def _gelu(ctx, self, approximate="none"):
    return ctx.emit("gelu", [ctx.value(self)], {"approximate": str(approximate)})


@register_converter(aten.softmax.int, aten._softmax)
def _softmax(ctx, self, dim, dtype=None, half_to_float=False):
    out = ctx.emit("softmax", [ctx.value(self)], {"axis": _axis(ctx, dim, self)})
    return _cast(ctx, out, dtype, self)


# --- pooling -----------------------------------------------------------------------------


def _check_batched(ctx, x, nd):
    if len(ctx.shape(x)) != nd + 2:
        raise Unconvertible(f"pooling expects a batched (N, C, {nd} spatial) input")


def _max_pool(nd: int):
    def convert(ctx, self, kernel_size, stride, padding, dilation, ceil_mode):
        _check_batched(ctx, self, nd)
        k = _ints(kernel_size, nd)
        attrs = dict(
            kernel_size=k,
            stride=_ints(stride, nd) if stride else k,
            padding=_ints(padding, nd),
            dilation=_ints(dilation, nd),
            ceil_mode=bool(ceil_mode),
        )
        return ctx.emit("max_pool", [ctx.value(self)], attrs)

    return convert


def _avg_pool(nd: int):
    def convert(
        ctx, self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override=None
    ):
        _check_batched(ctx, self, nd)
        k = _ints(kernel_size, nd)
        attrs = dict(
            kernel_size=k,
            stride=_ints(stride, nd) if stride else k,
            padding=_ints(padding, nd),
            ceil_mode=bool(ceil_mode),
            count_include_pad=bool(count_include_pad),
            divisor_override=None if divisor_override is None else int(divisor_override),
        )
        return ctx.emit("avg_pool", [ctx.value(self)], attrs)

    return convert


def _adaptive_avg_pool(nd: int):
    def convert(ctx, self, output_size):
        attrs = {"output_size": _ints(output_size, nd)}
        return ctx.emit("adaptive_avg_pool", [ctx.value(self)], attrs)

    return convert


for _nd_ in (1, 2, 3):
    register_converter(getattr(aten, f"max_pool{_nd_}d"))(_max_pool(_nd_))
    register_converter(getattr(aten, f"avg_pool{_nd_}d"))(_avg_pool(_nd_))
    register_converter(getattr(aten, f"adaptive_avg_pool{_nd_}d"))(_adaptive_avg_pool(_nd_))
register_converter(aten._adaptive_avg_pool2d)(_adaptive_avg_pool(2))
register_converter(aten._adaptive_avg_pool3d)(_adaptive_avg_pool(3))
del _nd_


# --- arithmetic --------------------------------------------------------------------------


def _scalar(v: Any) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Unconvertible(f"scalar operand {v!r} is not a number")
    return v


def _binary(op: str, swap: bool = False):
    def convert(ctx, self, other, alpha=1, rounding_mode=None):
        if rounding_mode is not None:
            raise Unconvertible(f"division with rounding_mode={rounding_mode!r}")
        x, y = (ctx.value(v) if ctx.is_tensor(v) else _scalar(v) for v in (self, other))
        if swap:  # rsub(self, other, alpha) = other - alpha * self
            x, y = y, x
        if alpha != 1:  # add/sub: x +- alpha * y
            y = (
                ctx.emit("mul", [y], {"scalar": _scalar(alpha)})
                if isinstance(y, str)
                else y * alpha
            )
        if isinstance(x, str) and isinstance(y, str):
            return ctx.emit(op, [x, y])
        if isinstance(x, str):
            return ctx.emit(op, [x], {"scalar": y, "reverse": False})
        return ctx.emit(op, [y], {"scalar": x, "reverse": True})

    return convert


register_converter(aten.add)(_binary("add"))
register_converter(aten.sub)(_binary("sub"))
register_converter(aten.rsub)(_binary("sub", swap=True))
register_converter(aten.mul)(_binary("mul"))
register_converter(aten.div)(_binary("div"))


@register_converter(aten.reciprocal)
def _reciprocal(ctx, self):
    return ctx.emit("div", [ctx.value(self)], {"scalar": 1.0, "reverse": True})


# --- shapes ------------------------------------------------------------------------------


_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@register_converter(aten.pad)
def _pad(ctx, self, pad, mode="constant", value=None):
    if mode == "constant":
        return _constant_pad(ctx, self, pad, 0.0 if value is None else value)
    if mode not in _PAD_MODES:
        raise Unconvertible(f"pad mode {mode!r} (constant, reflect, replicate, circular convert)")
    flat = [int(p) for p in pad]
    pairs = tuple((flat[i], flat[i + 1]) for i in range(len(flat) - 2, -1, -2))
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise Unconvertible(f"{mode} padding with negative sizes")
    return ctx.emit("mode_pad", [ctx.value(self)], {"padding": pairs, "mode": _PAD_MODES[mode]})


@register_converter(aten.constant_pad_nd)
def _constant_pad(ctx, self, pad, value=0):
    flat = [int(p) for p in pad]  # torch order: last dim first
    pairs = tuple((flat[i], flat[i + 1]) for i in range(len(flat) - 2, -1, -2))
    return ctx.emit("pad", [ctx.value(self)], {"padding": pairs, "value": float(value)})


@register_converter(aten.cat)
def _cat(ctx, tensors, dim):
    return ctx.emit("cat", ctx.value(list(tensors)), {"axis": _axis(ctx, dim)})


@register_converter(
    aten.view,
    aten.reshape,
    aten._unsafe_view,
    aten.flatten,
    aten.unflatten,
    aten.squeeze,
    aten.unsqueeze,
    aten.view_as,
    aten.reshape_as,
)
def _reshape(ctx, self, **_):
    shape, sym = ctx.shape(), ctx.sym_axes()
    if (shape, sym) == (ctx.shape(self), ctx.sym_axes(self)):
        return ctx.value(self)
    if len(sym) > 1:
        raise Unconvertible(f"a reshape to {len(sym)} axes whose sizes involve the batch size")
    target = tuple(-1 if i in sym else d for i, d in enumerate(shape))
    return ctx.emit("reshape", [ctx.value(self)], {"shape": target})


@register_converter(aten.permute)
def _permute(ctx, self, dims):
    dims = tuple(_axis(ctx, d, self) for d in dims)
    return ctx.emit("permute", [ctx.value(self)], {"dims": dims})


@register_converter(aten.transpose.int)
def _transpose(ctx, self, dim0, dim1):
    dims = list(range(len(ctx.shape(self))))
    i, j = _axis(ctx, dim0, self), _axis(ctx, dim1, self)
    if i == j:
        return ctx.value(self)
    dims[i], dims[j] = dims[j], dims[i]
    return ctx.emit("permute", [ctx.value(self)], {"dims": tuple(dims)})


@register_converter(aten.t)
def _t(ctx, self):
    return _transpose(ctx, self, 0, -1)


@register_converter(aten.expand)
def _expand(ctx, self, size, implicit=False):
    shape, sym = ctx.shape(), ctx.sym_axes()
    if (shape, sym) == (ctx.shape(self), ctx.sym_axes(self)):
        return ctx.value(self)
    lead = len(shape) - len(ctx.shape(self))
    target, like, like_axes = list(shape), None, []
    for i in sym:
        kept = i >= lead and i - lead in ctx.sym_axes(self)
        s = ctx.value(size[i]) if isinstance(size[i], torch.fx.Node) else size[i]
        if kept or s == -1:
            target[i] = -1
        elif isinstance(s, SymSize) and s.value is not None and like in (None, s.value):
            like, target[i] = s.value, -1
            like_axes.append((i, s.axis))
        else:
            raise Unconvertible("expand to a size computed from the batch size")
    attrs = {"shape": tuple(target), "like_axes": tuple(like_axes)}
    inputs = [ctx.value(self)] + ([like] if like is not None else [])
    return ctx.emit("expand", inputs, attrs)


def _emit_slice(ctx, x, axis, start, stop, step):
    if (start, stop, step) == (0, ctx.shape(x)[axis], 1):
        return ctx.value(x)
    ctx.static_axis(x, axis, "slicing")
    attrs = dict(axis=axis, start=start, stop=stop, step=step)
    return ctx.emit("slice", [ctx.value(x)], attrs)


@register_converter(aten.slice.Tensor)
def _slice(ctx, self, dim, start, end, step):
    axis = _axis(ctx, dim, self)
    n = ctx.shape(self)[axis]
    start, stop, step = slice(start, end, step).indices(n)
    if step <= 0:
        raise Unconvertible(f"slice step {step}")
    stop = max(stop, start)
    return _emit_slice(ctx, self, axis, start, stop, step)


@register_converter(aten.select.int)
def _select(ctx, self, dim, index):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "indexing")
    index = int(index) % ctx.shape(self)[axis]
    return ctx.emit("select", [ctx.value(self)], {"axis": axis, "index": index})


def _split_sizes(ctx, x, axis, sizes):
    out, start = [], 0
    for s in sizes:
        out.append(_emit_slice(ctx, x, axis, start, start + s, 1))
        start += s
    return tuple(out)


@register_converter(aten.split_with_sizes, aten.split.sizes)
def _split_with_sizes(ctx, self, split_sizes=None, dim=0, split_size=None):
    axis = _axis(ctx, dim, self)
    sizes = split_sizes if split_sizes is not None else split_size
    return _split_sizes(ctx, self, axis, [int(s) for s in sizes])


@register_converter(aten.split.Tensor)
def _split(ctx, self, split_size, dim=0):
    axis = _axis(ctx, dim, self)
    n, s = ctx.shape(self)[axis], int(split_size)
    return _split_sizes(ctx, self, axis, [min(s, n - i) for i in range(0, n, s)])


@register_converter(aten.chunk)
def _chunk(ctx, self, chunks, dim=0):
    axis = _axis(ctx, dim, self)
    n = ctx.shape(self)[axis]
    s = -(-n // int(chunks))
    return _split_sizes(ctx, self, axis, [min(s, n - i) for i in range(0, n, s)])


@register_converter(aten.unbind.int)
def _unbind(ctx, self, dim=0):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "unbind")
    return tuple(
        ctx.emit("select", [ctx.value(self)], {"axis": axis, "index": i})
        for i in range(ctx.shape(self)[axis])
    )


@register_converter(operator.getitem)
def _getitem(ctx, seq, index):
    v = ctx.value(seq)
    if not isinstance(v, (tuple, list)):
        raise Unconvertible("indexing a value that is not a tuple of tensors")
    item = v[index]
    if item is None and ctx._node().users:
        raise Unconvertible(
            f"output {index} of {seq.target} (statistics or indices) is not supported"
        )
    return item


@register_converter(aten.mean)
def _mean(ctx, self, dim=None, keepdim=False, dtype=None):
    rank = len(ctx.shape(self))
    axes = tuple(range(rank)) if not dim else tuple(_axis(ctx, d, self) for d in dim)
    out = ctx.emit("mean", [ctx.value(self)], {"axis": axes, "keepdims": bool(keepdim)})
    return _cast(ctx, out, dtype, self)


# --- identities, casts, attention --------------------------------------------------------


def _identity(ctx, *args, **kwargs):
    first = kwargs.get("self", kwargs.get("input", args[0] if args else None))
    return ctx.value(first)


for _target in (
    aten.dropout,
    aten.feature_dropout,
    aten.alpha_dropout,
    aten.clone,
    aten.contiguous,
    aten.alias,
    aten.detach,
    aten.lift_fresh_copy,
):
    register_converter(_target)(_identity)
del _target


@register_converter(aten.native_dropout)
def _native_dropout(ctx, input, p, train):
    if train:
        raise Unconvertible("dropout in training mode; call model.eval()")
    return (ctx.value(input), None)


def _cast(ctx, value: str, dtype: Any, like: Any) -> str:
    """Cast ``value`` (computed from fx value ``like``) to the torch ``dtype`` if it differs."""
    if dtype is None or dtype == like.meta["val"].dtype:
        return value
    name = str(dtype).removeprefix("torch.")
    return ctx.emit("cast", [value], {"dtype": name})


@register_converter(aten._to_copy, aten.to.dtype, aten.to.dtype_layout, aten.to.device)
def _to(ctx, self, dtype=None, **_):
    return _cast(ctx, ctx.value(self), dtype, self)


@register_converter(aten._assert_tensor_metadata)
def _assert_metadata(ctx, *args, **kwargs):
    return None  # a check torch inserts around casts; shapes are static here


@register_converter(aten.scaled_dot_product_attention)
def _sdpa(ctx, query, key, value, attn_mask, dropout_p, is_causal, scale=None, enable_gqa=False):
    if enable_gqa:
        raise Unconvertible("scaled_dot_product_attention with enable_gqa=True")
    inputs = [ctx.value(query), ctx.value(key), ctx.value(value)]
    if attn_mask is not None:
        inputs.append(ctx.value(attn_mask))
    attrs = {"is_causal": bool(is_causal), "scale": None if scale is None else float(scale)}
    return ctx.emit("scaled_dot_product_attention", inputs, attrs)


# --- sizes (a dynamic batch) -------------------------------------------------------------


@register_converter(aten.sym_size.int)
def _sym_size(ctx, self, dim):
    return SymSize(ctx.value(self), _axis(ctx, dim, self))


def _sym_arith(ctx, *args, **kwargs):
    return SymSize(None, 0)  # a size computed from sizes: reshape's -1 stands for it


register_converter(
    operator.mul,
    operator.add,
    operator.sub,
    operator.floordiv,
    operator.truediv,
    operator.mod,
    torch.sym_int,
)(_sym_arith)


@register_converter(aten._assert_scalar, aten.sym_constrain_range_for_size)
def _size_check(ctx, *args, **kwargs):
    return None  # torch's runtime checks on symbolic sizes; jq checks input shapes instead
