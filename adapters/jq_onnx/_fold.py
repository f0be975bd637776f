"""NumPy twins of the ONNX ops that shape subgraphs are made of, to fold them at conversion.

Exporters compute shapes at run time (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``)
and converters store weights behind ``Constant``, ``Cast`` or ``Transpose`` nodes. When every
input of such a node is a constant, the converter runs its twin here instead of emitting a jq
node, so the jq graph keeps only the tensor computation. Each twin is
``fn(attrs, *inputs) -> list[np.ndarray]`` (ONNX semantics; optional inputs may be ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

FoldFn = Callable[..., list[np.ndarray]]
FOLDERS: dict[str, FoldFn] = {}


def _folder(*names: str) -> Callable[[FoldFn], FoldFn]:
    def add(fn: FoldFn) -> FoldFn:
        for n in names:
            FOLDERS[n] = fn
        return fn

    return add


def onnx_dtype(code: int) -> np.dtype:
    """The NumPy dtype of an ONNX ``TensorProto`` element type."""
    import onnx

    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code))


def axes_of(attrs: Mapping[str, Any], given: np.ndarray | None, rank: int) -> list[int] | None:
    """Axes from the ``axes`` input (newer opsets) or attribute, made non-negative."""
    axes = given if given is not None else attrs.get("axes")
    if axes is None:
        return None
    return [int(a) % rank for a in np.asarray(axes).reshape(-1)]


def _binary(fn: Callable[[Any, Any], Any]) -> FoldFn:
    return lambda attrs, a, b: [np.asarray(fn(a, b))]


for _op, _fn in {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Max": np.maximum,
    "Min": np.minimum,
}.items():
    FOLDERS[_op] = _binary(_fn)
for _op, _ufn in {
    "Neg": np.negative,
    "Sqrt": np.sqrt,
    "Abs": np.abs,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Not": np.logical_not,
    "Identity": np.asarray,
    "Reciprocal": np.reciprocal,
}.items():
    FOLDERS[_op] = lambda attrs, a, _f=_ufn: [np.asarray(_f(a))]


@_folder("Div")
def _div(attrs, a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer Div truncates
        return [np.asarray(np.trunc(a / b).astype(np.result_type(a, b)))]
    return [np.asarray(a / b)]


@_folder("Pow")
def _pow(attrs, a, b):
    return [np.asarray(np.power(a, b)).astype(a.dtype)]


@_folder("Cast")
def _cast(attrs, a):
    return [np.asarray(a).astype(onnx_dtype(attrs["to"]))]


@_folder("Gather")
def _gather(attrs, data, indices):
    axis = attrs.get("axis", 0) % data.ndim
    idx = np.where(indices < 0, indices + data.shape[axis], indices)
    return [np.take(data, idx, axis=axis)]


@_folder("Unsqueeze")
def _unsqueeze(attrs, x, axes=None):
    rank = x.ndim + len(np.asarray(axes if axes is not None else attrs["axes"]).reshape(-1))
    return [np.expand_dims(x, tuple(sorted(axes_of(attrs, axes, rank) or [])))]


@_folder("Squeeze")
def _squeeze(attrs, x, axes=None):
    found = axes_of(attrs, axes, x.ndim)
    return [np.squeeze(x, axis=None if found is None else tuple(found))]


@_folder("Concat")
def _concat(attrs, *xs):
    return [np.concatenate([np.atleast_1d(x) for x in xs], axis=attrs["axis"])]


def reshape_target(shape_in: tuple[int, ...], target: np.ndarray, allowzero: int) -> list[int]:
    """ONNX Reshape's output shape: ``0`` copies the input's size (unless ``allowzero``),
    ``-1`` is inferred."""
    out = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        out = [shape_in[i] if d == 0 else d for i, d in enumerate(out)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape_in)) // max(known, 1)
    return out


@_folder("Reshape")
def _reshape(attrs, x, shape):
    return [np.reshape(x, reshape_target(x.shape, shape, attrs.get("allowzero", 0)))]


@_folder("Flatten")
def _flatten(attrs, x):
    axis = attrs.get("axis", 1) % max(x.ndim, 1)
    return [np.reshape(x, (int(np.prod(x.shape[:axis])), -1))]


@_folder("Transpose")
def _transpose(attrs, x):
    return [np.transpose(x, attrs.get("perm"))]


@_folder("ConstantOfShape")
def _constant_of_shape(attrs, shape):
    value = attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else value.reshape(-1)
    return [np.full(tuple(int(d) for d in shape), fill[0], dtype=fill.dtype)]


@_folder("Expand")
def _expand(attrs, x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return [np.broadcast_to(x, target).copy()]


@_folder("Range")
def _range(attrs, start, limit, delta):
    return [np.arange(start, limit, delta, dtype=np.asarray(start).dtype)]


@_folder("Where")
def _where(attrs, cond, a, b):
    return [np.where(cond, a, b)]


@_folder("Tile")
def _tile(attrs, x, reps):
    return [np.tile(x, tuple(int(r) for r in reps))]


def slice_plan(shape, starts, ends, axes=None, steps=None) -> list[tuple[int, int, int, int]]:
    """ONNX Slice as ``(axis, start, stop, step)`` per sliced axis, clamped like ONNX (and
    Python) clamp, for ``step > 0``; a negative step raises ``ValueError``."""
    rank = len(shape)
    starts = np.asarray(starts).reshape(-1)
    axes = np.arange(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
    steps = np.ones(len(starts), np.int64) if steps is None else np.asarray(steps).reshape(-1)
    plan = []
    for a, s, e, st in zip(axes, starts, np.asarray(ends).reshape(-1), steps, strict=True):
        a = int(a) % rank
        if st <= 0:
            raise ValueError(f"Slice with step {int(st)} (only positive steps convert)")
        lo, hi, step = slice(int(s), int(e), int(st)).indices(shape[a])
        plan.append((a, lo, max(hi, lo), step))
    return plan


@_folder("Slice")
def _slice(attrs, x, starts, ends, axes=None, steps=None):
    index = [slice(None)] * x.ndim
    for a, lo, hi, step in slice_plan(x.shape, starts, ends, axes, steps):
        index[a] = slice(lo, hi, step)
    return [x[tuple(index)]]


def _reducer(fn: Callable[..., Any]) -> FoldFn:
    def fold(attrs, x, axes=None):
        found = axes_of(attrs, axes, x.ndim)
        if found is None and attrs.get("noop_with_empty_axes", 0):
            return [x]
        keep = bool(attrs.get("keepdims", 1))
        return [np.asarray(fn(x, axis=None if found is None else tuple(found), keepdims=keep))]

    return fold


_REDUCERS: dict[str, Callable[..., Any]] = {
    "ReduceProd": np.prod,
    "ReduceSum": np.sum,
    "ReduceMax": np.max,
    "ReduceMin": np.min,
    "ReduceMean": np.mean,
}
for _op, _rfn in _REDUCERS.items():
    FOLDERS[_op] = _reducer(_rfn)


@_folder("Split")
def _split(attrs, x, split=None):
    axis = attrs.get("axis", 0) % x.ndim
    sizes = split_sizes(x.shape[axis], attrs, split)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def split_sizes(n: int, attrs: Mapping[str, Any], split) -> list[int]:
    """The sizes of ONNX Split's outputs along an axis of length ``n`` (the converter puts the
    node's output count in ``attrs["_n_outputs"]``)."""
    given = split if split is not None else attrs.get("split")
    if given is not None:
        return [int(s) for s in np.asarray(given).reshape(-1)]
    k = attrs.get("num_outputs", attrs["_n_outputs"])
    size = -(-n // k)
    return [size] * (k - 1) + [n - size * (k - 1)]
