"""ATen converters for masks, indexing, norms and resampling: what transformers and current
vision models compute beyond ``_aten.py``'s layers (comparisons and logical ops, ``where`` and
``masked_fill``, advanced indexing, ``roll``, vector norms, sums and maxima, ``interpolate``).

Ops whose value depends on no model input (a causal or shifted-window mask, rotary tables) are
evaluated once at conversion (``ConvertContext._fold``) and reach no converter.
"""

from __future__ import annotations

from typing import Any

import torch

from ._aten import _axis, _binary, _cast, _scalar
from ._batch import SymSize
from ._convert import ConvertContext, Unconvertible, register_converter

aten = torch.ops.aten


def _keepdims(ctx: ConvertContext, value: str, keepdim: bool) -> str:
    """``value`` (a reduction's output) reshaped to the node's shape when ``keepdim``."""
    if not keepdim:
        return value
    sym = ctx.sym_axes()
    shape = tuple(-1 if i in sym else d for i, d in enumerate(ctx.shape()))
    return ctx.emit("reshape", [value], {"shape": shape})


def _dims(ctx: ConvertContext, dim: Any, arg: Any) -> tuple[int, ...]:
    """Reduction axes: ``dim`` (an int, a list, or None/[] for all) normalized."""
    rank = len(ctx.shape(arg))
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return tuple(sorted(_axis(ctx, d, arg) for d in dims))


# --- comparisons and logic ---------------------------------------------------------------

for _target, _op in (
    (aten.eq, "eq"),
    (aten.ne, "ne"),
    (aten.lt, "lt"),
    (aten.le, "le"),
    (aten.gt, "gt"),
    (aten.ge, "ge"),
    (aten.logical_and, "and"),
    (aten.logical_or, "or"),
    (aten.maximum, "maximum"),
    (aten.minimum, "minimum"),
):
    register_converter(_target)(_binary(_op))
del _target, _op


def _where_value(ctx, v):
    return (None, ctx.value(v)) if ctx.is_tensor(v) else (_scalar(v), None)


@register_converter(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf)
@register_converter(aten.where.Scalar)
def _where(ctx, condition, self, other):
    (xs, x), (ys, y) = _where_value(ctx, self), _where_value(ctx, other)
    inputs = [ctx.value(condition)] + [v for v in (x, y) if v is not None]
    return ctx.emit("where", inputs, {"x_scalar": xs, "y_scalar": ys})


@register_converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def _masked_fill(ctx, self, mask, value):
    if ctx.is_tensor(value):
        if ctx.shape(value) != ():
            raise Unconvertible("masked_fill with a value that is not a scalar")
        inputs = [ctx.value(mask), ctx.value(value), ctx.value(self)]
        return ctx.emit("where", inputs, {})
    inputs = [ctx.value(mask), ctx.value(self)]
    return ctx.emit("where", inputs, {"x_scalar": _scalar(value)})


# --- indexing ------------------------------------------------------------------------------


@register_converter(aten.index.Tensor)
def _index(ctx, self, indices):
    positions = tuple(i is not None for i in indices)
    given = [i for i in indices if i is not None]
    if any(i.meta["val"].dtype == torch.bool for i in given):
        raise Unconvertible("indexing with a boolean mask (the output size depends on values)")
    it = iter(given)
    for axis, taken in enumerate(positions):
        # an index computed from the inputs (e.g. arange of the batch size) keeps the batch
        # dynamic; a constant one on the batch axis would bake its size in
        if taken and not ctx.sym_axes(next(it)):
            ctx.static_axis(self, axis, "indexing with a constant index")
    return ctx.emit("index", [ctx.value(self), *ctx.value(given)], {"positions": positions})


@register_converter(aten.index_select)
def _index_select(ctx, self, dim, index):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "index_select")
    positions = tuple(a == axis for a in range(axis + 1))
    return ctx.emit("index", [ctx.value(self), ctx.value(index)], {"positions": positions})


@register_converter(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(ctx, start=0, end=None, step=1, dtype=None, **_):
    if end is None:
        start, end = 0, start
    size = ctx.value(end) if isinstance(end, torch.fx.Node) else end
    if not (isinstance(size, SymSize) and size.value is not None and start == 0):
        raise Unconvertible("arange whose length is computed from the batch size")
    name = str(ctx._node().meta["val"].dtype).removeprefix("torch.")
    attrs = {"start": 0, "step": _scalar(step), "axis": size.axis, "dtype": name}
    return ctx.emit("arange", [size.value], attrs)


@register_converter(aten.cumsum)
def _cumsum(ctx, self, dim, dtype=None):
    name = str(ctx._node().meta["val"].dtype).removeprefix("torch.")
    return ctx.emit("cumsum", [ctx.value(self)], {"axis": _axis(ctx, dim, self), "dtype": name})


@register_converter(aten.diff)
def _diff(ctx, self, n=1, dim=-1, prepend=None, append=None):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "diff")
    parts = [ctx.value(p) for p in (prepend, self, append) if p is not None]
    x = parts[0] if len(parts) == 1 else ctx.emit("cat", parts, {"axis": axis})
    size = sum(ctx.shape(p)[axis] for p in (prepend, self, append) if p is not None)
    for k in range(int(n)):
        m = size - k
        hi = ctx.emit("slice", [x], dict(axis=axis, start=1, stop=m, step=1))
        lo = ctx.emit("slice", [x], dict(axis=axis, start=0, stop=m - 1, step=1))
        x = ctx.emit("sub", [hi, lo])
    return x


