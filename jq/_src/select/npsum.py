"""NumPy-exact sums for ``mct_compat`` mode.

MCT reduces with NumPy, whose float sums are pairwise (blocks of at most 128 elements summed by
8 interleaved accumulators, blocks combined in a binary tree). XLA sums in another order and
contracts ``a * b + c`` into fused multiply-adds, so its last bits differ, and on flat error
curves (MAE at 2 bits, say) those bits decide which candidate wins. These functions rebuild
NumPy's order as a static plan (computed once per length) of gathers and adds, and keep
products out of the adds so that XLA cannot fuse them.

Three entry points share NumPy's leaf-block sum (:func:`_leaf_sums`):

* :func:`pairwise_sum` / :func:`mean`: the whole last axis, its length static;
* :func:`planned_sum` / :func:`planned_mean`: the first ``n`` of a padded axis (a
  :class:`PrefixPlan`), or ``n`` elements at any slots (a :class:`SumPlan`), in the order of a
  plan built on the host (``n`` a runtime value, one program per padded length);
* :func:`slice_sum`: ``v[start:start + n]`` with ``start`` and ``n`` traced (computed inside the
  program, as the KL metric's histogram slices are), optionally in float32 arithmetic on
  float64 values (:func:`round_f32`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

_BLOCK = 128  # NumPy's PW_BLOCKSIZE
_UNROLL = 8

Round = Callable[[jax.Array], jax.Array]


def round_f32(x: jax.Array) -> jax.Array:
    """Round float64 values to float32 precision, staying float64.

    MCT-compat code does its float32 arithmetic this way: a float32 ``+ - * /`` equals the
    float64 operation rounded to float32 (53 >= 2 * 24 + 2 bits, so the double rounding is
    innocuous), and XLA cannot drop a ``reduce_precision`` the way it drops float32 round trips
    or keeps excess precision in fused float32 code (``xla_allow_excess_precision``).
    """
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)


def opaque(x: jax.Array) -> jax.Array:
    """``x`` unchanged, but hidden from the compiler so that no consumer fuses with its producer.

    XLA's CPU backend lets LLVM contract ``a * b + c`` into one fused multiply-add, and hoists
    loop-invariant selects, so a guard must change the bits a compiler sees: xor-ing the bits
    with ``isnan(x)`` (zero for every finite value) does that and costs one integer op.
    """
    itype = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[jnp.dtype(x.dtype).itemsize]
    bits = jax.lax.bitcast_convert_type(x, itype)
    bits = bits ^ jnp.isnan(x).astype(itype)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


def mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a * b``, rounded on its own even when a sum consumes it (no FMA)."""
    return opaque(a * b)


