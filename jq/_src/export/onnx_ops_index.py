"""ONNX emitters for jq's ops that select, move and combine values by position
(``jq/_src/graph/ops/indexing.py``, ``shapes.py``, ``resampling.py``): gathers and scatters,
sort and top-k, flips, rolls, tiles, diagonals, slices, paddings, resizing, sampling grids.

Sizes the emitters need (an axis length, a broadcast shape) come from the abstract trace on
the export example; the batch axis stays dynamic where the op reads it from ``Shape``. An op
whose attributes ask for what ONNX cannot express raises ``NotImplementedError`` saying so.
"""

from __future__ import annotations

import numpy as np

from ..graph.graph import Node
from .onnx_ops import onnx_op
from .onnx_values import INT64_MIN, cast, i64, out_dtype, reduce, typed, unsqueeze


def _int64(b, node: Node, xs, i: int) -> str:
    return cast(b, xs[i], b.dtype_of(node.inputs[i]), "int64", node.name)


def _key(b, node: Node, xs, first: int, positions) -> tuple[str, list[int], list[int], tuple]:
    """The advanced-indexing key of ``index`` / ``index_put``: (GatherND / ScatterND indices
    (*B, k) int64, the indexed axes, the others, B). Indices are taken modulo the axis size
    (negative ones count from the end) and broadcast together."""
    x_name, n = node.inputs[0], node.name
    shape = b.shape_of(x_name)
    taken = [a for a, p in enumerate(positions) if p]
    rest = [a for a in range(len(shape)) if a not in taken]
    idx_names = node.inputs[first : first + len(taken)]
    bshape = tuple(np.broadcast_shapes(*(b.shape_of(v) for v in idx_names)))
    cols = []
    for k, axis in enumerate(taken):
        v = _int64(b, node, xs, first + k)
        v = b.add("Mod", [v, i64(b, shape[axis], f"{n}.size{axis}")], n, fmod=0)
        v = b.add("Expand", [v, i64(b, bshape, f"{n}.bshape")], n)
        cols.append(unsqueeze(b, v, [len(bshape)], f"{n}.col{k}"))
    return b.add("Concat", cols, f"{n}.key", axis=-1), taken, rest, bshape


def _numpy_order(taken: list[int], nb: int, nrest: int) -> list[int] | None:
    """The permutation from GatherND's layout (B, rest) to NumPy's advanced-indexing one:
    adjacent indexed axes put B where they were, others put it first (``None``: no change)."""
    t0 = taken[0]
    if taken != list(range(t0, t0 + len(taken))) or t0 == 0:
        return None
    return list(range(nb, nb + t0)) + list(range(nb)) + list(range(nb + t0, nb + nrest))


def _transpose(b, x: str, perm, base: str) -> str:
    if list(perm) == sorted(perm):
        return x
    return b.add("Transpose", [x], base, perm=list(perm))


@onnx_op("index")
def _index(b, node: Node, xs, params):
    """``x[i0, :, i2, ...]`` as GatherND on x with its indexed axes moved first."""
    n = node.name
    if not any(node.attr("positions")):
        return b.add("Identity", xs[:1], n)
    key, taken, rest, bshape = _key(b, node, xs, 1, node.attr("positions"))
    xt = _transpose(b, xs[0], taken + rest, f"{n}.front")
    g = b.add("GatherND", [xt, key], n)
    perm = _numpy_order(taken, len(bshape), len(rest))
    return g if perm is None else _transpose(b, g, perm, n)


