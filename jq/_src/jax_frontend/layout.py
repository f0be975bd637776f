"""Lazy layouts: a converted value is stored with its axes permuted from the JAX program's.

A Flax convolution reads and writes ``NHWC``; jq's ``conv`` works ``NCHW``. Rather than
transposing around every convolution, a value carries ``perm``: the graph holds
``transpose(logical, perm)``. Elementwise and per-channel ops keep the permutation, so
``conv -> bias -> batch norm -> silu -> conv`` stays channels-first and the pipeline sees the
patterns it folds and fuses; a transpose node is emitted only where an op needs the program's
own axis order (reshape, dot_general, outputs).
"""

from __future__ import annotations

from collections.abc import Sequence

Perm = tuple[int, ...]


def identity(ndim: int) -> Perm:
    return tuple(range(ndim))


def inverse(perm: Sequence[int]) -> Perm:
    """``q`` with ``q[perm[i]] = i``."""
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def dims_to(perm: Sequence[int], target: Sequence[int]) -> Perm:
    """The ``permute`` dims taking a value stored with ``perm`` to one stored with ``target``
    (both relative to the same logical axes)."""
    inv = inverse(perm)
    return tuple(inv[t] for t in target)


def after_transpose(perm: Sequence[int], permutation: Sequence[int]) -> Perm:
    """The storage perm of ``lax.transpose(x, permutation)`` when ``x`` is stored with
    ``perm``: no data moves."""
    inv = inverse(permutation)
    return tuple(inv[p] for p in perm)


def after_reduce(perm: Sequence[int], axes: Sequence[int]) -> tuple[tuple[int, ...], Perm]:
    """``(stored axes, perm of the result)`` for a reduction over logical ``axes``."""
    stored = tuple(i for i, p in enumerate(perm) if p in axes)
    kept = [p for p in perm if p not in axes]
    rank = {p: r for r, p in enumerate(sorted(kept))}
    return stored, tuple(rank[p] for p in kept)


def stored_axis(perm: Sequence[int], axis: int) -> int:
    """Where logical ``axis`` is stored."""
    return list(perm).index(axis)


def permute_attr(perm: Sequence[int], per_axis: Sequence) -> tuple:
    """A per-logical-axis attribute (window sizes, padding) in storage order."""
    return tuple(per_axis[p] for p in perm)
