"""ATen converters that move values by position, for the rest of torch's Core ATen opset:
``sort``, ``topk``, ``gather``, the ``scatter`` family, ``index_put``, ``masked_scatter``,
``repeat``, ``diagonal``, reflection / replication padding, ``fill``, ``copy``,
``select_scatter``, ``as_strided``, ``tril`` / ``triu``, pooling with indices, ``cdist`` /
``pdist``. Their coverage is tabled in ``_coverage.py``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._aten import _axis, _cast, _max_pool, _scalar
from ._aten_index import _slice_scatter_parts
from ._batch import SymSize
from ._convert import ConvertContext, Unconvertible, register_converter

aten = torch.ops.aten


def _table(ctx: ConvertContext, tensor: torch.Tensor) -> str:
    """A ``constant`` node holding ``tensor`` (an index table or mask built at conversion)."""
    return ctx.emit_tensors("constant", [], None, {"value": tensor}, None)


def _static_shape(ctx: ConvertContext, arg: Any, what: str) -> tuple[int, ...]:
    for a in ctx.sym_axes(arg):
        ctx.static_axis(arg, a, what)
    return ctx.shape(arg)


# --- sorting ---------------------------------------------------------------------------------


@register_converter(aten.sort.default, aten.sort.stable)
def _sort(ctx, self, dim=-1, descending=False, stable=None):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "sort")
    x, attrs = ctx.value(self), {"axis": axis, "descending": bool(descending)}
    return (
        ctx.emit("sort", [x], {**attrs, "indices": False}),
        ctx.emit("sort", [x], {**attrs, "indices": True}),
    )


@register_converter(aten.topk)
def _topk(ctx, self, k, dim=-1, largest=True, sorted=True):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "topk")
    x, attrs = ctx.value(self), {"k": int(k), "axis": axis, "largest": bool(largest)}
    return (
        ctx.emit("topk", [x], {**attrs, "indices": False}),
        ctx.emit("topk", [x], {**attrs, "indices": True}),
    )


# --- gather / scatter ------------------------------------------------------------------------


@register_converter(aten.gather)
def _gather(ctx, self, dim, index, sparse_grad=False):
    axis = _axis(ctx, dim, self)
    return ctx.emit("gather", [ctx.value(self), ctx.value(index)], {"axis": axis})


_REDUCE_NAMES = {"add": "sum", "multiply": "prod"}


@register_converter(aten.scatter, aten.scatter_add, aten.scatter_reduce)
def _scatter(ctx, self, dim, index, src=None, value=None, reduce=None, include_self=True):
    attrs: dict[str, Any] = {"axis": _axis(ctx, dim, self), "include_self": bool(include_self)}
    if ctx._node().target.overloadpacket is aten.scatter_add:
        reduce = "sum"
    attrs["reduce"] = None if reduce is None else _REDUCE_NAMES.get(reduce, reduce)
    if attrs["reduce"] not in (None, "sum", "prod", "mean", "amax", "amin"):
        raise Unconvertible(f"scatter with reduce={reduce!r}")
    inputs = [ctx.value(self), ctx.value(index)]
    if src is not None and ctx.is_tensor(src):
        inputs.append(ctx.value(src))
    else:
        attrs["value"] = _scalar(value if src is None else src)
    return ctx.emit("scatter", inputs, attrs)


@register_converter(aten.index_put)
def _index_put(ctx, self, indices, values, accumulate=False):
    positions = tuple(i is not None for i in indices)
    given = [i for i in indices if i is not None]
    if any(i.meta["val"].dtype == torch.bool for i in given):
        raise Unconvertible("index_put with a boolean mask index (use torch.where)")
    for axis, taken in enumerate(positions):
        if taken:
            ctx.static_axis(self, axis, "index_put")
    inputs = [ctx.value(self), ctx.value(values), *ctx.value(given)]
    attrs = {"positions": positions, "accumulate": bool(accumulate)}
    return ctx.emit("index_put", inputs, attrs)


@register_converter(aten.masked_scatter)
def _masked_scatter(ctx, self, mask, source):
    return ctx.emit("masked_scatter", [ctx.value(self), ctx.value(mask), ctx.value(source)])


@register_converter(aten.select_scatter)
def _select_scatter(ctx, self, src, dim, index):
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "select_scatter")
    n = ctx.shape(self)[axis]
    i = int(index) % n
    shape = list(ctx.shape(src))
    sym = ctx.sym_axes(src)
    shape = [-1 if k in sym else d for k, d in enumerate(shape)]
    shape.insert(axis, 1)
    piece = ctx.emit("reshape", [ctx.value(src)], {"shape": tuple(shape)})
    parts = _slice_scatter_parts(ctx, self, piece, axis, i, i + 1)
    return parts[0] if len(parts) == 1 else ctx.emit("cat", parts, {"axis": axis})


# --- shapes ------------------------------------------------------------------------------------


@register_converter(aten.repeat)
def _repeat(ctx, self, repeats):
    reps = tuple(int(r) for r in repeats)
    lead = len(reps) - len(ctx.shape(self))
    for a in ctx.sym_axes(self):
        if reps[a + lead] != 1:
            ctx.static_axis(self, a, "repeat")
    return ctx.emit("tile", [ctx.value(self)], {"reps": reps})


@register_converter(aten.repeat_interleave.self_int)
def _repeat_interleave(ctx, self, repeats, dim=None, output_size=None):
    if dim is None:
        raise Unconvertible("repeat_interleave of the flattened tensor (no dim)")
    axis = _axis(ctx, dim, self)
    ctx.static_axis(self, axis, "repeat_interleave")
    n = ctx.shape(self)[axis]
    idx = torch.arange(n).repeat_interleave(int(repeats))
    positions = tuple(a == axis for a in range(axis + 1))
    table = _table(ctx, idx)
    return ctx.emit("index", [ctx.value(self), table], {"positions": positions})


@register_converter(aten.diagonal)
def _diagonal(ctx, self, offset=0, dim1=0, dim2=1):
    a1, a2 = _axis(ctx, dim1, self), _axis(ctx, dim2, self)
    ctx.static_axis(self, a1, "diagonal")
    ctx.static_axis(self, a2, "diagonal")
    attrs = {"offset": int(offset), "axis1": a1, "axis2": a2}
    return ctx.emit("diagonal", [ctx.value(self)], attrs)


def _tri(lower: bool):
    def convert(ctx, self, diagonal=0):
        rows, cols = _static_shape(ctx, self, "tril/triu")[-2:]
        keep = torch.ones(rows, cols, dtype=torch.bool)
        keep = keep.tril(int(diagonal)) if lower else keep.triu(int(diagonal))
        mask = _table(ctx, keep)
        return ctx.emit("where", [mask, ctx.value(self)], {"x_scalar": None, "y_scalar": 0})

    return convert


register_converter(aten.tril)(_tri(True))
register_converter(aten.triu)(_tri(False))


def _mode_pad(mode: str):
    def convert(ctx, self, padding):
        flat = [int(p) for p in padding]
        pairs = tuple((flat[i], flat[i + 1]) for i in range(len(flat) - 2, -1, -2))
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            raise Unconvertible(f"{mode} padding with negative sizes")
        return ctx.emit("mode_pad", [ctx.value(self)], {"padding": pairs, "mode": mode})

    return convert


for _nd in (1, 2, 3):
    register_converter(getattr(aten, f"reflection_pad{_nd}d"))(_mode_pad("reflect"))
    register_converter(getattr(aten, f"replication_pad{_nd}d"))(_mode_pad("edge"))
register_converter(aten._pad_circular)(_mode_pad("wrap"))
del _nd


@register_converter(aten.fill.Scalar, aten.fill.Tensor, aten.full_like, aten.zeros_like)
@register_converter(aten.ones_like)
def _fill(ctx, self, value=None, fill_value=None, dtype=None, **_):
    """A tensor of ``self``'s shape (what folding leaves: a shape with the dynamic batch)."""
    packet = ctx._node().target.overloadpacket
    given = value if value is not None else fill_value
    v = {aten.zeros_like: 0, aten.ones_like: 1}.get(packet, given)
    if ctx.is_tensor(v):
        raise Unconvertible("fill with a value computed from the inputs")
    name = str(ctx._node().meta["val"].dtype).removeprefix("torch.")
    return ctx.emit("full_like", [ctx.value(self)], {"value": _scalar(v), "dtype": name})


