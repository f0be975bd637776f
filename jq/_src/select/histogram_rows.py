"""Histogram updates on fixed tiles: a handful of programs for every value of every model.

A value is cut into rows of one of :data:`ROW_SIZES` elements (the smallest that holds it, or
as many of the largest as it needs); :data:`ROWS` rows go through one call. Since a batch's
range of each value is known before its rows are counted (the host reads it), every row is
counted on its value's final grid, and a value's rows add up to the counts of one update over
the whole value, bit for bit (integer counts). The programs depend only on the row size, the
bin count and the mode, never on a model's shapes: 5 programs in the default mode, 3 in
compat mode.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..runtime.jit import jit
from .histogram import (
    HistogramState,
    MCTHistogramState,
    _histogram_impl,
    add_fine_counts,
    fine_counts,
    regrid,
    widen_constant,
)

ROW_SIZES = (1 << 10, 1 << 13, 1 << 16)
ROWS = 8  # rows (or values) per call


@functools.partial(jit, static_argnames=("n_fine",))
def _grids(exponents, lo, hi, *, n_fine: int):
    """``(e, offset)`` (``(ROWS,)`` int32 each) of each value's grid after this batch."""
    return jax.vmap(functools.partial(regrid, n_fine=n_fine))(exponents, lo, hi)


@functools.partial(jit, static_argnames=("n_fine",))
def _count_rows(x, n_real, e, offset, *, n_fine: int):
    """``(ROWS, n_fine)`` int32 counts of the first ``n_real`` values of each row of ``x``
    (``(ROWS, S)`` float32) on its grid ``(e, offset)``."""

    def row(xr, n, er, orr):
        real = jnp.arange(xr.shape[0]) < n
        xr = jnp.where(real, xr, xr[0])  # padding takes a real value, then counts 0
        return fine_counts(xr, real.astype(jnp.int32), er, orr, n_fine)

    return jax.vmap(row)(x, n_real, e, offset)


@jit
def _add(states: HistogramState, new, lo, hi, e, offset) -> HistogramState:
    return jax.vmap(add_fine_counts)(states, new, lo, hi, e, offset)


@functools.partial(jit, static_argnames=("n_bins",))
def _mct_rows(x, n_real, lo, hi, *, n_bins: int):
    """MCT's float64 histogram of each row's first ``n_real`` values over ``[lo, hi]``:
    ``(edges (ROWS, n_bins + 1), counts (ROWS, n_bins))``."""

    def row(xr, n, lr, hr):
        mask = jnp.arange(xr.shape[0]) < n
        return _histogram_impl(xr.astype(jnp.float64), None, n_bins, mask, widen_constant(lr, hr))

    return jax.vmap(row)(x, n_real, lo, hi)


def row_size(n: int) -> int:
    """The row size for a value of ``n`` elements."""
    return next((s for s in ROW_SIZES if n <= s), ROW_SIZES[-1])


def _tiles(values: Mapping[str, np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, list]]:
    """``(x (ROWS, S) float32, n_real (ROWS,) int32, [(slot, name), ...])`` tiles holding
    every value's rows (the unused slots empty)."""
    rows: dict[int, list[tuple[str, np.ndarray]]] = {}
    for name, v in values.items():
        flat, size = v.reshape(-1), row_size(v.size)
        for start in range(0, max(v.size, 1), size):
            rows.setdefault(size, []).append((name, flat[start : start + size]))
    for size, items in rows.items():
        for i in range(0, len(items), ROWS):
            chunk = items[i : i + ROWS]
            x = np.zeros((ROWS, size), np.float32)
            n_real = np.zeros(ROWS, np.int32)
            for slot, (_, r) in enumerate(chunk):
                x[slot, : r.size] = r
                n_real[slot] = r.size
            yield x, n_real, [(slot, name) for slot, (name, _) in enumerate(chunk)]


def _stacked(items: list, pad: object) -> list:
    return items + [pad] * (ROWS - len(items))