def mul_add(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """``a * b + c`` rounded twice, as NumPy computes it (no FMA)."""
    return mul(a, b) + c


def div(a: jax.Array, n: ArrayLike) -> jax.Array:
    """``a / n`` as a true division, rounded on its own.

    XLA rewrites ``x / const`` as ``x * (1 / const)`` and ``y / (x / c)`` as ``y * c / x``; a
    guarded divisor stops the first, an optimisation barrier around the quotient the second.
    """
    n = jnp.asarray(n, a.dtype)
    q: jax.Array = jax.lax.optimization_barrier(  # type: ignore[no-untyped-call]
        a / jnp.where(jnp.isnan(a), jnp.ones_like(n), n)
    )
    return q


def linspace(first: jax.Array, last: jax.Array, num: int) -> jax.Array:
    """``np.linspace(first, last, num)`` with NumPy's arithmetic, for array ends too.

    ``k * step + first`` rounded twice, NumPy's ``k / div * delta`` branch when any step is 0,
    and an exact last point.

    Args:
      first, last: arrays of one shape ``S`` (or scalars).
      num: number of points (static, >= 2).

    Returns:
      ``(num, *S)``.
    """
    first, last = jnp.asarray(first), jnp.asarray(last)
    delta = last - first
    step = div(delta, num - 1)
    k = jnp.arange(num, dtype=delta.dtype).reshape((-1,) + (1,) * delta.ndim)
    y = jnp.where(
        jnp.any(step == 0),
        mul(div(k, num - 1), delta[None]),
        mul(k, step[None]),
    )
    return (y + first[None]).at[-1].set(last)


def _tree(n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """NumPy's pairwise tree of ``n`` elements: leaf blocks ``(start, size)`` (``size <= 128``)
    and nodes ``(depth, left, right)`` (``right = -1``: a leaf, ``left`` its leaf index)."""
    leaves: list[tuple[int, int]] = []
    nodes: list[tuple[int, int, int]] = []

    def build(start: int, size: int, depth: int) -> int:
        if size <= _BLOCK:
            leaves.append((start, size))
            nodes.append((depth, len(leaves) - 1, -1))
            return len(nodes) - 1
        half = size // 2
        half -= half % _UNROLL
        left = build(start, half, depth + 1)
        right = build(start + half, size - half, depth + 1)
        nodes.append((depth, left, right))
        return len(nodes) - 1

    build(0, n, 0)
    return leaves, nodes


@functools.lru_cache(maxsize=256)
def _plan(
    n: int,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Static gather plan of NumPy's pairwise sum of ``n >= 8`` elements.

    Returns:
      ``(main, tail, levels)``: ``main[L, 16, 8]`` and ``tail[L, 7]`` element indices of each
      leaf block (``n`` = a zero pad); ``levels``: per tree depth (deepest first) the pair of
      child indices into ``concat(previous level, leaves)`` and a leaf mask.
    """
    leaves, nodes = _tree(n)
    main, tail = _leaf_gathers(leaves, len(leaves), n)
    depth_max = max(d for d, _, _ in nodes)
    pos: dict[int, int] = {}  # node id -> index within its depth's value array
    levels = []
    prev_count = 0
    for d in range(depth_max, -1, -1):
        ids = [k for k, nd in enumerate(nodes) if nd[0] == d]
        left = np.empty(len(ids), np.int64)
        right = np.empty(len(ids), np.int64)
        is_leaf = np.empty(len(ids), bool)
        for j, k in enumerate(ids):
            _, a, b = nodes[k]
            is_leaf[j] = b < 0
            if b < 0:  # a leaf: index into the leaves, placed after the previous level
                left[j] = right[j] = prev_count + a
            else:
                left[j], right[j] = pos[a], pos[b]
            pos[k] = j
        levels.append((left, right, is_leaf))
        prev_count = len(ids)
    return main, tail, levels


def _leaf_gathers(
    leaves: list[tuple[int, int]], n_leaves: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """``main[n_leaves, 16, 8]`` / ``tail[n_leaves, 7]`` element indices of each leaf block;
    unused slots (and leaves past ``len(leaves)``) point at ``pad``, a zero."""
    main = np.full((n_leaves, _BLOCK // _UNROLL, _UNROLL), pad, np.int64)
    tail = np.full((n_leaves, _UNROLL - 1), pad, np.int64)
    for i, (start, size) in enumerate(leaves):
        m = size - size % _UNROLL
        main[i].reshape(-1)[:m] = np.arange(start, start + m)
        tail[i, : size - m] = np.arange(start + m, start + size)
    return main, tail


def _add(a: jax.Array, b: jax.Array, rnd: Round | None) -> jax.Array:
    """``a + b``, rounded by ``rnd`` when given (float32 arithmetic on float64 values)."""
    return a + b if rnd is None else rnd(a + b)


def _acc_tree(r: jax.Array, rnd: Round | None = None) -> jax.Array:
    """NumPy's fixed tree over the 8 accumulators ``r[..., 8]`` of a leaf block."""
    pairs = [_add(r[..., 2 * i], r[..., 2 * i + 1], rnd) for i in range(_UNROLL // 2)]
    return _add(_add(pairs[0], pairs[1], rnd), _add(pairs[2], pairs[3], rnd), rnd)


def _leaf_sums(g: jax.Array, t: jax.Array, rnd: Round | None = None) -> jax.Array:
    """NumPy's sum of each leaf block: ``g[..., L, 16, 8]`` rows, 8 interleaved accumulators,
    their fixed tree, then the ``t[..., L, 7]`` remainder one by one. Zero pads are exact.

    ``rnd`` (e.g. :func:`round_f32`) rounds every addition: NumPy's float32 sum of float32
    values held in float64.
    """
    r = g[..., 0, :]
    for i in range(1, g.shape[-2]):
        r = _add(r, g[..., i, :], rnd)
    res = _acc_tree(r, rnd)
    for i in range(t.shape[-1]):
        res = _add(res, t[..., i], rnd)
    return res


class SumPlan(NamedTuple):
    """NumPy's pairwise-sum order for ``n`` elements at arbitrary slots of a padded axis, as
    runtime arrays (a pytree); for a sum over a prefix, :class:`PrefixPlan` is faster.

    Attributes:
      main: ``(L, 16, 8)`` int32 slot of each leaf block's 8-strided part (``length``: zero).
      tail: ``(L, 7)`` int32 slots of each block's remainder.
      left, right: ``(D, L)`` int32 children of each tree level (deepest first), indices into
        ``concat(previous level, leaf sums, [0])``.
      copy: ``(D, L)`` bool, take ``left`` alone (a leaf, a pass-through or a zero pad).

    NumPy arrays as :func:`sum_plan_2d` builds them on the host, JAX arrays once passed to a
    program.
    """

    main: jax.Array | np.ndarray
    tail: jax.Array | np.ndarray
    left: jax.Array | np.ndarray
    right: jax.Array | np.ndarray
    copy: jax.Array | np.ndarray


class PrefixPlan(NamedTuple):
    """NumPy's pairwise-sum order for the first ``n`` of ``length`` slots (a pytree).

    Every leaf block of NumPy's tree but the last starts and ends on a multiple of 8 (the tree
    splits at multiples of 8), so the leaves are runs of whole rows of 8 in the axis seen as
    ``(ceil(length / 8), 8)``, and only the last leaf has a remainder. Summing rows at 16 static
    shifts needs no gather of the data (10x faster than :class:`SumPlan`'s on CPU).

    Attributes:
      rows: ``(R,)`` int32, ``R = ceil(length / 8)``: at the first row of a leaf, its number
        of whole rows; 0 elsewhere.
      starts: ``(L,)`` int32 first row of each leaf (``R + 16``, a zero row, past the last).
      tail: ``()`` int32 first slot of the remainder, ``n - n % 8``.
      n_tail: ``()`` int32 remainder length, ``n % 8``.
      last: ``()`` int32 the leaf that takes the remainder.
      left, right, copy: the tree levels, as in :class:`SumPlan`.
    """

    rows: jax.Array | np.ndarray
    starts: jax.Array | np.ndarray
    tail: jax.Array | np.ndarray
    n_tail: jax.Array | np.ndarray
    last: jax.Array | np.ndarray
    left: jax.Array | np.ndarray
    right: jax.Array | np.ndarray
    copy: jax.Array | np.ndarray


def _plan_sizes(length: int) -> tuple[int, int]:
    """Leaves and levels that every ``n <= length`` fits in: leaves of a tree over more than
    128 elements hold at least 57, so ``ceil(length / 57)`` leaves and ``log2`` of it levels."""
    n_leaves = max(1, -(-length // 57))
    return n_leaves, n_leaves.bit_length() + 1


def _levels(
    nodes: list[tuple[int, int, int]], n_leaves: int, n_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(left, right, copy)``, each ``(n_levels, n_leaves)``: the tree's levels, deepest first
    (see :class:`SumPlan`), the deepest real one placed last but one."""
    zero = 2 * n_leaves
    left = np.full((n_levels, n_leaves), zero, np.int32)
    right = np.full((n_levels, n_leaves), zero, np.int32)
    copy = np.ones((n_levels, n_leaves), bool)
    depth_max = max(d for d, _, _ in nodes)
    if depth_max + 1 > n_levels:  # pragma: no cover - a bound bug
        raise RuntimeError(f"pairwise plan of depth {depth_max} does not fit {n_levels} levels")
    pos: dict[int, int] = {}
    for level, d in enumerate(range(depth_max, -1, -1), start=n_levels - depth_max - 1):
        ids = [k for k, nd in enumerate(nodes) if nd[0] == d]
        for j, k in enumerate(ids):
            _, a, b = nodes[k]
            if b < 0:
                left[level, j] = n_leaves + a
            else:
                left[level, j], right[level, j], copy[level, j] = pos[a], pos[b], False
            pos[k] = j
    return left, right, copy


@functools.lru_cache(maxsize=1024)
def _sum_plan_np(n: int, length: int, rows: int, row_len: int) -> SumPlan:
    leaves, nodes = _tree(n)
    n_leaves, n_levels = _plan_sizes(length)
    if len(leaves) > n_leaves:  # pragma: no cover - a bound bug
        raise RuntimeError(f"pairwise plan of {n} elements does not fit {length} slots")
    main, tail = _leaf_gathers(leaves, n_leaves, length)
    if rows > 1:  # element k of the sum lies in row k // row_len of a padded (rows, ...) layout
        stride = length // rows
        for idx in (main, tail):
            real = idx < length
            idx[real] = (idx[real] // row_len) * stride + idx[real] % row_len
    i32 = np.int32
    return SumPlan(main.astype(i32), tail.astype(i32), *_levels(nodes, n_leaves, n_levels))


@functools.lru_cache(maxsize=1024)
def _prefix_plan_np(n: int, length: int) -> PrefixPlan:
    leaves, nodes = _tree(n)
    n_leaves, n_levels = _plan_sizes(length)
    if len(leaves) > n_leaves:  # pragma: no cover - a bound bug
        raise RuntimeError(f"pairwise plan of {n} elements does not fit {length} slots")
    n_rows = -(-length // _UNROLL)
    rows = np.zeros(n_rows, np.int32)
    starts = np.full(n_leaves, n_rows + _BLOCK // _UNROLL, np.int32)
    for i, (start, size) in enumerate(leaves):
        if start % _UNROLL or (size % _UNROLL and i != len(leaves) - 1):  # pragma: no cover
            raise RuntimeError(f"leaf ({start}, {size}) of {n} is not aligned to rows of 8")
        rows[start // _UNROLL] = size // _UNROLL
        starts[i] = start // _UNROLL
    i32 = np.int32
    scalars = (i32(n - n % _UNROLL), i32(n % _UNROLL), i32(len(leaves) - 1))
    return PrefixPlan(rows, starts, *scalars, *_levels(nodes, n_leaves, n_levels))


def sum_plan(n: int, length: int) -> PrefixPlan:
    """NumPy's pairwise order for the first ``n`` of ``length`` slots (host NumPy arrays).

    Args:
      n: elements summed, ``1 <= n <= length``.
      length: slots of the (padded) axis summed; the plan's shapes depend on it alone.

    Returns:
      :class:`PrefixPlan` of NumPy arrays (pass them as jit arguments).
    """
    return _prefix_plan_np(int(n), int(length))


def sum_plan_2d(n_rows: int, row_len: int, rows: int, cols: int) -> SumPlan:
    """Plan of the sum of all ``n_rows * row_len`` real elements of a padded ``(rows, cols)``
    array flattened row-major (the real part in its top-left corner)."""
    return _sum_plan_np(n_rows * row_len, rows * cols, rows, row_len)


def _combine(res: jax.Array, plan: SumPlan | PrefixPlan) -> jax.Array:
    """The plan's tree over the leaf sums ``res[..., L]``; returns ``(...)``."""
    values = jnp.zeros_like(res)
    zero = jnp.zeros(res.shape[:-1] + (1,), res.dtype)
    for d in range(plan.left.shape[0]):
        src = jnp.concatenate([values, res, zero], axis=-1)
        a = jnp.take(src, plan.left[d], axis=-1)
        b = jnp.take(src, plan.right[d], axis=-1)
        values = jnp.where(plan.copy[d], a, a + b)
    return values[..., 0]


def _prefix_leaf_sums(x: jax.Array, plan: PrefixPlan) -> jax.Array:
    """NumPy's sum of each leaf block of a :class:`PrefixPlan`: ``(..., length)`` ->
    ``(..., L)``. A leaf's rows are added in order (rows past it add an exact 0)."""
    n_rows, depth = plan.rows.shape[0], _BLOCK // _UNROLL
    pad = (n_rows + depth) * _UNROLL - x.shape[-1]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    r = xp.reshape(x.shape[:-1] + (n_rows + depth, _UNROLL))
    acc = jnp.where((plan.rows > 0)[:, None], r[..., :n_rows, :], 0)
    for i in range(1, depth):
        acc = acc + jnp.where((plan.rows > i)[:, None], r[..., i : i + n_rows, :], 0)
    acc = jnp.concatenate([acc, jnp.zeros_like(r[..., n_rows:, :])], axis=-2)
    res = _acc_tree(jnp.take(acc, plan.starts, axis=-2))
    tail = jax.lax.dynamic_slice_in_dim(xp, plan.tail, _UNROLL, axis=-1)
    at_last = jnp.arange(res.shape[-1]) == plan.last
    for j in range(_UNROLL - 1):
        t = jnp.where(j < plan.n_tail, tail[..., j], 0)
        res = jnp.where(at_last, res + t[..., None], res)
    return res


def planned_sum(x: jax.Array, plan: SumPlan | PrefixPlan) -> jax.Array:
    """Sum over the last axis in the NumPy order of ``plan`` (bit-exact with ``np.sum`` of the
    real elements; padded slots are never read).

    Args:
      x: ``(..., length)`` float array.
      plan: :class:`PrefixPlan` or :class:`SumPlan` for ``length`` (may be traced).

    Returns:
      ``(...)``.
    """
    x = opaque(x)
    if isinstance(plan, PrefixPlan):
        return _combine(_prefix_leaf_sums(x, plan), plan)
    xp = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    res = _leaf_sums(jnp.take(xp, plan.main, axis=-1), jnp.take(xp, plan.tail, axis=-1))
    return _combine(res, plan)


def planned_mean(x: jax.Array, plan: SumPlan | PrefixPlan, n: jax.Array) -> jax.Array:
    """``np.mean`` of the real elements: :func:`planned_sum` divided by ``n`` (true division)."""
    return div(planned_sum(x, plan), n)


def pairwise_sum(x: jax.Array) -> jax.Array:
    """Sum over the last axis in NumPy's pairwise order (bit-exact with ``np.sum``).

    Args:
      x: ``(..., N)`` float array, ``N`` static.

    Returns:
      ``(...)``.
    """
    x = opaque(x)  # its producer (a product, say) must not fuse into the adds below
    n = x.shape[-1]
    halvings = _uniform_halvings(n)
    if halvings is not None:
        return _pairwise_sum_uniform(x, halvings)
    if n < _UNROLL:
        res = jnp.zeros(x.shape[:-1], x.dtype)
        for i in range(n):
            res = res + x[..., i]
        return res
    main, tail, levels = _plan(n)
    xp = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    res = _leaf_sums(
        jnp.take(xp, jnp.asarray(main), axis=-1), jnp.take(xp, jnp.asarray(tail), axis=-1)
    )
    values = jnp.zeros(x.shape[:-1] + (0,), x.dtype)
    for left, right, is_leaf in levels:
        src = jnp.concatenate([values, res], axis=-1)
        a = jnp.take(src, jnp.asarray(left), axis=-1)
        b = jnp.take(src, jnp.asarray(right), axis=-1)
        values = jnp.where(jnp.asarray(is_leaf), a, a + b)
    return values[..., 0]


def _uniform_halvings(n: int) -> int | None:
    """``j`` when the pairwise tree of ``n`` halves exactly ``j >= 1`` times into equal leaves."""
    j = 0
    while n > _BLOCK:
        if n % (2 * _UNROLL):
            return None
        n //= 2
        j += 1
    return j if j >= 1 else None


def _pairwise_sum_uniform(x: jax.Array, halvings: int) -> jax.Array:
    """Fast path of :func:`pairwise_sum` when all leaves are equal (reshapes, no gathers)."""
    leaves = 2**halvings
    size = x.shape[-1] // leaves  # a multiple of 8 by construction
    g = x.reshape(x.shape[:-1] + (leaves, size // _UNROLL, _UNROLL))
    v = _leaf_sums(g, g[..., 0, :0])  # no remainder
    while v.shape[-1] > 1:
        v = v.reshape(v.shape[:-1] + (v.shape[-1] // 2, 2))
        v = v[..., 0] + v[..., 1]
    return v[..., 0]


def mean(x: jax.Array) -> jax.Array:
    """``np.mean`` over the last axis: the pairwise sum divided by ``N`` (a true division)."""
    return div(pairwise_sum(x), float(x.shape[-1]))


# --------------------------------------------------------------------------------------------
# slices with traced bounds


def _slice_leaf_sums(v: jax.Array, start: jax.Array, n: jax.Array, rnd: Round | None) -> jax.Array:
    """NumPy's sum of each segment ``v[start[i] : start[i] + n[i]]``, all ``n <= 128``.

    Each segment is gathered into one ``(16, 8)`` block of its whole groups of 8 and a ``(7,)``
    remainder, zeros elsewhere, then summed by :func:`_leaf_sums` (a segment of fewer than 8
    elements is all remainder: NumPy's plain loop from 0).
    """
    size = v.shape[0]
    pos = jnp.arange(_BLOCK)
    idx = jnp.clip(start[:, None] + pos[None, :], 0, size - 1)
    g = jnp.where(pos[None, :] < n[:, None], v[idx], 0)  # (leaves, 128), zeros past each segment
    zero = jnp.zeros((), v.dtype)
    base = (n // _UNROLL) * _UNROLL  # elements in whole groups of 8
    main = jnp.where(pos[None, :] < base[:, None], g, zero)
    main = main.reshape(g.shape[0], _BLOCK // _UNROLL, _UNROLL)
    rest = base[:, None] + jnp.arange(_UNROLL - 1)[None, :]
    tail = jnp.take_along_axis(g, jnp.clip(rest, 0, _BLOCK - 1), axis=1)
    tail = jnp.where(rest < n[:, None], tail, zero)
    return _leaf_sums(main, tail, rnd)


def _slice_depth(size: int) -> int:
    """Static depth of NumPy's pairwise recursion for up to ``size`` elements."""
    depth, bound = 0, size
    while bound > _BLOCK:
        bound = -(-bound // 2) + _UNROLL - 1  # both halves of n are at most ceil(n / 2) + 7 long
        depth += 1
    return depth


def slice_sum(v: jax.Array, start: ArrayLike, n: ArrayLike, *, float32: bool = False) -> jax.Array:
    """``np.sum(v[start:start+n])`` with NumPy's pairwise order (``0 + pairwise``), traceable.

    Args:
      v: ``(N,)`` array (float32 or float64).
      start, n: int scalars (may be traced), ``0 <= start``, ``start + n <= N``.
      float32: ``v`` is float64 holding float32 values; sum as NumPy does in float32 (every
        addition rounded by :func:`round_f32`).

    Returns:
      Scalar of ``v``'s dtype, bit-identical to NumPy's sum of the slice.
    """
    # NumPy splits n > 128 into n2 = n//2 - (n//2) % 8 and n - n2, recursively, and sums the
    # leaves (n <= 128) with eight accumulators. Here the tree has a fixed depth: a segment that
    # is already a leaf passes down as (itself, empty), and adding the empty sum 0.0 is exact.
    start = jnp.reshape(jnp.asarray(start, jnp.int32), (1,))
    n = jnp.reshape(jnp.asarray(n, jnp.int32), (1,))
    depth = _slice_depth(v.shape[0])
    for _ in range(depth):
        half = n // 2
        n2 = jnp.where(n > _BLOCK, half - half % _UNROLL, n)
        start = jnp.stack([start, start + n2], axis=1).reshape(-1)
        n = jnp.stack([n2, n - n2], axis=1).reshape(-1)
    rnd = round_f32 if float32 else None
    sums = _slice_leaf_sums(v, start, n, rnd)
    for _ in range(depth):
        sums = _add(sums[0::2], sums[1::2], rnd)
    return _add(jnp.zeros((), v.dtype), sums[0], rnd)