@onnx_op("index_put", opset=16)
def _index_put(b, node: Node, xs, params):
    """``x[key] = values`` (``accumulate``: ``+=``) as ScatterND on x with its indexed axes
    moved first, values broadcast to the indexed shape and moved likewise."""
    n = node.name
    key, taken, rest, bshape = _key(b, node, xs, 2, node.attr("positions"))
    front = taken + rest
    xt = _transpose(b, xs[0], front, f"{n}.front")
    shape = b.shape_of(node.inputs[0])
    gathered = list(bshape) + [shape[a] for a in rest]  # GatherND layout
    perm = _numpy_order(taken, len(bshape), len(rest))
    numpy_shape = gathered if perm is None else [gathered[p] for p in perm]
    v = cast(b, xs[1], b.dtype_of(node.inputs[1]), b.dtype_of(node.inputs[0]), n)
    v = b.add("Expand", [v, i64(b, numpy_shape, f"{n}.vshape")], n)
    if perm is not None:
        v = _transpose(b, v, list(np.argsort(perm)), f"{n}.vfront")
    kw = {"reduction": "add"} if node.attr("accumulate", False) else {}
    y = b.add("ScatterND", [xt, key, v], n, **kw)
    return _transpose(b, y, list(np.argsort(front)), n)


@onnx_op("gather")
def _gather(b, node: Node, xs, params):
    return b.add(
        "GatherElements", [xs[0], _int64(b, node, xs, 1)], node.name, axis=int(node.attr("axis"))
    )


_SCATTER_REDUCTION = {"sum": "add", "mean": "add", "prod": "mul", "amax": "max", "amin": "min"}


@onnx_op("scatter", opset=18)
def _scatter(b, node: Node, xs, params):
    """``torch.scatter`` / ``scatter_reduce`` as ScatterElements (``mean``: a sum over a
    count of the writes)."""
    n, a = node.name, node.attrs_dict
    axis, reduction, dt = int(a["axis"]), a.get("reduce"), b.dtype_of(node.inputs[0])
    idx = _int64(b, node, xs, 1)
    ishape = b.shape_of(node.inputs[1])
    if len(xs) > 2:
        zeros = i64(b, [0] * len(ishape), f"{n}.starts")
        src = b.add("Slice", [xs[2], zeros, i64(b, ishape, f"{n}.ends")], f"{n}.src")
        upd = cast(b, src, b.dtype_of(node.inputs[2]), dt, n)
    else:
        upd = b.add("Expand", [typed(b, a["value"], dt, f"{n}.value"), b.add("Shape", [idx], n)], n)
    x = xs[0]
    if reduction is None:
        return b.add("ScatterElements", [x, idx, upd], n, axis=axis)
    if reduction not in _SCATTER_REDUCTION:
        raise NotImplementedError(f"scatter with reduce={reduction!r}")
    if not a.get("include_self", True):
        ident = {"sum": 0, "mean": 0, "prod": 1}.get(reduction)
        if ident is None:
            info = np.finfo(dt) if np.issubdtype(np.dtype(dt), np.floating) else np.iinfo(dt)
            ident = info.min if reduction == "amax" else info.max
        fill = b.add("Expand", [typed(b, ident, dt, f"{n}.ident"), b.add("Shape", [idx], n)], n)
        x = b.add("ScatterElements", [x, idx, fill], f"{n}.base", axis=axis)
    out = b.add(
        "ScatterElements", [x, idx, upd], n, axis=axis, reduction=_SCATTER_REDUCTION[reduction]
    )
    if reduction != "mean":
        return out
    start = 1 if a.get("include_self", True) else 0
    ones = b.add("Expand", [typed(b, 1, dt, f"{n}.one"), b.add("Shape", [idx], n)], n)
    base = b.add("Expand", [typed(b, start, dt, f"{n}.start"), b.add("Shape", [xs[0]], n)], n)
    count = b.add("ScatterElements", [base, idx, ones], f"{n}.count", axis=axis, reduction="add")
    zero = typed(b, 0, dt, f"{n}.zero")
    mean = b.add("Div", [out, b.add("Max", [count, typed(b, 1, dt, f"{n}.one")], n)], n)
    return b.add("Where", [b.add("Greater", [count, zero], n), mean, xs[0]], n)


