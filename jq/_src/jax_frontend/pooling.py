"""Pooling windows: when a ``reduce_window`` is one of jq's pooling ops.

``lax.reduce_window`` (what ``nnx.max_pool`` / ``linen.avg_pool`` emit) pools any axes; jq's
``max_pool`` and ``avg_pool`` pool the spatial axes of channels-first data, torch's way. The
converter stores a pooled value channels-first when its window spares the batch and the
last (channel) axis (:func:`pool_perm`); a window that then spares the first two stored
axes, pads each spatial axis the same on both sides and has no base dilation is a pooling
layer (:func:`window_of`). An average pool is that sum divided by what torch's ``avg_pool``
divides by, with or without counting the padding (:func:`avg_pool_attrs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..graph.ops import avg_pool_divisor
from .layout import Perm


class Window(NamedTuple):
    """A pooling window over the spatial axes of channels-first data (one entry per axis).

    Attributes:
      kernel_size, stride, padding (one side; both sides are equal), dilation.
    """

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]


def _spares(window, strides, padding, axes: Sequence[int]) -> bool:
    """The window neither pools, strides nor pads along ``axes``."""
    return all(window[a] == 1 and strides[a] == 1 and tuple(padding[a]) == (0, 0) for a in axes)


def pool_perm(perm: Perm, window, strides, padding) -> Perm:
    """The storage permutation to pool a value stored with ``perm`` in: ``perm`` if the
    window already spares the first two stored axes; channels-first (``(0, n-1, 1, ...)``)
    if it spares the logical batch and last axes of a 3- to 5-d value; else ``perm``."""
    n = len(perm)
    if _spares(window, strides, padding, (perm[0], perm[1])) or not 3 <= n <= 5:
        return perm
    if _spares(window, strides, padding, (0, n - 1)):
        return (0, n - 1) + tuple(range(1, n - 1))
    return perm


def window_of(attrs: Mapping[str, Any]) -> Window | None:
    """The pooling window of ``reduce_window`` attrs in storage order, or ``None`` if the
    window is not one of a channels-first pooling layer (see module docstring)."""
    w, s, p = attrs["window"], attrs["strides"], attrs["padding"]
    if len(w) < 3 or any(d != 1 for d in attrs["base_dilation"]) or not _spares(w, s, p, (0, 1)):
        return None
    pads = p[2:]
    if any(lo != hi for lo, hi in pads):
        return None
    return Window(
        tuple(w[2:]),
        tuple(s[2:]),
        tuple(lo for lo, _ in pads),
        tuple(attrs["window_dilation"][2:]),
    )


def max_pool_attrs(attrs: Mapping[str, Any]) -> dict | None:
    """jq ``max_pool`` attrs for a max ``reduce_window`` (storage order), or ``None``. The
    pipeline treats ``max_pool`` as moving values, not making new ones (no quantizer)."""
    win = window_of(attrs)
    if attrs["computation"] != "max" or win is None:
        return None
    return {
        "kernel_size": win.kernel_size,
        "stride": win.stride,
        "padding": win.padding,
        "dilation": win.dilation,
        "ceil_mode": False,
    }


def avg_pool_attrs(
    attrs: Mapping[str, Any], in_shape: Sequence[int], divisor: np.ndarray, out_shape
) -> dict | None:
    """jq ``avg_pool`` attrs for a sum ``reduce_window`` (attrs in storage order, input of
    stored shape ``in_shape``) divided by ``divisor`` (broadcastable to ``out_shape``), or
    ``None`` when the division is not torch's: the divisor must equal, everywhere, what
    ``avg_pool`` divides by with ``count_include_pad`` (preferred, torch's default) or without
    (Flax's ``count_include_pad=False`` divides by a pooled array of ones). Torch's limit on
    the padding (at most half the window) is kept, so the layer exports."""
    win = window_of(attrs)
    if attrs["computation"] != "sum" or win is None or any(d != 1 for d in win.dilation):
        return None
    if any(2 * p > k for p, k in zip(win.padding, win.kernel_size, strict=True)):
        return None
    try:
        have = np.broadcast_to(np.asarray(divisor, np.float32), tuple(out_shape))
    except ValueError:
        return None
    base = {"kernel_size": win.kernel_size, "stride": win.stride, "padding": win.padding}
    for include in (True, False):
        want = avg_pool_divisor(in_shape[2:], **base, ceil_mode=False, count_include_pad=include)
        if np.array_equal(have, np.broadcast_to(want, have.shape)):
            return {
                **base,
                "ceil_mode": False,
                "count_include_pad": include,
                "divisor_override": None,
            }
    return None
