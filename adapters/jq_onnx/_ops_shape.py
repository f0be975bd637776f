"""Converters of the ONNX ops that move data: elementwise binaries (with bias fusion),
reshapes, transposes, concatenation, slicing, padding, reductions, gathers, casts.

Each keeps track of the batch axis (``Tensor.batch``): a reshape that keeps the batch as an
axis of its own is written with ``-1`` there, so the graph serves any batch size; one that
merges or splits it pins it.
"""

from __future__ import annotations

import numpy as np

from ._context import Context, OnnxNode, Tensor, Value
from ._errors import Unconvertible
from ._fold import axes_of, onnx_dtype, reshape_target, slice_plan, split_sizes
from ._ops import data
from ._table import register_converter


def _const(v: Value | None, what: str) -> np.ndarray:
    if isinstance(v, Tensor):
        raise Unconvertible(f"{what} is computed at run time; jq needs it as a constant")
    return np.asarray(v)


def _view(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-memory array of ``shape``, for NumPy's shape arithmetic."""
    return np.broadcast_to(np.zeros((), np.int8), shape)


def _batch_after_reshape(shape_in, target, axis: int) -> int | None:
    """The axis of ``target`` that holds axis ``axis`` of ``shape_in`` unchanged (same size,
    same number of elements before it), or ``None`` where the reshape merges or splits it."""
    before = int(np.prod(shape_in[:axis]))
    for j in range(len(target)):
        if int(np.prod(target[:j])) == before and target[j] == shape_in[axis]:
            return j
    return None


def reshape_to(ctx: Context, x: Tensor, target, suffix: str = "") -> Tensor:
    """``x`` reshaped to ``target`` (sizes at the conversion batch), with ``-1`` on the batch
    axis where the reshape keeps it as an axis; one that merges or splits it pins the batch."""
    target = [int(d) for d in target]
    if tuple(target) == x.shape:
        return x
    batch = None
    if x.batch is None and x.dyn and ctx.dynamic_batch:
        ctx.pin(f"a reshape of {x.shape} (a value whose batch axis was merged) to {tuple(target)}")
    elif x.batch is not None and ctx.dynamic_batch:
        batch = _batch_after_reshape(x.shape, target, x.batch)
        if batch is None:
            ctx.pin(f"a reshape of {x.shape} to {tuple(target)} merges or splits the batch axis")
        else:
            target[batch] = -1
    return ctx.emit("reshape", [x], {"shape": tuple(target)}, batch=batch, suffix=suffix)


def _lose_batch(ctx: Context, x: Tensor, axes, why: str) -> bool:
    """Whether an op on ``axes`` of ``x`` reads its batch axis (which pins the batch)."""
    if x.batch is not None and x.batch in axes:
        ctx.pin(why)
        return True
    return False


def _drop_axes(batch: int | None, axes) -> int | None:
    """The batch axis after ``axes`` (not including it) are removed."""
    return None if batch is None else batch - sum(a < batch for a in axes)


# --- elementwise binaries -----------------------------------------------------------------

_BINARY = {
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Pow": "pow",
    "Max": "maximum",
    "Min": "minimum",
    "Equal": "eq",
    "Less": "lt",
    "Greater": "gt",
    "LessOrEqual": "le",
    "GreaterOrEqual": "ge",
    "And": "and",
    "Or": "or",
}


def _fuse_bias(ctx: Context, x: Tensor, c: np.ndarray) -> Tensor | None:
    """``linear`` / ``conv`` without bias, read only by ``Add(·, constant)``: the constant as
    the layer's bias (``MatMul + Add`` is how exporters write a 3-D ``nn.Linear``), so PTQ sees
    one layer, as it would from torch. ``None`` where the pattern does not apply."""
    last = ctx.nodes[-1] if ctx.nodes else None
    if last is None or last.name != x.name or last.op not in ("linear", "conv"):
        return None
    if "bias" in ctx.params[x.name]:
        return None
    out = ctx.params[x.name]["weight"].shape[0]
    # The channel axis: the last for linear, 1 for conv; c must vary along it alone.
    channel = len(x.shape) - 1 if last.op == "linear" else 1
    want = [1] * len(x.shape)
    want[channel] = out
    if c.ndim > len(x.shape) or [1] * (len(x.shape) - c.ndim) + list(c.shape) != want:
        return None
    bias = c.reshape(-1).astype(np.float32)
    ctx.params[x.name] = {**ctx.params[x.name], "bias": bias}
    shapes = dict(last.param_shapes) | {"bias": bias.shape}
    ctx.nodes[-1] = last.replace(param_shapes=tuple(shapes.items()))
    return x


def _producer(ctx: Context, v: Value, op: str):
    """The emitted jq node of op ``op`` that made ``v``, else ``None``."""
    if not isinstance(v, Tensor):
        return None
    node = next((n for n in reversed(ctx.nodes) if n.name == v.name), None)
    return node if node is not None and node.op == op else None


def _fuse_gelu(ctx: Context, y: Tensor, half: float) -> Tensor | None:
    """``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)``, how exporters before opset 20 write
    GELU, as one ``gelu`` node (which jq's ONNX writer and PTQ know; ``erf`` they do not).
    The pattern's nodes are left for :func:`~jq_onnx._convert.from_onnx` to drop."""
    mul = _producer(ctx, y, "mul")
    if half != 0.5 or mul is None or len(mul.inputs) != 2:
        return None
    for x_name, t_name in (mul.inputs, mul.inputs[::-1]):
        add = next((n for n in ctx.nodes if n.name == t_name and n.op == "add"), None)
        if add is None or add.attr("scalar", None) != 1 or len(add.inputs) != 1:
            continue
        erf = next((n for n in ctx.nodes if n.name == add.inputs[0] and n.op == "erf"), None)
        div = erf and next((n for n in ctx.nodes if n.name == erf.inputs[0]), None)
        if div is None or div.op not in ("div", "mul") or div.inputs != (x_name,):
            continue
        scale = div.attr("scalar", 0.0) if div.op == "div" else 1 / div.attr("scalar", np.inf)
        if abs(scale - 2**0.5) < 1e-4 and not div.attr("reverse", False):
            return ctx.emit("gelu", [ctx.values[x_name]], {"approximate": "none"}, suffix="gelu")
    return None


def _binary(op: str):
    def convert(ctx: Context, node: OnnxNode, a, b):
        if op == "mul":
            for x, c in ((a, b), (b, a)):
                if isinstance(x, Tensor) and not isinstance(c, Tensor) and np.size(c) == 1:
                    fused = _fuse_gelu(ctx, x, float(np.asarray(c).reshape(())))
                    if fused is not None:
                        return fused
        if op == "add":
            for x, c, i in ((a, b, 0), (b, a, 1)):
                one_reader = ctx.consumers.get(node.inputs[i], 0) == 1
                if isinstance(x, Tensor) and not isinstance(c, Tensor) and one_reader:
                    fused = _fuse_bias(ctx, x, np.asarray(c))
                    if fused is not None:
                        return fused
        for x, c, reverse in ((a, b, False), (b, a, True)):
            if isinstance(x, Tensor) and not isinstance(c, Tensor) and np.size(c) == 1:
                if np.ndim(c) <= len(x.shape):
                    scalar = np.asarray(c).reshape(()).item()
                    return ctx.emit(op, [x], {"scalar": scalar, "reverse": reverse})
        return ctx.emit(op, [a, b])

    return convert


for _onnx_op, _jq_op in _BINARY.items():
    register_converter(_onnx_op)(_binary(_jq_op))


@register_converter("Where")
def _where(ctx: Context, node: OnnxNode, cond, a, b):
    return ctx.emit("where", [cond, a, b])


# --- shapes -------------------------------------------------------------------------------


@register_converter("Reshape")
def _reshape(ctx: Context, node: OnnxNode, x, shape):
    x = data(x)
    target = reshape_target(
        x.shape, _const(shape, "the target shape"), node.attrs.get("allowzero", 0)
    )
    return reshape_to(ctx, x, target)


@register_converter("Flatten")
def _flatten(ctx: Context, node: OnnxNode, x):
    x = data(x)
    axis = int(node.attrs.get("axis", 1)) % max(len(x.shape), 1)
    target = (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
    if x.batch == 0 and axis > 1 and ctx.dynamic_batch:  # the batch merges into axis 0: -1
        return ctx.emit("reshape", [x], {"shape": (-1, target[1])}, batch=None)
    return reshape_to(ctx, x, target)


@register_converter("Squeeze")
def _squeeze(ctx: Context, node: OnnxNode, x, axes=None):
    x = data(x)
    found = axes_of(node.attrs, None if axes is None else _const(axes, "axes"), len(x.shape))
    return reshape_to(
        ctx, x, np.squeeze(_view(x.shape), None if found is None else tuple(found)).shape
    )


@register_converter("Unsqueeze")
def _unsqueeze(ctx: Context, node: OnnxNode, x, axes=None):
    x = data(x)
    given = _const(axes, "axes") if axes is not None else np.asarray(node.attrs["axes"])
    found = axes_of(node.attrs, given, len(x.shape) + given.size) or []
    return reshape_to(ctx, x, np.expand_dims(_view(x.shape), tuple(sorted(found))).shape)


@register_converter("Transpose")
def _transpose(ctx: Context, node: OnnxNode, x):
    x = data(x)
    perm = tuple(int(p) for p in node.attrs.get("perm", range(len(x.shape))[::-1]))
    batch = None if x.batch is None else perm.index(x.batch)
    return ctx.emit("permute", [x], {"dims": perm}, batch=batch)


@register_converter("Concat")
def _concat(ctx: Context, node: OnnxNode, *xs):
    rank = max(len(x.shape) if isinstance(x, Tensor) else np.ndim(x) for x in xs)
    axis = int(node.attrs["axis"]) % rank
    batched = [x for x in xs if isinstance(x, Tensor) and x.batch is not None]
    if batched and _lose_batch(ctx, batched[0], (axis,), "a concatenation along the batch axis"):
        return ctx.emit("cat", list(xs), {"axis": axis}, batch=None)
    return ctx.emit("cat", list(xs), {"axis": axis})


def _slice_axis(ctx: Context, x: Tensor, axis: int, lo: int, hi: int, step: int, suffix: str):
    if (lo, hi, step) == (0, x.shape[axis], 1):
        return x
    lost = _lose_batch(ctx, x, (axis,), "a slice of the batch axis")
    attrs = {"axis": axis, "start": lo, "stop": hi, "step": step}
    return ctx.emit("slice", [x], attrs, batch=None if lost else x.batch, suffix=suffix)


@register_converter("Slice")
def _slice(ctx: Context, node: OnnxNode, x, starts, ends, axes=None, steps=None):
    x = data(x)
    try:
        plan = slice_plan(
            x.shape,
            _const(starts, "starts"),
            _const(ends, "ends"),
            None if axes is None else _const(axes, "axes"),
            None if steps is None else _const(steps, "steps"),
        )
    except ValueError as e:
        raise Unconvertible(str(e)) from None
    for i, (a, lo, hi, step) in enumerate(plan):
        x = _slice_axis(ctx, x, a, lo, hi, step, f"s{i}" if i else "")
    return x


@register_converter("Split")
def _split(ctx: Context, node: OnnxNode, x, split=None):
    x = data(x)
    axis = int(node.attrs.get("axis", 0)) % len(x.shape)
    attrs = {**node.attrs, "_n_outputs": len(node.outputs)}
    sizes = split_sizes(x.shape[axis], attrs, None if split is None else _const(split, "split"))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [
        _slice_axis(ctx, x, axis, int(starts[i]), int(starts[i + 1]), 1, str(i))
        for i in range(len(sizes))
    ]


@register_converter("Pad")
def _pad(ctx: Context, node: OnnxNode, x, pads, value=None, axes=None):
    x = data(x)
    mode = node.attrs.get("mode", "constant")
    if mode != "constant":
        raise Unconvertible(f"Pad mode {mode!r} (only 'constant' converts)")
    rank = len(x.shape)
    p = [int(v) for v in _const(pads, "pads").reshape(-1)]
    found = axes_of(node.attrs, None if axes is None else _const(axes, "axes"), rank)
    found = list(range(rank)) if found is None else found
    pairs = {a: (p[i], p[i + len(found)]) for i, a in enumerate(found)}
    padded = [a for a, pr in pairs.items() if pr != (0, 0)]
    if not padded:
        return x
    first = min(padded)
    lost = _lose_batch(ctx, x, padded, "padding of the batch axis")
    padding = tuple(pairs.get(a, (0, 0)) for a in range(first, rank))
    fill = 0.0 if value is None else _const(value, "constant_value").reshape(()).item()
    return ctx.emit(
        "pad", [x], {"padding": padding, "value": fill}, batch=None if lost else x.batch
    )


def _reduce(op: str):
    def convert(ctx: Context, node: OnnxNode, x, axes=None):
        x = data(x)
        rank = len(x.shape)
        found = axes_of(node.attrs, None if axes is None else _const(axes, "axes"), rank)
        if found is None:
            if node.attrs.get("noop_with_empty_axes", 0):
                return x
            found = list(range(rank))
        keep = bool(node.attrs.get("keepdims", 1))
        lost = _lose_batch(ctx, x, found, "a reduction over the batch axis")
        if op == "mean":
            attrs = {"axis": tuple(found), "keepdims": keep}
            kept = x.batch if keep else _drop_axes(x.batch, found)
            return ctx.emit("mean", [x], attrs, batch=None if lost else kept)
        y = ctx.emit(
            op, [x], {"axes": tuple(found)}, batch=None if lost else _drop_axes(x.batch, found)
        )
        if keep:
            kept = tuple(1 if i in found else d for i, d in enumerate(x.shape))
            return reshape_to(ctx, y, kept, suffix="keepdims")
        return y

    return convert


for _onnx_op, _jq_op in {
    "ReduceMean": "mean",
    "ReduceSum": "reduce_sum",
    "ReduceMax": "reduce_max",
    "ReduceMin": "reduce_min",
}.items():
    register_converter(_onnx_op)(_reduce(_jq_op))


@register_converter("Gather")
def _gather(ctx: Context, node: OnnxNode, x, indices):
    axis = int(node.attrs.get("axis", 0))
    if not isinstance(x, Tensor) and isinstance(indices, Tensor) and axis == 0:
        return ctx.emit("embedding", [indices], params={"weight": np.asarray(x)})
    x = data(x)
    axis %= len(x.shape)
    idx = _const(indices, "the indices")
    if idx.ndim == 0:
        lost = _lose_batch(ctx, x, (axis,), "a gather on the batch axis")
        i = int(idx) % x.shape[axis]
        batch = None if lost else _drop_axes(x.batch, (axis,))
        return ctx.emit("select", [x], {"axis": axis, "index": i}, batch=batch)
    flat = (idx.reshape(-1) % x.shape[axis]).astype(np.int64)
    if idx.ndim == 1 and flat.size and np.all(np.diff(flat) == 1):
        return _slice_axis(ctx, x, axis, int(flat[0]), int(flat[-1]) + 1, 1, "")
    raise Unconvertible(f"Gather of a runtime tensor at {idx.shape} non-contiguous indices")


@register_converter("Cast")
def _cast(ctx: Context, node: OnnxNode, x):
    x = data(x)
    return ctx.emit("cast", [x], {"dtype": onnx_dtype(node.attrs["to"]).name})


@register_converter("Expand")
def _expand(ctx: Context, node: OnnxNode, x, shape):
    x = data(x)
    target = list(np.broadcast_shapes(x.shape, tuple(int(d) for d in _const(shape, "shape"))))
    if tuple(target) == x.shape:
        return x
    batch = x.batch + len(target) - len(x.shape) if x.batch is not None else None
    if batch is None and x.dyn and ctx.dynamic_batch:
        ctx.pin(f"an expand of a value whose batch axis was merged to {tuple(target)}")
    elif batch is not None:
        target[batch] = -1  # keeps x's (batch) size there
    return ctx.emit("expand", [x], {"shape": tuple(target)}, batch=batch)