@onnx_op("masked_scatter")
def _masked_scatter(b, node: Node, xs, params):
    """Where the mask is set, the next element of ``src`` (row-major): a running count of
    the mask picks it."""
    n = node.name
    shape = b.add("Shape", [xs[0]], f"{n}.shape")
    m = b.add("Expand", [cast(b, xs[1], b.dtype_of(node.inputs[1]), "bool", n), shape], n)
    flat = b.add("Reshape", [cast(b, m, "bool", "int64", n), i64(b, [-1], f"{n}.flat")], n)
    pos = b.add(
        "Sub", [b.add("CumSum", [flat, i64(b, 0, f"{n}.axis")], n), i64(b, 1, f"{n}.one")], n
    )
    size = int(np.prod(b.shape_of(node.inputs[2])))
    pos = b.add("Clip", [pos, i64(b, 0, f"{n}.lo"), i64(b, max(size - 1, 0), f"{n}.hi")], n)
    src = b.add("Reshape", [xs[2], i64(b, [-1], f"{n}.srcflat")], n)
    taken = b.add("Reshape", [b.add("Gather", [src, pos], n), shape], n)
    taken = cast(b, taken, b.dtype_of(node.inputs[2]), b.dtype_of(node.inputs[0]), n)
    return b.add("Where", [m, taken, xs[0]], n)


def _topk(b, node: Node, x: str, k: int, axis: int, largest: bool, indices: bool) -> str:
    """TopK (sorted; ties: the lower index first, as a stable sort) along ``axis``."""
    n = node.name
    vals, idx = b.add_outputs(
        "TopK", [x, i64(b, [k], f"{n}.k")], n, 2, axis=axis, largest=int(largest), sorted=1
    )
    if indices:
        return cast(b, idx, "int64", out_dtype(b, node), n)
    return b.add("Identity", [vals], n)


@onnx_op("sort")
def _sort(b, node: Node, xs, params):
    axis = int(node.attr("axis"))
    k = b.shape_of(node.inputs[0])[axis]
    desc, ind = node.attr("descending", False), node.attr("indices", False)
    return _topk(b, node, xs[0], k, axis, desc, ind)


@onnx_op("topk")
def _topk_op(b, node: Node, xs, params):
    a = node.attrs_dict
    return _topk(
        b, node, xs[0], int(a["k"]), int(a["axis"]), a.get("largest", True), a.get("indices", False)
    )


@onnx_op("flip")
def _flip(b, node: Node, xs, params):
    axes, n = [int(a) for a in node.attr("axes")], node.name
    k = len(axes)
    inputs = [xs[0], i64(b, [-1] * k, f"{n}.starts"), i64(b, [INT64_MIN] * k, f"{n}.ends")]
    inputs += [i64(b, axes, f"{n}.axes"), i64(b, [-1] * k, f"{n}.steps")]
    return b.add("Slice", inputs, n)


def _slice1(b, x: str, axis: int, start: int, stop: int, base: str) -> str:
    inputs = [
        x,
        i64(b, [start], f"{base}.s"),
        i64(b, [stop], f"{base}.e"),
        i64(b, [axis], f"{base}.a"),
    ]
    return b.add("Slice", inputs, base)


@onnx_op("roll")
def _roll(b, node: Node, xs, params):
    """Each axis: the last ``shift`` entries, then the others (Slice + Concat)."""
    x, n = xs[0], node.name
    shape = b.shape_of(node.inputs[0])
    for shift, axis in zip(node.attr("shifts"), node.attr("axes"), strict=True):
        size = shape[axis]
        s = int(shift) % size if size else 0
        if s:
            tail = _slice1(b, x, axis, size - s, size, f"{n}.tail")
            head = _slice1(b, x, axis, 0, size - s, f"{n}.head")
            x = b.add("Concat", [tail, head], n, axis=int(axis))
    return x if x != xs[0] else b.add("Identity", [x], n)


@onnx_op("tile")
def _tile(b, node: Node, xs, params):
    reps, n = [int(r) for r in node.attr("reps")], node.name
    rank = b.rank_of(node.inputs[0])
    x = xs[0]
    if len(reps) > rank:
        x = unsqueeze(b, x, list(range(len(reps) - rank)), f"{n}.lead")
    reps = [1] * (rank - len(reps)) + reps
    return b.add("Tile", [x, i64(b, reps, f"{n}.reps")], n)


