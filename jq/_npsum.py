"""NumPy-exact sums for ``mct_compat`` mode.

MCT reduces with NumPy, whose float sums are pairwise (blocks of at most 128 elements summed by
8 interleaved accumulators, blocks combined in a binary tree). XLA sums in another order and
contracts ``a * b + c`` into fused multiply-adds, so its last bits differ, and on flat error
curves (MAE at 2 bits, say) those bits decide which candidate wins. These functions rebuild
NumPy's order as a static plan (computed once per length) of gathers and adds, and keep
products out of the adds so that XLA cannot fuse them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_BLOCK = 128
_UNROLL = 8


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


def div(a: jax.Array, n) -> jax.Array:
    """``a / n`` as a true division, rounded on its own.

    XLA rewrites ``x / const`` as ``x * (1 / const)`` and ``y / (x / c)`` as ``y * c / x``; a
    guarded divisor stops the first, an optimisation barrier around the quotient the second.
    """
    n = jnp.asarray(n, a.dtype)
    return jax.lax.optimization_barrier(a / jnp.where(jnp.isnan(a), jnp.ones_like(n), n))


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


@functools.lru_cache(maxsize=256)
def _plan(n: int):
    """Static gather plan of NumPy's pairwise sum of ``n >= 8`` elements.

    Returns:
      ``(main, tail, levels)``: ``main[L, 16, 8]`` and ``tail[L, 7]`` element indices of each
      leaf block (``n`` = a zero pad); ``levels``: per tree depth (deepest first) the pair of
      child indices into ``concat(previous level, leaves)`` and a leaf mask.
    """
    leaves: list[tuple[int, int]] = []
    nodes: list[tuple[int, int, int]] = []  # (depth, left, right) or (depth, leaf, -1)

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
    main = np.full((len(leaves), _BLOCK // _UNROLL, _UNROLL), n, np.int64)
    tail = np.full((len(leaves), _UNROLL - 1), n, np.int64)
    for i, (start, size) in enumerate(leaves):
        m = size - size % _UNROLL
        main[i].reshape(-1)[:m] = np.arange(start, start + m)
        tail[i, : size - m] = np.arange(start + m, start + size)
    depth_max = max(d for d, _, _ in nodes)
    pos = {}  # node id -> index within its depth's value array
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
    g = jnp.take(xp, jnp.asarray(main), axis=-1)  # (..., L, 16, 8)
    r = g[..., 0, :]
    for i in range(1, g.shape[-2]):
        r = r + g[..., i, :]
    res = (r[..., 0] + r[..., 1] + (r[..., 2] + r[..., 3])) + (
        r[..., 4] + r[..., 5] + (r[..., 6] + r[..., 7])
    )
    t = jnp.take(xp, jnp.asarray(tail), axis=-1)  # (..., L, 7)
    for i in range(t.shape[-1]):
        res = res + t[..., i]
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
    r = g[..., 0, :]
    for i in range(1, g.shape[-2]):
        r = r + g[..., i, :]
    v = (r[..., 0] + r[..., 1] + (r[..., 2] + r[..., 3])) + (
        r[..., 4] + r[..., 5] + (r[..., 6] + r[..., 7])
    )
    while v.shape[-1] > 1:
        v = v.reshape(v.shape[:-1] + (v.shape[-1] // 2, 2))
        v = v[..., 0] + v[..., 1]
    return v[..., 0]


def mean(x: jax.Array) -> jax.Array:
    """``np.mean`` over the last axis: the pairwise sum divided by ``N`` (a true division)."""
    return div(pairwise_sum(x), float(x.shape[-1]))