@register_converter(aten.copy)
def _copy(ctx, self, src, non_blocking=False):
    """``self.copy_(src)`` functionalized: ``src`` broadcast to ``self``'s shape and dtype."""
    out = ctx.value(src)
    if (ctx.shape(src), ctx.sym_axes(src)) != (ctx.shape(self), ctx.sym_axes(self)):
        shape = tuple(-1 if i in ctx.sym_axes(self) else d for i, d in enumerate(ctx.shape(self)))
        if ctx.sym_axes(self) and len(ctx.shape(src)) != len(shape):
            raise Unconvertible("copy onto a batch-sized tensor from a smaller one")
        out = ctx.emit("expand", [out], {"shape": shape, "like_axes": ()})
    return _cast(ctx, out, self.meta["val"].dtype, src)


@register_converter(aten.as_strided)
def _as_strided(ctx, self, size, stride, storage_offset=None):
    """A view of a contiguous tensor's storage: one gather with a constant index table."""
    shape = _static_shape(ctx, self, "as_strided")
    if list(self.meta["val"].stride()) != list(torch.empty(shape).stride()):
        raise Unconvertible("as_strided of a non-contiguous tensor")
    flat_index = torch.as_strided(
        torch.arange(max(1, torch.Size(shape).numel())),
        [int(s) for s in size],
        [int(s) for s in stride],
        int(storage_offset or 0),
    ).clone()
    flat = ctx.emit("reshape", [ctx.value(self)], {"shape": (-1,)})
    table = _table(ctx, flat_index)
    return ctx.emit("index", [flat, table], {"positions": (True,)})