@onnx_op("diagonal")
def _diagonal(b, node: Node, xs, params):
    """The two axes moved last and flattened, then a Gather of the diagonal's positions."""
    n, shape = node.name, b.shape_of(node.inputs[0])
    rank, off = len(shape), int(node.attr("offset", 0))
    a1, a2 = int(node.attr("axis1", 0)) % rank, int(node.attr("axis2", 1)) % rank
    others = [a for a in range(rank) if a not in (a1, a2)]
    n1, n2 = shape[a1], shape[a2]
    rows = np.arange(max(0, min(n1, n2 - off) if off >= 0 else min(n1 + off, n2))) + max(0, -off)
    x = _transpose(b, xs[0], others + [a1, a2], f"{n}.last")
    x = b.add("Reshape", [x, i64(b, [0] * len(others) + [n1 * n2], f"{n}.flat")], n)
    return b.add("Gather", [x, i64(b, rows * n2 + rows + off, f"{n}.pos")], n, axis=-1)


@onnx_op("slice_nd")
def _slice_nd(b, node: Node, xs, params):
    a, n = node.attrs_dict, node.name
    strides = a.get("strides") or (1,) * len(a["start"])
    inputs = [xs[0], i64(b, a["start"], f"{n}.starts"), i64(b, a["limit"], f"{n}.ends")]
    inputs += [i64(b, list(range(len(a["start"]))), f"{n}.axes"), i64(b, strides, f"{n}.steps")]
    return b.add("Slice", inputs, n)


@onnx_op("dynamic_slice")
def _dynamic_slice(b, node: Node, xs, params):
    """``lax.dynamic_slice``: the start indices clamped to ``[0, size - slice size]``."""
    n, sizes = node.name, [int(s) for s in node.attr("sizes")]
    shape = b.shape_of(node.inputs[0])
    starts = [unsqueeze(b, _int64(b, node, xs, 1 + k), [0], f"{n}.s{k}") for k in range(len(sizes))]
    s = b.add("Concat", starts, f"{n}.starts", axis=0)
    hi = i64(b, [d - z for d, z in zip(shape, sizes, strict=True)], f"{n}.hi")
    s = b.add("Max", [b.add("Min", [s, hi], n), i64(b, [0] * len(sizes), f"{n}.lo")], n)
    e = b.add("Add", [s, i64(b, sizes, f"{n}.sizes")], n)
    return b.add("Slice", [xs[0], s, e, i64(b, list(range(len(sizes))), f"{n}.axes")], n)


def _interior(b, x: str, shape: list[int], axis: int, k: int, value: str, base: str) -> str:
    """``k`` values between neighbours along ``axis`` (``lax.pad``'s interior padding):
    (..., n, ...) -> (..., n, 1 + k, ...) padded -> reshaped -> the last ``k`` cut."""
    size = shape[axis]
    x = unsqueeze(b, x, [axis + 1], f"{base}.u")
    pads = [0] * (2 * (len(shape) + 1))
    pads[len(shape) + 1 + axis + 1] = k
    x = b.add("Pad", [x, i64(b, pads, f"{base}.ipads"), value], base)
    target = [0] * axis + [size * (1 + k)] + list(shape[axis + 1 :])
    x = b.add("Reshape", [x, i64(b, target, f"{base}.ishape")], base)
    return _slice1(b, x, axis, 0, size + (size - 1) * k, f"{base}.cut")


@onnx_op("pad_nd")
def _pad_nd(b, node: Node, xs, params):
    n, config = node.name, [tuple(int(v) for v in c) for c in node.attr("config")]
    x, shape = xs[0], list(b.shape_of(node.inputs[0]))
    value = typed(b, node.attr("value", 0), b.dtype_of(node.inputs[0]), f"{n}.value")
    for axis, (_, _, k) in enumerate(config):
        if k and shape[axis] > 0:
            x = _interior(b, x, shape, axis, k, value, f"{n}.interior{axis}")
            shape[axis] += (shape[axis] - 1) * k
    pads = [c[0] for c in config] + [c[1] for c in config]
    return b.add("Pad", [x, i64(b, pads, f"{n}.pads"), value], n)


_PAD_MODES = {"reflect": ("reflect", 13), "edge": ("edge", 13), "wrap": ("wrap", 19)}