def update_states(
    states: Mapping[str, HistogramState],
    values: Mapping[str, np.ndarray],
    lo: Mapping[str, np.float32],
    hi: Mapping[str, np.float32],
) -> dict[str, HistogramState]:
    """Default-mode integer-count states after adding ``values`` (``lo``/``hi``: each value's
    range after this batch, its state's included); host NumPy states in and out."""
    names = list(values)
    n_fine = next(iter(states.values())).counts.shape[-1]
    grid: dict[str, tuple] = {}
    for i in range(0, len(names), ROWS):
        chunk = names[i : i + ROWS]
        ex = np.asarray(_stacked([states[n].exponent for n in chunk], np.int32(0)), np.int32)
        lo_c = np.asarray(_stacked([lo[n] for n in chunk], np.float32(0)), np.float32)
        hi_c = np.asarray(_stacked([hi[n] for n in chunk], np.float32(0)), np.float32)
        e, off = jax.device_get(_grids(ex, lo_c, hi_c, n_fine=n_fine))
        grid.update({n: (e[j], off[j]) for j, n in enumerate(chunk)})
    new = {n: np.zeros(n_fine, np.int64) for n in names}
    for x, n_real, slots in _tiles(values):
        e = np.asarray(_stacked([grid[n][0] for _, n in slots], np.int32(0)), np.int32)
        off = np.asarray(_stacked([grid[n][1] for _, n in slots], np.int32(0)), np.int32)
        counts = np.asarray(_count_rows(x, n_real, e, off, n_fine=n_fine))
        for slot, n in slots:
            new[n] += counts[slot]
    out = {}
    for i in range(0, len(names), ROWS):
        chunk = names[i : i + ROWS]
        pad = chunk[0]
        sts = _stacked([states[n] for n in chunk], states[pad])
        stacked = jax.tree.map(lambda *a: np.stack(a), *sts)
        cols = [
            np.stack(_stacked([np.asarray(col[n], dt) for n in chunk], np.asarray(col[pad], dt)))
            for col, dt in ((new, np.int32), (lo, np.float32), (hi, np.float32))
        ]
        e, off = (np.stack(_stacked([grid[n][k] for n in chunk], grid[pad][k])) for k in (0, 1))
        res = jax.device_get(_add(stacked, cols[0], cols[1], cols[2], e, off))
        out.update({n: jax.tree.map(lambda a, j=j: a[j], res) for j, n in enumerate(chunk)})
    return out


def mct_histograms(
    values: Mapping[str, np.ndarray],
    lo: Mapping[str, np.float64],
    hi: Mapping[str, np.float64],
    n_bins: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MCT's per-batch histograms ``{name: (edges, counts)}`` (float64) of ``values`` over
    their ranges ``[lo, hi]`` (x64 must be on)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for x, n_real, slots in _tiles(values):
        lo_c = np.asarray(_stacked([lo[n] for _, n in slots], np.float64(0)), np.float64)
        hi_c = np.asarray(_stacked([hi[n] for _, n in slots], np.float64(1)), np.float64)
        edges, counts = jax.device_get(_mct_rows(x, n_real, lo_c, hi_c, n_bins=n_bins))
        for slot, n in slots:
            if n in out:
                out[n] = (out[n][0], out[n][1] + counts[slot])
            else:
                out[n] = (edges[slot], counts[slot])
    return out


def warmup(n_bins: int = 2048) -> int:
    """Compiles every statistics histogram program (both modes, every row size, finalizing
    included) so that they reach the persistent compilation cache; returns how many values
    ran through them."""
    from ..runtime.cache import ensure_compilation_cache
    from .histogram import histogram_finalize, histogram_init

    ensure_compilation_cache()
    values = {f"v{s}": np.linspace(-1, 1, s, dtype=np.float32) for s in ROW_SIZES}
    empty = histogram_init(n_bins, dtype=jnp.float32, integer_counts=True)
    assert isinstance(empty, HistogramState)
    lo, hi = dict.fromkeys(values, np.float32(-1)), dict.fromkeys(values, np.float32(1))
    states = update_states(dict.fromkeys(values, empty), values, lo, hi)
    jax.block_until_ready(histogram_finalize(states[next(iter(values))]))
    with jax.enable_x64(True):
        lo64, hi64 = dict.fromkeys(values, np.float64(-1)), dict.fromkeys(values, np.float64(1))
        hists = mct_histograms(values, lo64, hi64, n_bins)
        state = histogram_init(n_bins, mct_compat=True)
        assert isinstance(state, MCTHistogramState)
        e, c = hists[next(iter(values))]
        state = state._replace(bins=(e, e), counts=(c, c))
        jax.block_until_ready(histogram_finalize(state))
    return 2 * len(values)
