"""Torch twins of jq's position ops (``jq/_src/graph/ops/indexing.py``: ``where``, ``index``,
``roll``, ``resize``, ``arange``), so graphs that use them run with ``to_torch``."""

from __future__ import annotations

import torch

from jq._src.graph.ops import resize_matrix

from ._to_torch import register_torch_op


@register_torch_op("where")
def _where(params, cond, *xs, x_scalar=None, y_scalar=None):
    rest = list(xs)
    x = rest.pop(0) if x_scalar is None else x_scalar
    y = rest.pop(0) if y_scalar is None else y_scalar
    return torch.where(cond, x, y)


@register_torch_op("index")
def _index(params, x, *indices, positions):
    it = iter(indices)
    key = tuple(
        torch.remainder(next(it).long(), x.shape[a]) if taken else slice(None)
        for a, taken in enumerate(positions)
    )
    return x[key]


@register_torch_op("roll")
def _roll(params, x, *, shifts, axes):
    return torch.roll(x, tuple(shifts), tuple(axes))


@register_torch_op("resize")
def _resize(params, x, *, sizes, mode, align_corners=None, scales=None):
    lead = x.ndim - len(sizes)
    for k, n_out in enumerate(sizes):
        axis = lead + k
        m = resize_matrix(x.shape[axis], n_out, mode, align_corners, scales[k] if scales else None)
        w = torch.as_tensor(m, dtype=x.dtype, device=x.device)
        x = torch.movedim(torch.tensordot(x, w.T, dims=([axis], [0])), -1, axis)
    return x


@register_torch_op("arange")
def _arange(params, like=None, *, start=0, step=1, length=None, axis=0, dtype="int32"):
    n = like.shape[axis] if like is not None else length
    return start + step * torch.arange(n, dtype=getattr(torch, dtype.replace("64", "32")))


@register_torch_op("cumsum")
def _cumsum(params, x, *, axis, dtype=None):
    out = torch.cumsum(x, dim=axis)
    return out.to(getattr(torch, dtype.replace("64", "32"))) if dtype else out


@register_torch_op("flip")
def _flip(params, x, *, axes):
    return torch.flip(x, tuple(axes))