@onnx_op("mode_pad")
def _mode_pad(b, node: Node, xs, params):
    n, mode = node.name, node.attr("mode")
    onnx_mode, opset = _PAD_MODES[mode]
    if b.opset < opset:
        raise NotImplementedError(f"Pad mode {onnx_mode!r} needs opset {opset}, asked {b.opset}")
    pairs = [tuple(int(v) for v in p) for p in node.attr("padding")]
    full = [(0, 0)] * (b.rank_of(node.inputs[0]) - len(pairs)) + pairs
    pads = [p[0] for p in full] + [p[1] for p in full]
    return b.add("Pad", [xs[0], i64(b, pads, f"{n}.pads")], n, mode=onnx_mode)


@onnx_op("full_like")
def _full_like(b, node: Node, xs, params):
    n = node.name
    value = np.asarray([node.attr("value")], np.dtype(out_dtype(b, node)))
    tensor = b.onnx.numpy_helper.from_array(value, f"{n}.value")
    return b.add("ConstantOfShape", [b.add("Shape", xs[:1], f"{n}.shape")], n, value=tensor)


@onnx_op("arange")
def _arange(b, node: Node, xs, params):
    """A constant, or (with ``like``) Range up to ``start + step * like.shape[axis]``."""
    a, n = node.attrs_dict, node.name
    dt = out_dtype(b, node)
    start, step = a.get("start", 0), a.get("step", 1)
    if not xs:
        return b.add("Identity", [typed(b, start + step * np.arange(a["length"]), dt, n)], n)
    size = b.add(
        "Gather", [b.add("Shape", xs[:1], n), i64(b, int(a.get("axis", 0)), f"{n}.axis")], n
    )
    size = cast(b, size, "int64", dt, n)
    s, d = typed(b, start, dt, f"{n}.start"), typed(b, step, dt, f"{n}.step")
    limit = b.add("Add", [b.add("Mul", [size, d], n), s], f"{n}.limit")
    return b.add("Range", [s, limit, d], n)


_RESIZE = {  # jq mode -> (ONNX mode, coordinate transformation, nearest mode)
    "nearest": ("nearest", "asymmetric", "floor"),
    "nearest-exact": ("nearest", "half_pixel", "round_prefer_ceil"),
    "linear": ("linear", "pytorch_half_pixel", "floor"),
}


@onnx_op("resize")
def _resize(b, node: Node, xs, params):
    """torch's ``interpolate`` as Resize: torch's ``scale_factor`` as ``scales`` where given
    (torch computes source positions from it), else the sizes (the leading axes read from
    ``Shape``, so the batch stays dynamic)."""
    a, n = node.attrs_dict, node.name
    mode, coords, nearest = _RESIZE[a["mode"]]
    if a["mode"] == "linear" and a.get("align_corners"):
        coords = "align_corners"
    rank, sizes = b.rank_of(node.inputs[0]), [int(s) for s in a["sizes"]]
    lead = rank - len(sizes)
    empty = typed(b, [], "float32", f"{n}.roi")
    kw = {"mode": mode, "coordinate_transformation_mode": coords, "nearest_mode": nearest}
    if a.get("scales"):
        scales = typed(b, [1.0] * lead + [float(s) for s in a["scales"]], "float32", f"{n}.scales")
        return b.add("Resize", [xs[0], empty, scales], n, **kw)
    head = b.add("Shape", xs[:1], n)
    head = b.add("Slice", [head, i64(b, [0], f"{n}.s"), i64(b, [lead], f"{n}.e")], n)
    target = b.add("Concat", [head, i64(b, sizes, f"{n}.sizes")], n, axis=0)
    return b.add("Resize", [xs[0], empty, empty, target], n, **kw)


@onnx_op("grid_sample", opset=16)
def _grid_sample(b, node: Node, xs, params):
    a = node.attrs_dict
    mode = a["mode"]
    if mode == "bilinear" and b.opset >= 20:
        mode = "linear"  # renamed in opset 20
    return b.add(
        "GridSample",
        xs[:2],
        node.name,
        mode=mode,
        padding_mode=a["padding_mode"],
        align_corners=int(bool(a["align_corners"])),
    )