@register_converter(aten.flip)
def _flip(ctx, self, dims):
    axes = tuple(_axis(ctx, d, self) for d in dims)
    for a in axes:
        ctx.static_axis(self, a, "flip")
    return ctx.emit("flip", [ctx.value(self)], {"axes": axes})


@register_converter(aten.roll)
def _roll(ctx, self, shifts, dims=()):
    if not dims:
        raise Unconvertible("roll of the flattened tensor (no dims)")
    axes = tuple(_axis(ctx, d, self) for d in dims)
    for a in axes:
        ctx.static_axis(self, a, "roll")
    shifts = tuple(int(s) for s in shifts)
    return ctx.emit("roll", [ctx.value(self)], {"shifts": shifts, "axes": axes})


# --- reductions and norms ------------------------------------------------------------------


def _reduce(op: str):
    def convert(ctx, self, dim=None, keepdim=False, dtype=None, **_):
        axes = _dims(ctx, dim, self)
        out = ctx.emit(op, [ctx.value(self)], {"axes": axes})
        return _cast(ctx, _keepdims(ctx, out, keepdim), dtype, self)

    return convert


register_converter(aten.sum.dim_IntList)(_reduce("reduce_sum"))
register_converter(aten.amax)(_reduce("reduce_max"))
register_converter(aten.amin)(_reduce("reduce_min"))


@register_converter(aten.linalg_vector_norm)
def _vector_norm(ctx, self, ord=2, dim=None, keepdim=False, dtype=None):
    x, axes = ctx.value(self), _dims(ctx, dim, self)
    if ord == 2:
        total = ctx.emit("reduce_sum", [ctx.emit("mul", [x, x])], {"axes": axes})
        out = ctx.emit("sqrt", [total])
    elif ord == 1:
        out = ctx.emit("reduce_sum", [ctx.emit("abs", [x])], {"axes": axes})
    elif ord == float("inf"):
        out = ctx.emit("reduce_max", [ctx.emit("abs", [x])], {"axes": axes})
    else:
        raise Unconvertible(f"vector norm of order {ord} (2, 1 and inf convert)")
    return _cast(ctx, _keepdims(ctx, out, keepdim), dtype, self)


@register_converter(aten.addcmul)
def _addcmul(ctx, self, tensor1, tensor2, value=1):
    prod = ctx.emit("mul", [ctx.value(tensor1), ctx.value(tensor2)])
    if value != 1:
        prod = ctx.emit("mul", [prod], {"scalar": _scalar(value)})
    return ctx.emit("add", [ctx.value(self), prod])


# --- resampling ----------------------------------------------------------------------------


def _upsample(mode: str, align: bool):
    def convert(ctx, input, output_size=None, align_corners=None, scale_factors=None, **kw):
        nd = len(ctx.shape(input)) - 2
        if scale_factors is None and any(k.startswith("scales") for k in kw):
            vals = [kw[k] for k in sorted(kw) if k.startswith("scales")]
            scale_factors = None if all(v is None for v in vals) else vals
        sizes = ctx.shape()[2:]
        scales = tuple(float(s) for s in scale_factors) if scale_factors else None
        if scales is not None and len(scales) != nd:
            raise Unconvertible(f"{len(scales)} scale factors for {nd} spatial axes")
        attrs = {
            "sizes": tuple(sizes),
            "mode": mode,
            "align_corners": bool(align_corners) if align else None,
            "scales": scales,
        }
        return ctx.emit("resize", [ctx.value(input)], attrs)

    return convert


for _nd in (1, 2, 3):
    for _name, _mode, _align in (
        (f"upsample_nearest{_nd}d", "nearest", False),
        (f"_upsample_nearest_exact{_nd}d", "nearest-exact", False),
        (f"upsample_{('linear', 'bilinear', 'trilinear')[_nd - 1]}{_nd}d", "linear", True),
    ):
        register_converter(getattr(aten, _name))(_upsample(_mode, _align))
del _nd, _name, _mode, _align


@register_converter(aten.slice_scatter)
def _slice_scatter(ctx, self, src, dim=0, start=None, end=None, step=1):
    axis = _axis(ctx, dim, self)
    n = ctx.shape(self)[axis]
    start, stop, step = slice(start, end, step).indices(n)
    if step != 1:
        raise Unconvertible(f"slice_scatter with step {step}")
    if (start, stop) == (0, n) and ctx.sym_axes(src) == ctx.sym_axes(self):
        return ctx.value(src)  # the whole axis (a write to x[:, a:b] writes all of axis 0)
    ctx.static_axis(self, axis, "slice_scatter")
    parts = _slice_scatter_parts(ctx, self, ctx.value(src), axis, start, stop)
    return parts[0] if len(parts) == 1 else ctx.emit("cat", parts, {"axis": axis})


def _slice_scatter_parts(ctx, self, src: str, axis: int, start: int, stop: int) -> list[str]:
    """The pieces of ``self`` before ``start`` and from ``stop`` on ``axis``, with ``src``
    between them, to concatenate."""
    x, n, parts = ctx.value(self), ctx.shape(self)[axis], []
    if start > 0:
        parts.append(ctx.emit("slice", [x], dict(axis=axis, start=0, stop=start, step=1)))
    parts.append(src)
    if stop < n:
        parts.append(ctx.emit("slice", [x], dict(axis=axis, start=stop, stop=n, step=1)))
    return parts
