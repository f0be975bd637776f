"""Tests for jq._src.select.histogram:
NumPy-rule histogram, default mergeable state, MCT-compatible state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jq import (
    HistogramState,
    MCTHistogramState,
    histogram,
    histogram_finalize,
    histogram_init,
    histogram_merge,
    histogram_update,
)


def _data(seed: int, kind: str, n: int = 3000) -> np.ndarray:
    r = np.random.default_rng(seed)
    if kind == "normal":
        return r.standard_normal(n) * 3
    if kind == "relu":
        return np.maximum(r.standard_normal(n), 0)
    if kind == "rounded":  # many values exactly on edges
        return np.round(r.standard_normal(n) * 4) / 4
    if kind == "constant":
        return np.full(n, 1.7)
    if kind == "heavy":
        return r.standard_cauchy(n)
    raise ValueError(kind)


def _loop_histogram(x: np.ndarray, n_bins: int):
    """Plain-loop reference of np.histogram's rule: bin k holds e_k <= x < e_{k+1}; the last is
    closed."""
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, n_bins + 1)
    counts = np.zeros(n_bins)
    for v in x.ravel():
        k = n_bins - 1
        for j in range(n_bins):
            if edges[j] <= v < edges[j + 1]:
                k = j
                break
        counts[k] += 1
    return edges, counts


# ------------------------------------------------------------------------ histogram()


@pytest.mark.parametrize("kind", ["normal", "relu", "rounded", "constant", "heavy"])
@pytest.mark.parametrize("n_bins", [1, 7, 2048])
def test_histogram_equals_numpy_bit_for_bit(kind, n_bins):
    x = _data(0, kind)
    with jax.enable_x64(True):
        edges, counts = histogram(x, n_bins=n_bins)
        ref_counts, ref_edges = np.histogram(x, bins=n_bins)
        np.testing.assert_array_equal(np.asarray(edges), ref_edges)
        np.testing.assert_array_equal(np.asarray(counts), ref_counts)


def test_histogram_weighted_equals_numpy_across_blocks():
    # > 65536 elements: NumPy sums weights per block; so does jq.
    r = np.random.default_rng(1)
    x = r.standard_normal(150_000)
    for w in (r.random(x.shape), r.random(x.shape).astype(np.float32)):
        with jax.enable_x64(True):
            edges, counts = histogram(x, n_bins=2048, weights=w)
            ref_counts, ref_edges = np.histogram(x, bins=2048, weights=w)
            assert counts.dtype == ref_counts.dtype
            np.testing.assert_array_equal(np.asarray(edges), ref_edges)
            np.testing.assert_array_equal(np.asarray(counts), ref_counts)


@pytest.mark.parametrize("kind", ["rounded", "constant"])
def test_histogram_reference_loop(kind):
    x = _data(2, kind, n=300)
    with jax.enable_x64(True):
        edges, counts = histogram(x, n_bins=16)
        ref_edges, ref_counts = _loop_histogram(x, 16)
        np.testing.assert_array_equal(np.asarray(edges), ref_edges)  # same linspace rule
        np.testing.assert_array_equal(np.asarray(counts), ref_counts)


def test_histogram_jit_equals_eager_and_float32_default():
    x = jnp.asarray(_data(3, "normal"), jnp.float32)
    e1, c1 = histogram(x, n_bins=64)
    e2, c2 = jax.jit(lambda v: histogram(v, n_bins=64))(x)
    assert e1.dtype == jnp.float32 and c1.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
    np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))
    assert float(c1.sum()) == x.size


def test_histogram_vmap_equals_loop():
    xs = jnp.asarray(np.stack([_data(s, "normal", 500) for s in range(4)]), jnp.float32)
    ve, vc = jax.vmap(lambda v: histogram(v, n_bins=32))(xs)
    for i in range(4):
        e, c = histogram(xs[i], n_bins=32)
        np.testing.assert_array_equal(np.asarray(ve[i]), np.asarray(e))
        np.testing.assert_array_equal(np.asarray(vc[i]), np.asarray(c))


@pytest.mark.parametrize(
    ("x", "kwargs", "exc", "match"),
    [
        (np.array([1.0, np.nan]), {}, ValueError, "NaN"),
        (np.array([1.0, np.inf]), {}, ValueError, "inf"),
        (np.array([]), {}, ValueError, "empty"),
        (np.ones(3), {"n_bins": 0}, ValueError, "n_bins"),
        (np.ones(3), {"n_bins": 2.5}, TypeError, "n_bins"),
        (np.ones(3, np.complex64), {}, TypeError, "real"),
        (np.ones(3), {"weights": np.ones(4)}, ValueError, "broadcast"),
    ],
)
def test_histogram_errors(x, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        histogram(x, **kwargs)


# ------------------------------------------------------------------------ default state


def _state_of(batches, n_bins=64, dtype=jnp.float32, integer_counts=False):
    s = histogram_init(n_bins, dtype=dtype, integer_counts=integer_counts)
    for b in batches:
        s = histogram_update(s, b)
    return s


def _assert_states_equal(a: HistogramState, b: HistogramState):
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(fa), np.asarray(fb))


@settings(max_examples=20, deadline=None)
@given(
    # few distinct batch shapes keep compilation out of the test time
    sizes=st.lists(st.sampled_from([1, 16, 48]), min_size=1, max_size=6),
    scales=st.lists(st.floats(1e-3, 1e3), min_size=6, max_size=6),
    seed=st.integers(0, 2**16),
    perm_seed=st.integers(0, 2**16),
)
def test_state_order_invariant_bit_for_bit(sizes, scales, seed, perm_seed):
    """Unweighted counts do not depend on batch order or grouping (merge included)."""
    r = np.random.default_rng(seed)
    batches = [
        (r.standard_normal(n) * scales[i] + r.standard_normal() * scales[-1]).astype(np.float32)
        for i, n in enumerate(sizes)
    ]
    a = _state_of(batches)
    perm = np.random.default_rng(perm_seed).permutation(len(batches))
    b = _state_of([batches[i] for i in perm])
    _assert_states_equal(a, b)
    k = len(batches) // 2
    m = histogram_merge(_state_of(batches[:k]), _state_of(batches[k:])) if k else a
    _assert_states_equal(a, m)
    ea, ca = histogram_finalize(a)
    eb, cb = histogram_finalize(b)
    np.testing.assert_array_equal(np.asarray(ea), np.asarray(eb))
    np.testing.assert_array_equal(np.asarray(ca), np.asarray(cb))
    # total count conserved
    total = sum(len(x) for x in batches)
    assert float(a.counts.sum()) == total
    np.testing.assert_allclose(float(ca.sum()), total, rtol=1e-5)


@pytest.mark.parametrize("kind", ["normal", "relu", "heavy", "constant"])
def test_state_accuracy_against_numpy_of_all_data(kind):
    """Cumulative counts at each edge are exact up to the one fine bin straddling the edge."""
    r = np.random.default_rng(5)
    batches = [
        _data(s, kind, 2000) * (1 + 0.5 * s) + (0 if kind == "constant" else r.random())
        for s in range(4)
    ]
    allx = np.concatenate(batches)
    with jax.enable_x64(True):
        s = _state_of(batches, n_bins=256, dtype=jnp.float64)
        edges, counts = histogram_finalize(s)
        edges, counts = np.asarray(edges), np.asarray(counts)
    ref_counts, ref_edges = np.histogram(allx, bins=256)
    np.testing.assert_array_equal(edges, ref_edges)  # [global min, global max], NumPy rule
    width = 2.0 ** int(s.exponent)
    assert width < 2 * (allx.max() - allx.min()) / (8 * 256 - 4) or kind == "constant"
    cum = np.concatenate([[0], np.cumsum(counts)])
    ref_cum = np.concatenate([[0], np.cumsum(ref_counts)])
    straddle = np.array([np.sum((allx >= e - width) & (allx < e + width)) for e in edges])
    assert np.all(np.abs(cum - ref_cum) <= straddle + 1e-6 * len(allx))
    np.testing.assert_allclose(cum[-1], len(allx))
    if kind == "constant":  # all mass in NumPy's bin for a constant: exact
        np.testing.assert_array_equal(counts, ref_counts)


def test_state_weighted_and_jit():
    r = np.random.default_rng(6)
    x = r.standard_normal((8, 3, 4)).astype(np.float32)
    w = r.random((3, 1)).astype(np.float32)  # NumPy broadcasting in default mode
    s = histogram_update(histogram_init(32), x, w)
    np.testing.assert_allclose(
        float(s.counts.sum()), float(np.broadcast_to(w, x.shape).sum()), rtol=1e-5
    )
    s0 = histogram_update(histogram_init(32), x, np.zeros(x.shape))  # all-zero -> ones (MCT)
    assert float(s0.counts.sum()) == x.size
    jitted = jax.jit(lambda st_, v: histogram_update(st_, v))(histogram_init(32), x)
    _assert_states_equal(jitted, histogram_update(histogram_init(32), x))


@pytest.mark.slow  # past 2^24 counts takes 2^24+ samples: ~30 s on 2 cores
def test_integer_counts_equal_float_counts_and_stay_exact_past_2_24():
    """``integer_counts=True``: the same histogram as float counts while those are exact, the
    same state for any grouping (merge included), and exact counts where float32 rounds."""
    r = np.random.default_rng(7)
    batches = [
        (r.standard_normal(n) * (1 + i)).astype(np.float32) for i, n in enumerate((900, 37, 4000))
    ]
    exact = _state_of(batches, integer_counts=True)
    assert exact.counts.dtype == jnp.int32 and exact.counts.shape == (2, 8 * 64)
    for a, b in zip(histogram_finalize(exact), histogram_finalize(_state_of(batches)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    merged = histogram_merge(
        _state_of(batches[2:], integer_counts=True), _state_of(batches[:2], integer_counts=True)
    )
    _assert_states_equal(exact, merged)

    def total(state):
        words = np.asarray(state.counts).astype(np.int64)
        return int(np.sum(words[0] + (words[1] << 16)))

    big = [np.zeros(2**24, np.float32), np.zeros(1, np.float32)]  # 2**24 + 1 in one bin
    assert total(_state_of(big, n_bins=8, integer_counts=True)) == 2**24 + 1
    assert float(_state_of(big, n_bins=8).counts.sum()) == 2**24  # float32 counts round
    with pytest.raises(TypeError, match="integer_counts=True takes no weights"):
        histogram_update(histogram_init(8, integer_counts=True), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="differ in size or dtype"):
        histogram_merge(exact, _state_of(batches))


def test_state_errors():
    s = histogram_init(16)
    with pytest.raises(ValueError, match="empty"):
        histogram_finalize(s)
    with pytest.raises(ValueError, match="NaN"):
        histogram_update(s, np.array([np.nan]))
    with pytest.raises(ValueError, match="negative"):
        histogram_update(s, np.ones(3), -np.ones(3))
    with pytest.raises(ValueError, match="n_bins"):
        histogram_init(0)
    with pytest.raises(TypeError):
        histogram_update("not a state", np.ones(3))


# ------------------------------------------------------------------------ MCT compat


def _collectors():
    mct = pytest.importorskip("model_compression_toolkit")
    del mct
    from model_compression_toolkit.core.common.collectors.histogram_collector import (
        HistogramCollector,
    )
    from model_compression_toolkit.core.common.collectors.weighted_histogram_collector import (
        WeightedHistogramCollector,
    )

    return HistogramCollector, WeightedHistogramCollector


@pytest.mark.mct
@pytest.mark.parametrize("seed", range(4))
def test_compat_collector_bit_for_bit(seed):
    HistogramCollector, WeightedHistogramCollector = _collectors()
    r = np.random.default_rng(seed)
    hc, whc = HistogramCollector(), WeightedHistogramCollector()
    s = histogram_init(2048, mct_compat=True)
    ws = histogram_init(2048, mct_compat=True)
    assert isinstance(s, MCTHistogramState)
    for b in range(1 + seed):
        x = r.standard_normal((4, 3, 5, 7)) * r.random() * 5 + r.standard_normal()
        if seed == 2 and b == 1:
            x = np.full(x.shape, 2.5)  # constant batch
        if b % 3 == 0:
            w = None
        elif b % 3 == 1:
            w = np.abs(r.standard_normal(x.shape)).astype(np.float32)
        else:
            w = np.abs(r.standard_normal((4, 1, 1, 1)))
        hc.update(x)
        s = histogram_update(s, x)
        whc.update(x, w)
        ws = histogram_update(ws, x, w)
    for ref, state in ((hc, s), (whc, ws)):
        ref_bins, ref_counts = ref.get_histogram()
        with jax.enable_x64(True):
            bins, counts = histogram_finalize(state)
            np.testing.assert_array_equal(np.asarray(bins), ref_bins)
            np.testing.assert_array_equal(np.asarray(counts), ref_counts)


@pytest.mark.mct
def test_compat_weight_rules():
    HistogramCollector, WeightedHistogramCollector = _collectors()
    x = np.random.default_rng(0).standard_normal((4, 3))
    whc = WeightedHistogramCollector()
    whc.update(x, np.zeros_like(x))  # all-zero -> ones
    s = histogram_update(histogram_init(2048, mct_compat=True), x, np.zeros_like(x))
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(histogram_finalize(s)[1]), whc.get_histogram()[1])
    # MCT checks leading-padded shapes, then reshapes with trailing ones: (3,) fails the reshape.
    with pytest.raises(Exception):  # noqa: B017 (MCT raises a bare Exception / ValueError)
        WeightedHistogramCollector().update(x, np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        histogram_update(histogram_init(2048, mct_compat=True), x, np.ones(3))
    with pytest.raises(ValueError, match="more dimensions"):
        histogram_update(histogram_init(2048, mct_compat=True), x, np.ones((1, 4, 3)))
    with pytest.raises(ValueError, match="empty"):
        histogram_finalize(histogram_init(2048, mct_compat=True))