@onnx_op("col2im", opset=18)
def _col2im(b, node: Node, xs, params):
    a, n = node.attrs_dict, node.name
    pads = [int(p) for p in a["padding"]] * 2
    inputs = [xs[0], i64(b, a["output_size"], f"{n}.image"), i64(b, a["kernel_size"], f"{n}.block")]
    return b.add(
        "Col2Im", inputs, n, dilations=list(a["dilation"]), pads=pads, strides=list(a["stride"])
    )


@onnx_op("embedding_bag")
def _embedding_bag(b, node: Node, xs, params):
    """Bags as a one-hot (bags, L) matrix of the positions each bag holds: a MatMul with the
    rows (sum, mean) or a masked ReduceMax (max)."""
    a, n = node.attrs_dict, node.name
    length = b.shape_of(node.inputs[0])[0]
    bags = b.shape_of(node.inputs[1])[0] - (1 if a["include_last_offset"] else 0)
    table = np.asarray(params["weight"])
    rows = b.add("Gather", [b.const(table, f"{n}.weight"), xs[0]], n)  # (L, D)
    if len(xs) > 2:
        rows = b.add("Mul", [rows, unsqueeze(b, xs[2], [1], f"{n}.w")], n)
    offsets = unsqueeze(b, _int64(b, node, xs, 1), [0], f"{n}.off")  # (1, O)
    pos = i64(b, np.arange(length)[:, None], f"{n}.pos")  # (L, 1)
    started = cast(b, b.add("LessOrEqual", [offsets, pos], n), "bool", "int64", n)
    bag = b.add("Sub", [reduce(b, "ReduceSum", started, [1], 0, n), i64(b, 1, f"{n}.one")], n)
    member = b.add(
        "Equal", [i64(b, np.arange(bags)[:, None], f"{n}.bags"), unsqueeze(b, bag, [0], n)], n
    )
    if a["padding_idx"] is not None:
        keep = b.add(
            "Not", [b.add("Equal", [_int64(b, node, xs, 0), i64(b, a["padding_idx"], n)], n)], n
        )
        member = b.add("And", [member, unsqueeze(b, keep, [0], f"{n}.keep")], n)  # (bags, L)
    dt = str(table.dtype)
    count = reduce(b, "ReduceSum", cast(b, member, "bool", dt, n), [1], 1, f"{n}.count")
    if a["mode"] == "max":
        lowest = typed(b, -np.inf, dt, f"{n}.lowest")
        picked = b.add(
            "Where", [unsqueeze(b, member, [2], n), unsqueeze(b, rows, [0], n), lowest], n
        )
        best = reduce(b, "ReduceMax", picked, [1], 0, n)
        return b.add(
            "Where", [b.add("Greater", [count, typed(b, 0, dt, n)], n), best, typed(b, 0, dt, n)], n
        )
    total = b.add("MatMul", [cast(b, member, "bool", dt, f"{n}.onehot"), rows], n)
    if a["mode"] == "mean":
        total = b.add("Div", [total, b.add("Max", [count, typed(b, 1, dt, f"{n}.one")], n)], n)
    return total


