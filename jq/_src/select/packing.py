"""Packing a call's tensors into the stacks its compiled programs search, and back.

A compiled search serves a fixed stack shape, so a call's tensors (weights) or histograms
(activations) are padded to bucketed sizes (:mod:`.buckets`) and their stacks' leading axes
to a multiple of a mesh's devices (:mod:`jq._src.runtime.mesh`); the padded entries are
dropped from the results. (The default mode's weights go on fixed tiles instead,
:mod:`.tiles`.)
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh

from ..runtime.mesh import padded_length
from .buckets import bucket
from .search import SearchResult

T = TypeVar("T")


def bucket_shape(shape: tuple[int, int], per_channel: bool) -> tuple[int, int]:
    """The padded ``(C, N)`` search layout of a ``(C, N)`` tensor (``C = 1`` per tensor)."""
    c, n = shape
    return (bucket(c) if per_channel else 1), bucket(n)


def stack_padded(rows: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``(T, *shape)`` zeros with each ``(C, N)`` array in its top-left corner."""
    out = np.zeros((len(rows),) + shape, dtype)
    for t, r in enumerate(rows):
        out[t, : r.shape[0], : r.shape[1]] = r
    return out


def real_channels(res: SearchResult, t: int, c: int) -> SearchResult:
    """Tensor ``t`` of a group's stacked result, its ``c`` real channels only (host arrays)."""
    cands = res.candidates[t]
    ranges = cands.ndim == res.errors[t].ndim + 1
    return SearchResult(
        res.param[t, :c],
        res.loss[t, :c],
        res.errors[t, ..., :c],
        cands[..., :c, :] if ranges else cands[..., :c],
    )


def padded_rows(n: int, mesh: Mesh | None) -> np.ndarray:
    """Row indices that stack ``n`` entries as ``bucket(n)`` rows (a multiple of the mesh's
    devices): ``0 .. n-1``, then copies of the first (the searches are independent per row, so
    one compiled search serves every count)."""
    rows = np.arange(padded_length(bucket(n, minimum=1), mesh)) % n
    rows[n:] = 0
    return rows


def first_rows(tree: T, n: int) -> T:
    """Every leaf of ``tree`` cut to its first ``n`` rows (the real ones of a padded stack)."""
    cut: T = jax.tree_util.tree_map(lambda a: a[:n], tree)
    return cut
