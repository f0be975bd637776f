"""jq ops for selecting and moving values by position: ``where``, ``index``, ``roll``,
``resize``, ``arange``. Registered in the op table when ``jq`` is imported, with the calling
convention of ``ops.py`` (``fn(params, *inputs, **attrs)``).

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