@onnx_op("reduce_window")
def _reduce_window(b, node: Node, xs, params):
    """Pooling on any layout: the pooled axes moved last behind a (rest..., 1) batch, then
    MaxPool, or AveragePool (zeros counted) times the window size for a sum."""
    a, n = node.attrs_dict, node.name
    shape = b.shape_of(node.inputs[0])
    window, strides = list(a["window"]), list(a["strides"])
    pads, wdil = [tuple(p) for p in a["padding"]], list(a["window_dilation"])
    if any(d != 1 for d in a["base_dilation"]):
        raise NotImplementedError("reduce_window with base dilation (no ONNX pooling form)")
    pooled = [
        i
        for i in range(len(shape))
        if (window[i], strides[i], pads[i], wdil[i]) != (1, 1, (0, 0), 1)
    ]
    if not 1 <= len(pooled) <= 3 or not np.issubdtype(
        np.dtype(b.dtype_of(node.inputs[0])), np.floating
    ):
        raise NotImplementedError(
            f"reduce_window over {len(pooled)} axes of {b.dtype_of(node.inputs[0])} "
            "(ONNX pools 1 to 3 axes of floats)"
        )
    rest = [i for i in range(len(shape)) if i not in pooled]
    x = _transpose(b, xs[0], rest + pooled, f"{n}.last")
    x = b.add("Reshape", [x, i64(b, [-1, 1] + [shape[i] for i in pooled], f"{n}.batch")], n)
    kw = {
        "kernel_shape": [window[i] for i in pooled],
        "strides": [strides[i] for i in pooled],
        "pads": [pads[i][0] for i in pooled] + [pads[i][1] for i in pooled],
    }
    if a["computation"] == "max":
        y = b.add("MaxPool", [x], n, dilations=[wdil[i] for i in pooled], **kw)
    else:
        if any(wdil[i] != 1 for i in pooled) and b.opset < 19:
            raise NotImplementedError("a summing reduce_window with window dilation needs opset 19")
        dil = {"dilations": [wdil[i] for i in pooled]} if b.opset >= 19 else {}
        y = b.add("AveragePool", [x], n, count_include_pad=1, **kw, **dil)
        k = float(np.prod([window[i] for i in pooled]))
        y = b.add("Mul", [y, typed(b, k, b.dtype_of(node.inputs[0]), f"{n}.k")], n)
    out = b.shape_of(node.name)
    y = b.add("Reshape", [y, i64(b, [out[i] for i in rest + pooled], f"{n}.unbatch")], n)
    return _transpose(b, y, list(np.argsort(rest + pooled)), n)


@onnx_op("dot_general")
def _dot_general(b, node: Node, xs, params):
    """``lax.dot_general`` as Einsum: batch axes, then a's free axes, then b's."""
    (ca, cb), (ba, bb) = node.attr("dimension_numbers")
    ra, rb = b.rank_of(node.inputs[0]), b.rank_of(node.inputs[1])
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = [next(letters) for _ in range(ra)]
    lb = [next(letters) for _ in range(rb)]
    for i, j in list(zip(ca, cb, strict=True)) + list(zip(ba, bb, strict=True)):
        lb[j] = la[i]
    out = [la[i] for i in ba]
    out += [la[i] for i in range(ra) if i not in ca and i not in ba]
    out += [lb[j] for j in range(rb) if j not in cb and j not in bb]
    eq = f"{''.join(la)},{''.join(lb)}->{''.join(out)}"
    return b.add("Einsum", xs[:2], node.name, equation=eq)


@onnx_op("einsum")
def _einsum(b, node: Node, xs, params):
    return b.add("Einsum", xs, node.name, equation=node.attr("equation").replace(" ", ""))


@onnx_op("group_norm")
def _group_norm(b, node: Node, xs, params):
    """(N, C, ...) -> (N, G, C/G * ...) through InstanceNormalization (one group per
    channel there), back to x's shape, then the per-channel affine."""
    n, g = node.name, int(node.attr("num_groups"))
    rank = b.rank_of(node.inputs[0])
    c = b.shape_of(node.inputs[0])[1]
    y = b.add("Reshape", [xs[0], i64(b, [0, g, -1], f"{n}.groups")], n)
    ones, zeros = np.ones(g, np.float32), np.zeros(g, np.float32)
    y = b.add(
        "InstanceNormalization",
        [y, b.const(ones, f"{n}.one"), b.const(zeros, f"{n}.zero")],
        n,
        epsilon=float(node.attr("eps")),
    )
    y = b.add("Reshape", [y, b.add("Shape", xs[:1], n)], n)
    per_channel = (1, c) + (1,) * (rank - 2)
    if "weight" in params:
        y = b.add("Mul", [y, b.const(np.reshape(params["weight"], per_channel), f"{n}.weight")], n)
    if "bias" in params:
        y = b.add("Add", [y, b.const(np.reshape(params["bias"], per_channel), f"{n}.bias")], n)
    return y
