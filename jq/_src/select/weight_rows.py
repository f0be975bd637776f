"""A weight tensor checked and laid out as the rows of a search, and a search result back in
the tensor's layout.

:class:`WeightRows` holds a tensor as ``(C, N)`` (or ``(C * G, N / G)`` with groups) and its
HMSE scores alike; :func:`finish` turns a search's ``(C,)`` thresholds or ``(C, 2)`` ranges
into the tensor's :class:`~jq._src.select.types.QParams` with MCT's final range rules.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .enums import ErrorMethod, QuantizationMethod
from .quantizers import MIN_THRESHOLD
from .search import SearchResult
from .types import QParams
from .validate import as_float_array, check_axis


class WeightRows:
    """A validated tensor in the ``(C, N)`` search layout."""

    def __init__(
        self,
        tensor: Any,
        hessian: Any,
        *,
        per_channel: bool,
        channel_axis: int,
        error_method: ErrorMethod,
        compat: bool,
        fn: str,
        group_size: int | None = None,
    ) -> None:
        x = as_float_array(tensor, "tensor", fn)
        self.shape = tuple(x.shape)
        self.dtype = np.dtype(x.dtype)
        ndim = max(len(self.shape), 1)
        x = np.asarray(x).reshape(self.shape or (1,))
        axis = check_axis(channel_axis, ndim, "channel_axis", fn) if per_channel else None
        self.axis = axis  # None: per tensor
        if axis is not None:
            x = np.moveaxis(x, axis, 0)
        self.x2d = x.reshape(x.shape[0] if per_channel else 1, -1)
        self.groups = _groups_of(self.x2d.shape, group_size, self.shape, fn)  # None: ungrouped
        self.w2d: np.ndarray | None = None  # sqrt(hessian) in the (C, N) layout, HMSE only
        if error_method is ErrorMethod.HMSE:
            if hessian is None:
                raise ValueError(
                    f"{fn}: error_method='hmse' needs hessian= (per-element scores, the "
                    "tensor's shape)"
                )
            h = np.asarray(as_float_array(hessian, "hessian", fn))
            if tuple(h.shape) != self.shape:
                raise ValueError(
                    f"{fn}: hessian shape {tuple(h.shape)} does not match the tensor's shape "
                    f"{self.shape}"
                )
            if np.any(h < 0):
                raise ValueError(f"{fn}: hessian scores must be >= 0, found negative scores")
            h = h.reshape(self.shape or (1,))
            if axis is not None and not compat:
                h = np.moveaxis(h, axis, 0)
            # compat: [quirk] MCT pairs scores in their original order (reshaped along axis 0).
            self.w2d = np.sqrt(h.astype(np.float64 if compat else np.float32)).reshape(
                self.x2d.shape
            )
        if self.groups is not None:  # each (channel, group) is a row of the search
            self.x2d = self.x2d.reshape(-1, self.x2d.shape[1] // self.groups)
            if self.w2d is not None:
                self.w2d = self.w2d.reshape(self.x2d.shape)

    def out_shape(self, per_channel: bool) -> tuple[int, ...]:
        if self.groups is not None:
            return (-1, self.groups)
        if not per_channel or self.axis is None:
            return ()
        shape = [1] * len(self.shape)
        shape[self.axis] = -1
        return tuple(shape)


def check_group_size(
    group_size: Any, *, per_channel: bool, error_method: ErrorMethod, compat: bool, fn: str
) -> int | None:
    """``group_size`` checked against the other options: ``None``, or a positive int with
    ``per_channel``, not KL, not ``mct_compat``.

    KL is refused: it compares 2048-bin histograms of a row with its quantized histogram, and
    a group of ``g`` (32..128) values fills at most ``g`` bins, so the divergence measures
    the binning, not the clipping error; it would also leave the fixed tile programs.
    """
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral):
        raise TypeError(f"{fn}: group_size must be an int or None, got {type(group_size).__name__}")
    if group_size < 1:
        raise ValueError(f"{fn}: group_size must be a positive int, got {group_size}")
    if compat:
        raise ValueError(
            f"{fn}: group_size={group_size} is not available with mct_compat=True (MCT 2.6.1 "
            "has per-tensor and per-channel weights only)"
        )
    if not per_channel:
        raise ValueError(
            f"{fn}: group_size={group_size} needs per_channel=True (groups split each output "
            "channel)"
        )
    if error_method is ErrorMethod.KL:
        raise ValueError(
            f"{fn}: error_method='kl' has no per-group mode: a group of {group_size} values "
            "fills at most that many of KL's 2048 histogram bins, so the divergence does not "
            "measure the clipping error; use mse, mae, lp, hmse or noclipping"
        )
    return int(group_size)


def _groups_of(
    x2d_shape: tuple[int, int], group_size: int | None, shape: tuple[int, ...], fn: str
) -> int | None:
    """Groups per channel row of a ``(C, N)`` layout (``None`` without ``group_size``)."""
    if group_size is None:
        return None
    n = x2d_shape[1]
    if len(shape) < 2 or n % group_size:
        raise ValueError(
            f"{fn}: group_size={group_size} does not divide the input size {n} of a tensor of "
            f"shape {shape} (the product of its axes other than channel_axis)"
        )
    return n // group_size


def finish(
    res: SearchResult,
    prep: WeightRows,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    per_channel: bool,
    compat: bool,
    return_errors: bool,
) -> QParams:
    """Reshape a search result to the tensor's layout and apply the final range rules."""
    shape = prep.out_shape(per_channel)
    param = np.asarray(res.param)
    extra = {}
    if return_errors:
        extra = dict(errors=jax.device_put(res.errors), candidates=jax.device_put(res.candidates))
    if method is not QuantizationMethod.UNIFORM:
        t = param.reshape(shape) if per_channel else param.reshape(())
        return QParams(threshold=jax.device_put(t), signed=True, **extra)
    a, b = param[:, 0].copy(), param[:, 1].copy()
    if compat:
        # [quirk] MCT's per-tensor NOCLIPPING range is a pair of scalars, for which the rule is
        # applied unconditionally; for arrays only where the range has zero width.
        same = (a == a) if (error_method is ErrorMethod.NOCLIPPING and not per_channel) else a == b
        a[same & (a > 0)] = 0
        b[same & (b < 0)] = 0
    else:
        # A zero-width range has no grid: widen it to include 0 (all-zero: [0, 2^-16]).
        same = a == b
        a[same] = np.minimum(a[same], 0)
        b[same] = np.maximum(b[same], 0)
        b = np.where(a == b, a + MIN_THRESHOLD, b)
    if not per_channel:
        a, b = a.reshape(()), b.reshape(())
    else:
        a, b = a.reshape(shape), b.reshape(shape)
    return QParams(range_min=jax.device_put(a), range_max=jax.device_put(b), signed=True, **extra)


def prepare_all(
    tensors: Sequence[Any],
    channel_axis: int | Sequence[int],
    hessians: Sequence[Any] | None,
    *,
    per_channel: bool,
    error_method: ErrorMethod,
    compat: bool,
    fn: str,
    group_size: int | None = None,
) -> list[WeightRows]:
    """One :class:`WeightRows` per tensor (checks the list and its per-tensor arguments)."""
    if isinstance(tensors, (np.ndarray, jax.Array)) or not isinstance(tensors, Sequence):
        raise TypeError(f"{fn}: tensors must be a list of arrays, got {type(tensors).__name__}")
    axes = channel_axis if isinstance(channel_axis, Sequence) else [channel_axis] * len(tensors)
    hess = hessians if hessians is not None else [None] * len(tensors)
    if len(axes) != len(tensors) or len(hess) != len(tensors):
        raise ValueError(f"{fn}: channel_axis / hessians must have one entry per tensor")
    return [
        WeightRows(
            t,
            h,
            per_channel=per_channel,
            channel_axis=a,
            error_method=error_method,
            compat=compat,
            fn=fn,
            group_size=group_size,
        )
        for t, h, a in zip(tensors, hess, axes, strict=True)
    ]
