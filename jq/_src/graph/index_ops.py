"""jq ops for selecting and moving values by position: ``where``, ``index``, ``roll``,
``resize``, ``arange``, ``cumsum``, ``flip``; and for the rest of torch's Core ATen opset:
``cumprod``, ``sort``, ``topk``, ``gather``, ``scatter``, ``index_put``, ``masked_scatter``,
``tile``, ``diagonal``, ``mode_pad``, ``full_like``. Registered in the op table when ``jq`` is
imported, with the calling convention of ``ops.py`` (``fn(params, *inputs, **attrs)``).

They exist for what current transformer and vision models compute on their activations: padding
masks read per sample (``index``, ``where``), shifted windows (``roll``), decoders that
upsample (``resize``) and index vectors whose length is the batch size (``arange``). Masks that
depend on no input are folded to constants at conversion and need none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .ops import register_op


def _to_rank(xs: Sequence[jax.Array]) -> list[jax.Array]:
    """Prepend unit axes so all of ``xs`` have the same rank (rank promotion is 'raise')."""
    rank = max(x.ndim for x in xs)
    return [jnp.reshape(x, (1,) * (rank - x.ndim) + x.shape) for x in xs]


@register_op("where")
def where(params, cond, *xs, x_scalar=None, y_scalar=None):
    """``torch.where(cond, x, y)``, broadcast: ``x`` / ``y`` are inputs after ``cond`` in that
    order, or Python scalars (``x_scalar`` / ``y_scalar``) when not given as inputs."""
    rest = list(xs)
    x = rest.pop(0) if x_scalar is None else x_scalar
    y = rest.pop(0) if y_scalar is None else y_scalar
    dtype = jnp.result_type(x, y)
    c, a, b = _to_rank([jnp.asarray(v) for v in (cond, x, y)])
    return jnp.where(c, a.astype(dtype), b.astype(dtype))


@register_op("index")
def index(params, x, *indices, positions):
    """Advanced indexing ``x[i0, :, i2, ...]`` (NumPy/torch rules): ``positions[k]`` says
    whether axis ``k`` takes the next integer index input (broadcast together) or a full slice.
    Indices are taken modulo the axis size (torch's negative indices)."""
    it = iter(_to_rank(indices) if indices else ())
    key = []
    for axis, taken in enumerate(positions):
        key.append(jnp.remainder(next(it), x.shape[axis]) if taken else slice(None))
    return x[tuple(key)]


@register_op("roll")
def roll(params, x, *, shifts, axes):
    """``torch.roll``: rotate ``x`` by ``shifts[k]`` along ``axes[k]``."""
    return jnp.roll(x, tuple(shifts), tuple(axes))


def resize_matrix(n_in: int, n_out: int, mode: str, align_corners: bool | None, scale=None):
    """(n_out, n_in) float64 matrix mapping one axis of length ``n_in`` to ``n_out`` as torch's
    ``interpolate`` does (``mode`` ``"nearest"``, ``"nearest-exact"`` or ``"linear"``;
    ``scale``: the user's scale factor, which torch uses for the source coordinate instead of
    ``n_in / n_out`` when given)."""
    out = np.arange(n_out, dtype=np.float64)
    ratio = (1.0 / scale) if scale else n_in / n_out
    m = np.zeros((n_out, n_in))
    if mode in ("nearest", "nearest-exact"):
        src = out * ratio if mode == "nearest" else (out + 0.5) * ratio
        m[np.arange(n_out), np.minimum(np.floor(src).astype(int), n_in - 1)] = 1.0
        return m
    if mode != "linear":
        raise ValueError(f"resize: mode must be nearest, nearest-exact or linear, got {mode!r}")
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((out + 0.5) * ratio - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


@register_op("resize")
def resize(params, x, *, sizes, mode, align_corners=None, scales=None):
    """Resize the trailing ``len(sizes)`` axes of ``x`` (N, C, *spatial) to ``sizes`` with
    torch's ``interpolate`` rules (``mode``: ``"nearest"``, ``"nearest-exact"``, ``"linear"``
    per axis, i.e. bilinear/trilinear; ``scales``: the scale factors torch was given, or
    ``None``). One exact matrix product per axis."""
    lead = x.ndim - len(sizes)
    for k, n_out in enumerate(sizes):
        axis = lead + k
        scale = scales[k] if scales else None
        m = resize_matrix(x.shape[axis], n_out, mode, align_corners, scale)
        x = jnp.moveaxis(jnp.tensordot(x, jnp.asarray(m.T, x.dtype), axes=([axis], [0])), -1, axis)
    return x


@register_op("arange")
def arange(params, like=None, *, start=0, step=1, length=None, axis=0, dtype="int32"):
    """``start + step * [0, 1, ...]`` of ``length`` entries, or of ``like.shape[axis]`` entries
    when ``like`` is given (an index vector as long as the dynamic batch)."""
    n = like.shape[axis] if like is not None else length
    return start + step * jnp.arange(n, dtype=jax.dtypes.canonicalize_dtype(dtype))


@register_op("cumsum")
def cumsum(params, x, *, axis, dtype=None):
    """Running sum along ``axis`` (``dtype``: of the result; booleans sum as integers)."""
    out_dtype = jax.dtypes.canonicalize_dtype(dtype) if dtype else None
    if out_dtype is None and x.dtype == jnp.bool_:
        out_dtype = jax.dtypes.canonicalize_dtype("int64")
    return jnp.cumsum(x, axis=axis, dtype=out_dtype)


@register_op("flip")
def flip(params, x, *, axes):
    """Reverse ``x`` along ``axes``."""
    return jnp.flip(x, tuple(axes))


@register_op("cumprod")
def cumprod(params, x, *, axis, dtype=None):
    """Running product along ``axis`` (``dtype``: of the result)."""
    return jnp.cumprod(x, axis=axis, dtype=jax.dtypes.canonicalize_dtype(dtype) if dtype else None)


@register_op("sort")
def sort(params, x, *, axis, descending=False, indices=False):
    """``torch.sort`` along ``axis``: the sorted values, or (``indices=True``) the int32
    positions they came from (a stable sort: ties keep their order)."""
    if indices:
        return jnp.argsort(x, axis=axis, stable=True, descending=descending).astype(jnp.int32)
    return jnp.sort(x, axis=axis, descending=descending)


@register_op("topk")
def topk(params, x, *, k, axis, largest=True, indices=False):
    """``torch.topk``: the ``k`` largest (or smallest) entries along ``axis``, sorted, or
    (``indices=True``) their int32 positions."""
    moved = jnp.moveaxis(x, axis, -1)
    vals, idx = jax.lax.top_k(moved if largest else -moved, k)
    out = idx.astype(jnp.int32) if indices else (vals if largest else -vals)
    return jnp.moveaxis(out, -1, axis)


def _grid(index: jax.Array, axis: int) -> tuple[jax.Array, ...]:
    """Full advanced-indexing key: ``index`` on ``axis``, iotas (of index's shape) elsewhere."""
    return tuple(
        index if d == axis else jax.lax.broadcasted_iota(jnp.int32, index.shape, d)
        for d in range(index.ndim)
    )


@register_op("gather")
def gather(params, x, index, *, axis):
    """``torch.gather``: ``out[i][j] = x[index[i][j]][j]`` for ``axis=0`` (any rank); index
    may be smaller than ``x`` on the other axes."""
    return x[_grid(index, axis)]


_SCATTER_IDENTITY = {"sum": 0, "mean": 0, "prod": 1}


@register_op("scatter")
def scatter(params, x, index, src=None, *, axis, reduce=None, include_self=True, value=None):
    """``torch.scatter`` / ``scatter_add`` / ``scatter_reduce`` along ``axis``: writes
    ``src[i][j]`` (or the scalar ``value``) to ``x[index[i][j]][j]`` for ``axis=0``.

    ``reduce``: None (last write wins; torch leaves duplicate indices unspecified), ``"sum"``,
    ``"prod"``, ``"mean"``, ``"amax"`` or ``"amin"``; ``include_self=False`` leaves ``x``'s
    values out of the reduction at the written positions.
    """
    key = _grid(index, axis)
    if src is None:
        upd = jnp.full(index.shape, value, x.dtype)
    else:
        upd = src[tuple(slice(0, n) for n in index.shape)].astype(x.dtype)
    if reduce is None:
        return x.at[key].set(upd)
    base = x
    if not include_self:
        ident = _SCATTER_IDENTITY.get(reduce)
        if ident is None:  # amax / amin: the first write replaces x
            ident = jnp.finfo(x.dtype).min if reduce == "amax" else jnp.finfo(x.dtype).max
        base = x.at[key].set(jnp.asarray(ident, x.dtype))
    if reduce in ("sum", "mean"):
        out = base.at[key].add(upd)
        if reduce == "mean":
            count = jnp.zeros(x.shape, x.dtype).at[key].add(1) + (1 if include_self else 0)
            out = jnp.where(count > 0, out / jnp.maximum(count, 1), x)
        return out
    if reduce == "prod":
        return base.at[key].multiply(upd)
    if reduce == "amax":
        return base.at[key].max(upd)
    if reduce == "amin":
        return base.at[key].min(upd)
    raise ValueError(f"scatter: reduce must be None, sum, prod, mean, amax or amin, got {reduce!r}")


@register_op("index_put")
def index_put(params, x, values, *indices, positions, accumulate=False):
    """``x[i0, :, i2, ...] = values`` (``accumulate``: ``+=``, duplicates summed): ``positions``
    as for ``index``; ``values`` broadcasts to the indexed shape."""
    it = iter(_to_rank(indices) if indices else ())
    key = tuple(
        jnp.remainder(next(it), x.shape[axis]) if taken else slice(None)
        for axis, taken in enumerate(positions)
    )
    shape = jax.eval_shape(lambda a: a[key], x).shape
    v = jnp.broadcast_to(values.astype(x.dtype), shape)
    return x.at[key].add(v) if accumulate else x.at[key].set(v)


@register_op("masked_scatter")
def masked_scatter(params, x, mask, src):
    """``torch.masked_scatter``: where ``mask`` (broadcast to x) is True, the next element of
    ``src`` in row-major order; elsewhere ``x``."""
    m = jnp.broadcast_to(jnp.reshape(mask, (1,) * (x.ndim - mask.ndim) + mask.shape), x.shape)
    pos = jnp.cumsum(m.reshape(-1).astype(jnp.int32)) - 1
    taken = jnp.take(src.reshape(-1), jnp.clip(pos, 0, src.size - 1)).reshape(x.shape)
    return jnp.where(m, taken.astype(x.dtype), x)


@register_op("tile")
def tile(params, x, *, reps):
    """``torch.Tensor.repeat``: ``x`` tiled ``reps`` times per axis (leading axes added)."""
    return jnp.tile(x, tuple(reps))


@register_op("diagonal")
def diagonal(params, x, *, offset=0, axis1=0, axis2=1):
    """``torch.diagonal``: the diagonal of axes ``axis1``/``axis2``, as the last axis."""
    return jnp.diagonal(x, offset, axis1, axis2)


@register_op("mode_pad")
def mode_pad(params, x, *, padding, mode):
    """Pad the last ``len(padding)`` axes by ``(lo, hi)`` with ``mode`` ``"reflect"``
    (torch's reflection pad), ``"edge"`` (replication) or ``"wrap"`` (circular)."""
    if mode not in ("reflect", "edge", "wrap"):
        raise ValueError(f"mode_pad: mode must be reflect, edge or wrap, got {mode!r}")
    lead = ((0, 0),) * (x.ndim - len(padding))
    return jnp.pad(x, lead + tuple((int(lo), int(hi)) for lo, hi in padding), mode=mode)


@register_op("full_like")
def full_like(params, x, *, value, dtype=None):
    """A tensor of ``x``'s shape filled with ``value`` (``dtype``: a numpy name; x's if None)."""
    dt = jax.dtypes.canonicalize_dtype(dtype) if dtype else x.dtype
    return jnp.full(x.shape, value, dt)


@register_op("col2im")
def col2im(params, x, *, output_size, kernel_size, dilation, padding, stride):
    """``torch.nn.functional.fold``: sum sliding blocks x (N, C*kh*kw, L) into (N, C, H, W)
    (``output_size`` (H, W)); the adjoint of ``unfold``. One strided add per kernel tap."""
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (
        output_size,
        kernel_size,
        dilation,
        padding,
        stride,
    )
    lh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    lw = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, c = x.shape[0], x.shape[1] // (kh * kw)
    cols = jnp.reshape(x, (n, c, kh, kw, lh, lw))
    out = jnp.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (lh - 1) + 1, sh)
            cols_ = slice(j * dw, j * dw + sw * (lw - 1) + 1, sw)
            out = out.at[:, :, rows, cols_].add(cols[:, :, i, j])
    return out[:, :, ph : ph + h, pw : pw + w]


def _unnormalize(g: jax.Array, size: int, align_corners: bool) -> jax.Array:
    if align_corners:
        return (g + 1) / 2 * (size - 1)
    return ((g + 1) * size - 1) / 2


@register_op("grid_sample")
def grid_sample(params, x, grid, *, mode, padding_mode, align_corners):
    """``torch.nn.functional.grid_sample`` in 2-d: x (N, C, H, W) sampled at grid (N, Ho, Wo,
    2) (x, y in [-1, 1]) -> (N, C, Ho, Wo); ``mode`` ``"bilinear"`` or ``"nearest"``,
    ``padding_mode`` ``"zeros"`` or ``"border"``."""
    n, c, h, w = x.shape
    px = _unnormalize(grid[..., 0], w, align_corners)
    py = _unnormalize(grid[..., 1], h, align_corners)
    if padding_mode == "border":
        px, py = jnp.clip(px, 0, w - 1), jnp.clip(py, 0, h - 1)
    flat = jnp.reshape(x, (n, c, h * w))

    def tap(iy: jax.Array, ix: jax.Array) -> jax.Array:
        """x at integer positions (N, Ho, Wo), zero outside."""
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        idx = jnp.clip(iy, 0, h - 1) * w + jnp.clip(ix, 0, w - 1)
        idx = jnp.broadcast_to(jnp.reshape(idx, (n, 1, -1)), (n, c, idx[0].size))
        vals = jnp.reshape(jnp.take_along_axis(flat, idx, axis=2), (n, c) + ix.shape[1:])
        return jnp.where(inside[:, None], vals, jnp.zeros((), x.dtype))

    if mode == "nearest":
        return tap(jnp.round(py).astype(jnp.int32), jnp.round(px).astype(jnp.int32))
    if mode != "bilinear":
        raise ValueError(f"grid_sample: mode must be bilinear or nearest, got {mode!r}")
    x0, y0 = jnp.floor(px), jnp.floor(py)
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@register_op("embedding_bag")
def embedding_bag(
    params, indices, offsets, weights=None, *, mode, include_last_offset, padding_idx
):
    """``torch.nn.functional.embedding_bag`` of 1-d ``indices`` split into bags at
    ``offsets``: per bag the sum, mean or max (``mode``) of rows of ``params["weight"]``
    (num, dim), each row times its ``weights`` entry when given (sum only). Rows equal to
    ``padding_idx`` (None: none) are left out; an empty bag gives zeros. With
    ``include_last_offset`` the last offset ends the last bag (torch: ``len(indices)``).
    Returns (bags, dim)."""
    table = params["weight"]
    bags = offsets.shape[0] - (1 if include_last_offset else 0)
    bag = jnp.searchsorted(offsets, jnp.arange(indices.shape[0]), side="right") - 1
    keep = bag < bags
    if padding_idx is not None:
        keep = keep & (indices != padding_idx)
    bag = jnp.where(keep, bag, bags)  # a spare segment for what is left out
    rows = jnp.take(table, indices, axis=0)
    if weights is not None:
        rows = rows * weights[:, None]
    if mode == "max":
        out = jax.ops.segment_max(rows, bag, num_segments=bags + 1)[:bags]
        count = jax.ops.segment_sum(keep.astype(table.dtype), bag, num_segments=bags + 1)[:bags]
        return jnp.where(count[:, None] > 0, out, jnp.zeros((), table.dtype))
    out = jax.ops.segment_sum(rows, bag, num_segments=bags + 1)[:bags]
    if mode == "mean":
        count = jax.ops.segment_sum(keep.astype(table.dtype), bag, num_segments=bags + 1)[:bags]
        out = out / jnp.maximum(count, 1)[:, None]
    return out