# --- pooling with indices, distances, sizes ----------------------------------------------------


def _max_pool_values(nd: int):
    convert = _max_pool(nd)

    def values(ctx, self, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        return (convert(ctx, self, kernel_size, stride, padding, dilation, ceil_mode), None)

    return values


register_converter(aten.max_pool1d_with_indices)(_max_pool_values(1))
register_converter(aten.max_pool2d_with_indices)(_max_pool_values(2))
register_converter(aten.max_pool3d_with_indices)(_max_pool_values(3))


def _insert_axis(ctx: ConvertContext, arg: Any, axis: int) -> str:
    sym = ctx.sym_axes(arg)
    shape = [-1 if i in sym else d for i, d in enumerate(ctx.shape(arg))]
    shape.insert(axis, 1)
    return ctx.emit("reshape", [ctx.value(arg)], {"shape": tuple(shape)})


def _p_norm(ctx: ConvertContext, diff: str, p: float, axis: int) -> str:
    """The ``p``-norm of ``diff`` along ``axis`` (removed), torch's ``cdist`` rules."""
    axes = {"axes": (axis,)}
    a = ctx.emit("abs", [diff])
    if p == 0:
        nz = ctx.emit("ne", [a], {"scalar": 0.0, "reverse": False})
        return ctx.emit("reduce_sum", [ctx.emit("cast", [nz], {"dtype": "float32"})], axes)
    if p == 1:
        return ctx.emit("reduce_sum", [a], axes)
    if p == float("inf"):
        return ctx.emit("reduce_max", [a], axes)
    if p == 2:
        return ctx.emit("sqrt", [ctx.emit("reduce_sum", [ctx.emit("mul", [a, a])], axes)])
    powered = ctx.emit("pow", [a], {"scalar": float(p), "reverse": False})
    total = ctx.emit("reduce_sum", [powered], axes)
    return ctx.emit("pow", [total], {"scalar": 1.0 / float(p), "reverse": False})


@register_converter(aten._cdist_forward, aten.cdist)
def _cdist(ctx, x1, x2, p=2.0, compute_mode=None):
    """``|x1[..., i, :] - x2[..., j, :]|_p`` for x1 (..., P, M), x2 (..., R, M)."""
    r1 = len(ctx.shape(x1))
    a = _insert_axis(ctx, x1, r1 - 1)  # (..., P, 1, M)
    b = _insert_axis(ctx, x2, len(ctx.shape(x2)) - 2)  # (..., 1, R, M)
    return _p_norm(ctx, ctx.emit("sub", [a, b]), float(p), r1)


@register_converter(aten._pdist_forward, aten.pdist)
def _pdist(ctx, self, p=2.0):
    """The distances between rows ``i < j`` of ``self`` (N, M), row-major: ``cdist`` and a
    constant gather of its upper triangle."""
    n, _ = _static_shape(ctx, self, "pdist")
    diff = ctx.emit("sub", [_insert_axis(ctx, self, 1), _insert_axis(ctx, self, 0)])
    dist = _p_norm(ctx, diff, float(p), 2)
    i, j = torch.triu_indices(n, n, offset=1)
    ti = _table(ctx, i)
    tj = _table(ctx, j)
    return ctx.emit("index", [dist, ti, tj], {"positions": (True, True)})


@register_converter(aten.sym_numel)
def _sym_numel(ctx, self):
    return SymSize(None, 0)  # a size computed from the batch: reshape's -1 stands for it


# --- folding, sampling, bags -------------------------------------------------------------------


@register_converter(aten.col2im)
def _col2im(ctx, self, output_size, kernel_size, dilation, padding, stride):
    if len(ctx.shape(self)) != 3:
        raise Unconvertible("col2im of an unbatched input (N, C*kh*kw, L expected)")
    attrs = {
        "output_size": tuple(int(s) for s in output_size),
        "kernel_size": tuple(int(s) for s in kernel_size),
        "dilation": tuple(int(s) for s in dilation),
        "padding": tuple(int(s) for s in padding),
        "stride": tuple(int(s) for s in stride),
    }
    return ctx.emit("col2im", [ctx.value(self)], attrs)


_GRID_MODES = {0: "bilinear", 1: "nearest"}
_GRID_PADDING = {0: "zeros", 1: "border"}


@register_converter(aten.grid_sampler_2d, aten.grid_sampler)
def _grid_sampler(ctx, input, grid, interpolation_mode, padding_mode, align_corners):
    if len(ctx.shape(input)) != 4:
        raise Unconvertible("grid_sample of a 5-d input (2-d sampling converts)")
    if int(interpolation_mode) not in _GRID_MODES:
        raise Unconvertible("grid_sample with mode='bicubic' (bilinear and nearest convert)")
    if int(padding_mode) not in _GRID_PADDING:
        raise Unconvertible("grid_sample with padding_mode='reflection' (zeros and border convert)")
    attrs = {
        "mode": _GRID_MODES[int(interpolation_mode)],
        "padding_mode": _GRID_PADDING[int(padding_mode)],
        "align_corners": bool(align_corners),
    }
    return ctx.emit("grid_sample", [ctx.value(input), ctx.value(grid)], attrs)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@register_converter(aten._embedding_bag, aten._embedding_bag_forward_only, aten.embedding_bag)
def _embedding_bag(
    ctx,
    weight,
    indices,
    offsets,
    scale_grad_by_freq=False,
    mode=0,
    sparse=False,
    per_sample_weights=None,
    include_last_offset=False,
    padding_idx=-1,
):
    """The bags (output 0); ``offset2bag``, ``bag_size`` and ``max_indices`` are refused
    where used."""
    if len(ctx.shape(indices)) != 1:
        raise Unconvertible("embedding_bag with 2-d indices (pass 1-d indices and offsets)")
    attrs = {
        "mode": _BAG_MODES[int(mode)],
        "include_last_offset": bool(include_last_offset),
        "padding_idx": None if padding_idx is None or int(padding_idx) < 0 else int(padding_idx),
    }
    inputs = [ctx.value(indices), ctx.value(offsets)]
    if per_sample_weights is not None:
        inputs.append(ctx.value(per_sample_weights))
    out = ctx.emit("embedding_bag", inputs, attrs, {"weight": weight})
    return (out, None, None, None)
